"""Crash safety: `onestage train`, `data synth` and `data convert` killed with SIGKILL at random
moments leave only complete files under final names, and training resumes to the weights of an
uninterrupted run.

ONESTAGE_KILLS sets the number of training kills (default 2; `make reliability` uses 24), and a
quarter of it (at least 1) the kills of `data synth` and of `data convert`. With
ONESTAGE_RELIABILITY_REPORT=PATH each test appends one JSON line of its figures to PATH.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from helpers import TINY_FIVE_LEVEL_SSD_SPEC, TINY_TRAINING_OVERRIDES, reliability_report
from onestage.checkpoint import load_training_state, load_weights, weights_epoch
from onestage.data.formats import read_dataset
from onestage.data.synthesize import synthesize_dataset
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.engine.run_folder import read_results, resume_config
from onestage.engine.train_settings import optimizer_for
from onestage.errors import OnestageError
from onestage.models import build_model

KILLS = int(os.environ.get("ONESTAGE_KILLS", "2"))
DATA_KILLS = max(1, KILLS // 4)
KILLS_PER_RUN = 8  # then the run may finish, and the next kills go to a new run
WORKER = Path(__file__).with_name("slow_renames.py")
NUM_CLASSES = len(SyntheticGenerator(SyntheticConfig(width=32, height=32)).class_names)
WAIT_S = 300  # the longest any one wait may take before the test fails
POLL_S = 0.002


@dataclass
class TrainFigures:
    kills: int = 0
    kills_during_checkpoint_writes: int = 0
    resumes: int = 0
    restarts_without_checkpoint: int = 0
    runs: int = 0
    identical_final_weights: bool = False
    stale_temp_files_removed: int = 0
    wall_s: float = 0.0


def start(arguments: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *arguments],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def train_arguments(spec: Path, project: Path, name: str) -> list[str]:
    options = [f"{key}={value}" for key, value in TINY_TRAINING_OVERRIDES.items()]
    return ["train", "--model", str(spec), "--recipe", "seed", "--project", str(project),
            "--name", name, *options]  # fmt: skip


def wait_for(condition: Callable[[], bool], process: subprocess.Popen) -> bool:
    """Poll until `condition()` holds (True) or the process has ended (False)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the process made no progress"
        time.sleep(POLL_S)
    return True


def kill(process: subprocess.Popen) -> bool:
    """SIGKILL the process; False when it had already finished."""
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return process.returncode == -signal.SIGKILL


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp")) if folder.is_dir() else []


def epochs_in_results(run_dir: Path) -> int:
    return len(read_results(run_dir / "results.csv"))


def kill_training(process: subprocess.Popen, run_dir: Path, mode: str, rng: random.Random) -> bool:
    """Kill the run in one of three ways: "early" (soon after the run folder appears), "write"
    (while a checkpoint file is being written, after skipping a few) or "random" (at a random
    moment after the process finishes one more epoch)."""
    weights = run_dir / "weights"
    if mode == "early":
        if not wait_for((run_dir / "config.yaml").is_file, process):
            return False
        time.sleep(rng.uniform(0.0, 0.2))
    elif mode == "write":
        seen = set(temp_files(weights))  # stale ones from the last kill do not count
        to_see = len(seen) + rng.randrange(6)
        while True:
            if not wait_for(lambda: bool(set(temp_files(weights)) - seen), process):
                return False
            if len(seen) >= to_see:
                break
            seen.update(temp_files(weights))
    else:
        done = epochs_in_results(run_dir)
        if not wait_for(lambda: epochs_in_results(run_dir) > done, process):
            return False
        time.sleep(rng.uniform(0.0, 0.5))
    return kill(process)


def check_run_folder(run_dir: Path) -> None:
    """Every file under a final name in the run folder is complete: it parses or loads."""
    for path in sorted(run_dir.rglob("*")):
        if path.is_dir() or path.name.startswith("."):
            continue
        if path.name == "last.state.safetensors":
            config = resume_config(run_dir, {})
            model = build_model(config.model, num_classes=NUM_CLASSES, input_size=config.imgsz)
            load_training_state(path, optimizer_for(config, model.parameters()))
        elif path.suffix == ".safetensors":
            load_weights(path)
        else:
            check_file(path)


def check_file(path: Path) -> None:
    """A dataset or run file under a final name is complete: images decode, text files parse."""
    if path.suffix in (".png", ".jpg"):
        with Image.open(path) as image:
            image.load()
    elif path.suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif path.suffix == ".yaml":
        assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict), path
    elif path.suffix == ".xml":
        ET.parse(path)
    elif path.suffix == ".csv":
        assert read_results(path), path
    elif path.suffix == ".txt" and path.parent.name != "Main":  # YOLO labels
        for line in path.read_text(encoding="utf-8").splitlines():
            assert len([float(value) for value in line.split()]) == 5, path
    elif path.suffix == ".txt":
        assert path.read_text(encoding="utf-8").endswith("\n"), path
    else:
        raise AssertionError(f"unexpected file {path}")


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_weights(run_dir / "weights" / "last.safetensors")[0]


def restart(run_dir: Path, spec: Path, figures: TrainFigures) -> subprocess.Popen:
    """`--resume` the killed run; a run killed before its first checkpoint cannot be resumed
    (one clear error) and is started again."""
    if (run_dir / "weights" / "last.state.safetensors").is_file():
        figures.resumes += 1
        return start(["train", "--resume", str(run_dir)], run_dir.parent)
    with pytest.raises(OnestageError, match=r"no checkpoint to resume|not a run folder"):
        resume_config(run_dir, {})
    figures.restarts_without_checkpoint += 1
    return start(train_arguments(spec, run_dir.parent, run_dir.name), run_dir.parent)


def test_killed_training_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path: Path):
    began = time.perf_counter()
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_FIVE_LEVEL_SSD_SPEC, encoding="utf-8")
    reference = start(train_arguments(spec, tmp_path, "reference"), tmp_path)
    rng = random.Random(20240613)
    figures = TrainFigures()
    runs: list[Path] = []
    while figures.kills < KILLS:
        run_dir = tmp_path / f"killed{len(runs)}"
        runs.append(run_dir)
        process = start(train_arguments(spec, tmp_path, run_dir.name), tmp_path)
        for kill_index in range(min(KILLS_PER_RUN, KILLS - figures.kills)):
            mode = "early" if kill_index == 0 else rng.choice(("write", "random"))
            if not kill_training(process, run_dir, mode, rng):
                break
            figures.kills += 1
            stale = temp_files(run_dir / "weights")
            figures.kills_during_checkpoint_writes += bool(stale)
            figures.stale_temp_files_removed += len(temp_files(run_dir))
            check_run_folder(run_dir)
            process = restart(run_dir, spec, figures)
        _, stderr = process.communicate(timeout=WAIT_S)
        assert process.returncode == 0, stderr
    _, stderr = reference.communicate(timeout=WAIT_S)
    assert reference.returncode == 0, stderr
    expected = final_weights(tmp_path / "reference")
    for run_dir in runs:
        check_run_folder(run_dir)
        assert not temp_files(run_dir), "resume leaves no stale temporary file"
        assert (
            weights_epoch(run_dir / "weights" / "last.safetensors")
            == TINY_TRAINING_OVERRIDES["epochs"]
        )
        assert [row["epoch"] for row in read_results(run_dir / "results.csv")] == list(
            range(1, TINY_TRAINING_OVERRIDES["epochs"] + 1)
        )
        weights = final_weights(run_dir)
        assert weights.keys() == expected.keys()
        for name, tensor in expected.items():
            assert torch.equal(weights[name], tensor), (run_dir, name)
    figures.identical_final_weights = True
    figures.runs = len(runs)
    figures.wall_s = round(time.perf_counter() - began, 1)
    reliability_report("train", {"kills_asked": KILLS, **asdict(figures)})


@dataclass
class DataFigures:
    kills: int = 0
    kills_mid_file: int = 0  # kills that left a temporary file behind
    files_checked: int = 0
    wall_s: float = 0.0


def kill_data_commands(
    command: Callable[[int], tuple[list[str], Path]], cwd: Path, rng: random.Random
) -> DataFigures:
    """Run `command(attempt)` (arguments, output folder) until DATA_KILLS runs were killed at a
    random moment after their output folder appeared (the longest delay halves after a run that
    ended first); checks every output folder."""
    figures, longest_delay_s = DataFigures(), 1.0
    for attempt in range(DATA_KILLS + 10):
        if figures.kills == DATA_KILLS:
            return figures
        arguments, out = command(attempt)
        process = start(arguments, cwd)
        assert wait_for(out.is_dir, process), process.communicate()[1]
        time.sleep(rng.uniform(0.0, longest_delay_s))
        if kill(process):
            figures.kills += 1
            figures.kills_mid_file += bool(temp_files(out))
        else:
            assert process.returncode == 0, process.communicate()[1]
            longest_delay_s /= 2
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                check_file(path)
                figures.files_checked += 1
    raise AssertionError(f"only {figures.kills} of {DATA_KILLS} runs were killed before the end")


def test_killed_data_synth_leaves_only_complete_files(tmp_path: Path):
    began = time.perf_counter()
    rng = random.Random(7)

    def synth(attempt: int) -> tuple[list[str], Path]:
        fmt = ("yolo", "voc", "coco")[attempt % 3]
        out = tmp_path / f"synth{attempt}_{fmt}"
        return ["data", "synth", "--out", str(out), "--format", fmt, "--size", "32",
                "--objects", "1-2", "--split", "train:1500", "--split", "val:100"], out  # fmt: skip

    figures = kill_data_commands(synth, tmp_path, rng)
    # writing again into a killed run's folder gives a complete dataset
    config = SyntheticConfig(width=32, height=32)
    synthesize_dataset(SyntheticGenerator(config), tmp_path / "synth0_yolo", "yolo", {"train": 20})
    dataset, _ = read_dataset(tmp_path / "synth0_yolo", "yolo", verify_images=True)
    assert dataset.num_images == 20
    figures.wall_s = round(time.perf_counter() - began, 1)
    reliability_report("data synth", {"kills_asked": DATA_KILLS, **asdict(figures)})


def test_killed_data_convert_leaves_only_complete_files(tmp_path: Path):
    began = time.perf_counter()
    source = tmp_path / "source"
    config = SyntheticConfig(width=32, height=32)
    synthesize_dataset(SyntheticGenerator(config), source, "yolo", {"train": 1000, "val": 100})
    rng = random.Random(11)

    def convert(attempt: int) -> tuple[list[str], Path]:
        fmt = ("voc", "coco")[attempt % 2]
        out = tmp_path / f"convert{attempt}_{fmt}"
        return ["data", "convert", str(source), str(out), "--format", fmt], out

    figures = kill_data_commands(convert, tmp_path, rng)
    figures.wall_s = round(time.perf_counter() - began, 1)
    reliability_report("data convert", {"kills_asked": DATA_KILLS, **asdict(figures)})
