"""A restarted torchrun attempt finds its job's run (`engine.elastic`): by job id and config,
the newest of several, never on a first attempt, and started again in its own folder when the
dead attempt committed no epoch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onestage.config import make_config
from onestage.engine.elastic import (
    MARKER,
    config_fingerprint,
    continue_restarted_job,
    mark_run,
    run_of_restarted_job,
)


def in_attempt(monkeypatch: pytest.MonkeyPatch, job: str, attempt: int) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", job)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(attempt))


def test_a_restart_finds_the_newest_run_of_its_job_and_config(tmp_path, monkeypatch):
    config = make_config("seed", overrides={"project": str(tmp_path), "epochs": 3})
    other = make_config("seed", overrides={"project": str(tmp_path), "epochs": 4})
    in_attempt(monkeypatch, "job-a", 0)
    for name, settings in (("old", config), ("new", config), ("other", other)):
        (tmp_path / name).mkdir()
        mark_run(tmp_path / name, config_fingerprint(settings))
        os.utime(tmp_path / name / MARKER, (1, {"old": 1, "new": 2, "other": 3}[name]))
    in_attempt(monkeypatch, "job-b", 0)
    (tmp_path / "job-b").mkdir()
    mark_run(tmp_path / "job-b", config_fingerprint(config))

    assert run_of_restarted_job(config) is None  # a first attempt starts a new run
    in_attempt(monkeypatch, "job-a", 1)
    assert run_of_restarted_job(config) == tmp_path / "new"
    assert run_of_restarted_job(other) == tmp_path / "other"
    renamed = make_config("seed", overrides={"project": str(tmp_path), "epochs": 3, "name": "x"})
    assert run_of_restarted_job(renamed) == tmp_path / "new"  # the folder's name may differ
    (tmp_path / "new" / MARKER).write_text("{not json")
    assert run_of_restarted_job(config) == tmp_path / "old"
    in_attempt(monkeypatch, "job-c", 2)
    assert run_of_restarted_job(config) is None


def test_outside_torchrun_nothing_is_marked_or_resumed(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    config = make_config("seed", overrides={"project": str(tmp_path)})
    mark_run(tmp_path, config_fingerprint(config))
    assert not (tmp_path / MARKER).exists()
    assert continue_restarted_job(config, {}) == (config, None, None)


def test_a_run_without_an_epoch_done_starts_again_in_its_own_folder(tmp_path, monkeypatch):
    config = make_config("seed", overrides={"project": str(tmp_path), "name": "exp"})
    in_attempt(monkeypatch, "job", 0)
    run = tmp_path / "exp3"
    (run / "weights").mkdir(parents=True)
    mark_run(run, config_fingerprint(config))
    in_attempt(monkeypatch, "job", 1)
    again, resume, note = continue_restarted_job(config, {})
    assert resume is None
    assert note == f"torchrun restart 1: {run} had no epoch done; starting it again"
    assert (Path(again.project), again.name, again.exist_ok) == (tmp_path, "exp3", True)
    assert config_fingerprint(again) == config_fingerprint(config)
