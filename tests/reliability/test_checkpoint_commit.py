"""An epoch's checkpoint is several files; a run stopped between any two of them resumes to the
weights of an uninterrupted run. In-process: the stop is an exception raised around the write of
the training state (the epoch's commit), so nothing after it runs, as after a SIGKILL."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import TINY_FIVE_LEVEL_SSD_SPEC, TINY_TRAINING_OVERRIDES, run_in_process
from onestage.checkpoint import load_weights, weights_epoch
from onestage.config import make_config
from onestage.engine import run_checkpoint
from onestage.engine.run_folder import read_results, resume_config
from onestage.engine.trainer import train

EPOCHS = 3


class Killed(BaseException):
    """Stands for a SIGKILL: not an Exception, so no handler on the way out catches it."""


def tiny_run(tmp_path: Path, name: str) -> Path:
    """Train the kill tests' tiny model for EPOCHS epochs; returns the run folder."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_FIVE_LEVEL_SSD_SPEC, encoding="utf-8")
    overrides = {**TINY_TRAINING_OVERRIDES, "epochs": EPOCHS, "model": str(spec)}
    config = make_config("seed", overrides={**overrides, "project": str(tmp_path), "name": name})
    return train(config).run_dir


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run."""
    return tiny_run(tmp_path_factory.mktemp("straight"), "straight")


def kill_at_commit(monkeypatch: pytest.MonkeyPatch, epoch: int, after: bool) -> None:
    """Stop training just before (or just after) the training state of `epoch` is written."""
    save_training_state = run_checkpoint.save_training_state

    def save_then_stop(path, optimizer, counters, *args, **kwargs) -> None:
        if counters["epoch"] == epoch and not after:
            raise Killed
        save_training_state(path, optimizer, counters, *args, **kwargs)
        if counters["epoch"] == epoch:
            raise Killed

    monkeypatch.setattr(run_checkpoint, "save_training_state", save_then_stop)


def resume(run_dir: Path) -> None:
    train(resume_config(run_dir, {}), resume=run_dir)


def assert_same_run(run_dir: Path, straight: Path) -> None:
    """The same final weights, every epoch once in results.csv, last.safetensors up to date."""
    expected, _ = load_weights(straight / "weights" / "last.safetensors")
    weights, _ = load_weights(run_dir / "weights" / "last.safetensors")
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name
    rows = read_results(run_dir / "results.csv")
    assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1))
    assert weights_epoch(run_dir / "weights" / "last.safetensors") == EPOCHS


@pytest.mark.parametrize("epoch", [2, EPOCHS])
def test_a_run_stopped_after_its_commit_resumes_and_rewrites_last_weights(
    tmp_path: Path, straight: Path, monkeypatch: pytest.MonkeyPatch, epoch: int
):
    kill_at_commit(monkeypatch, epoch, after=True)
    with pytest.raises(Killed):
        tiny_run(tmp_path, "cut")
    run_dir = tmp_path / "cut"
    assert weights_epoch(run_dir / "weights" / "last.safetensors") == epoch - 1
    monkeypatch.undo()
    resume(run_dir)
    assert_same_run(run_dir, straight)


def test_a_run_stopped_before_its_commit_redoes_the_epoch_once(
    tmp_path: Path, straight: Path, monkeypatch: pytest.MonkeyPatch
):
    kill_at_commit(monkeypatch, 2, after=False)
    with pytest.raises(Killed):
        tiny_run(tmp_path, "cut")
    run_dir = tmp_path / "cut"
    assert [row["epoch"] for row in read_results(run_dir / "results.csv")] == [1, 2]
    monkeypatch.undo()
    resume(run_dir)
    assert_same_run(run_dir, straight)


def test_resume_cleans_temporary_files_a_killed_write_left(tmp_path: Path):
    run_dir = tiny_run(tmp_path, "run")
    stale = [
        run_dir / "weights" / ".last.safetensors.abc123.tmp",
        run_dir / ".results.csv.def456.tmp",
        run_dir / "val" / ".epoch_003.png.x1y2.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    resume(run_dir)
    assert not any(path.exists() for path in stale)


def test_resume_without_a_checkpoint_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    run_dir = tmp_path / "early"
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("epochs: 3\n", encoding="utf-8")
    done = run_in_process(monkeypatch, capsys, "train", "--resume", str(run_dir))
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"error: {run_dir}: no checkpoint to resume (the run stopped before its first epoch "
        "ended); start it again without --resume",
    )
