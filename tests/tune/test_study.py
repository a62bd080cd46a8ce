"""`onestage tune` workers share one Optuna study: two worker processes on one SQLite study
run their trials once each, every trial an ordinary run whose best weights score as recorded;
a killed worker's trial is marked failed by the next worker and the study goes on."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from helpers import TINY_FIVE_LEVEL_SSD_SPEC
from onestage.config import load_yaml, make_config
from onestage.engine.predictor import Detector
from onestage.engine.training_data import validation_set
from onestage.engine.validation import validate
from onestage.errors import OnestageError
from onestage.tune.study import (
    LEADERBOARD,
    PLOTS,
    STUDY_FILE,
    StudySettings,
    TrialProgress,
    open_study,
)

WAIT_S = 300
TRIAL_SETTINGS = ["epochs=2", "steps=10", "batch=8", "imgsz=64", "amp=none", "threads=1",
                  "val_every=1", "val_images=8", "synthetic_objects=1"]  # fmt: skip


@pytest.fixture
def study_files(tmp_path: Path) -> tuple[Path, Path]:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_FIVE_LEVEL_SSD_SPEC, encoding="utf-8")
    space = tmp_path / "space.yaml"
    space.write_text("lr: {log_range: [0.001, 0.01]}\nhflip: {range: [0.0, 1.0]}\n")
    return spec, space


def worker(study: tuple[Path, Path], project: Path, trials: int, *extra: str) -> subprocess.Popen:
    spec, space = study
    command = [sys.executable, "-m", "onestage", "tune", "--space", str(space), "--trials",
               str(trials), "--project", str(project), "--recipe", "seed", "--model", str(spec),
               *TRIAL_SETTINGS, *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def load(project: Path) -> optuna.Study:
    storage = f"sqlite:///{project / 'study' / STUDY_FILE}"
    return optuna.load_study(study_name="study", storage=storage)


def test_two_workers_share_one_study_and_the_best_weights_score_as_recorded(study_files, tmp_path):
    project = tmp_path / "tune"
    workers = [worker(study_files, project, 2, "--pruner", "none") for _ in range(2)]
    for process in workers:
        assert "study study:" in finish(process)
    study = load(project)
    trials = sorted(study.trials, key=lambda trial: trial.number)
    assert [trial.number for trial in trials] == [0, 1, 2, 3]
    assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    runs = [Path(trial.user_attrs["run"]) for trial in trials]
    assert [run.name for run in runs] == [f"trial_{n:04d}" for n in range(4)]
    for run in runs:  # each trial ran once, to its end
        rows = list(csv.DictReader((run / "results.csv").open()))
        assert [row["epoch"] for row in rows] == ["1", "2"]

    folder = project / "study"
    board = list(csv.DictReader((folder / LEADERBOARD).open()))
    assert len(board) == 4 and board[0]["trial"] == str(study.best_trial.number)
    assert all(row["state"] == "complete" and row["lr"] and row["hflip"] for row in board)
    for plot in PLOTS:
        assert (folder / plot).read_bytes().startswith(b"\x89PNG")

    best = study.best_trial
    run = Path(best.user_attrs["run"])
    config = make_config(overrides=load_yaml(run / "config.yaml"))
    detector = Detector.load(run / "weights" / "best.safetensors", "cpu")
    val_set = validation_set(config, detector.class_names, None)
    score = validate(detector, val_set, 0, None)["val/mAP50-95"]
    assert math.isclose(score, best.value, abs_tol=1e-3), (score, best.value)
    assert config.lr == pytest.approx(best.params["lr"])


def test_a_killed_workers_trial_is_marked_failed_and_the_study_goes_on(study_files, tmp_path):
    project = tmp_path / "tune"
    doomed = worker(study_files, project, 1, "--heartbeat", "1", "epochs=50")
    first_epoch = project / "study" / "trials" / "trial_0000" / "results.csv"
    deadline = time.monotonic() + WAIT_S
    while not first_epoch.is_file():
        assert doomed.poll() is None, doomed.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the trial never ended an epoch"
        time.sleep(0.01)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    time.sleep(2.5)  # past the grace period of two missed heartbeats
    finish(worker(study_files, project, 1, "--heartbeat", "1"))
    states = {trial.number: trial.state for trial in load(project).trials}
    assert states == {
        0: optuna.trial.TrialState.FAIL,
        1: optuna.trial.TrialState.COMPLETE,
    }
    board = {row["trial"]: row["state"] for row in csv.DictReader(
        (project / "study" / LEADERBOARD).open())}  # fmt: skip
    assert board == {"0": "fail", "1": "complete"}


class FakeTrial:
    """The part of optuna.Trial the trial's progress calls; prunes after `prune_at` reports."""

    def __init__(self, prune_at: int) -> None:
        self.reports: list[tuple[float, int]] = []
        self.prune_at = prune_at

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return len(self.reports) >= self.prune_at


def test_each_validation_is_reported_and_a_pruned_trial_stops_after_its_epoch():
    trial = FakeTrial(prune_at=2)
    progress = TrialProgress(trial, "val/mAP50-95", optuna)
    progress.end_epoch({"epoch": 1, "val/mAP50-95": 0.25})
    progress.end_epoch({"epoch": 2, "val/mAP50-95": math.nan})  # no validation this epoch
    with pytest.raises(optuna.TrialPruned):
        progress.end_epoch({"epoch": 3, "val/mAP50-95": 0.5})
    assert trial.reports == [(0.25, 1), (0.5, 3)]


def test_a_journal_file_holds_a_study_and_bad_settings_are_one_line(tmp_path):
    settings = StudySettings(tmp_path / "study", "j", 1, f"journal:{tmp_path / 'journal.log'}")
    study = open_study(settings)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    again = open_study(settings)  # a second worker joins the same study
    assert len(again.trials) == 2 and (tmp_path / "journal.log").stat().st_size > 0
    for field, value in (("sampler", "grid"), ("pruner", "hyperband"), ("direction", "up")):
        bad = StudySettings(tmp_path / "s", "x", 1, **{field: value})
        with pytest.raises(OnestageError, match=f"unknown {field} '{value}'"):
            open_study(bad)
