"""Prediction over a folder in shards and in more than one go (`predict_folder`): a run started
again skips the images already done, and two processes under torchrun write what one writes
(predictions.json, labels, annotated images)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_in_process
from onestage.data.images import save_image
from onestage.engine.evaluator import synthetic_eval_set
from onestage.engine.predict_folder import PARTS, predict_source
from onestage.engine.predictor import Detector
from onestage.engine.shards import Shard

IMAGES = 7


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven synthetic scenes of the seed's animals, as PNG files."""
    path = tmp_path_factory.mktemp("images")
    detector = Detector.load("seed_animals", "cpu")
    scenes = synthetic_eval_set(detector.class_names, IMAGES)
    for index in range(IMAGES):
        save_image(scenes.load_image(index), path / f"scene{index}.png")
    return path


def outputs(out: Path) -> dict[str, bytes]:
    """Every file a prediction run left, by its path under `out`."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_run_started_again_skips_the_images_already_done(folder, tmp_path):
    detector = Detector.load("seed_animals", "cpu")
    reference = predict_source(detector, folder, tmp_path / "whole", save_txt=True)
    assert reference.images == IMAGES and reference.detections > IMAGES

    out = tmp_path / "interrupted"
    calls: list[int] = []

    def stop_after_three() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_source(detector, folder, out, save_txt=True, on_image=stop_after_three)
    part = out / PARTS / "rank0.jsonl"
    assert len(part.read_text().splitlines()) == 3
    with part.open("a") as log:
        log.write('{"stem": "scene3", "resu')  # a line a kill cut short: not done
    calls.clear()
    again = predict_source(detector, folder, out, save_txt=True, on_image=lambda: calls.append(1))
    assert len(calls) == IMAGES - 3
    assert (again.images, again.detections) == (reference.images, reference.detections)
    assert outputs(out) == outputs(tmp_path / "whole")  # the parts are gone, all else equal


def test_shards_take_every_world_size_th_image_from_their_rank(folder, tmp_path):
    detector = Detector.load("seed_animals", "cpu")
    done = []
    for rank in (1, 2):
        summary = predict_source(
            detector, folder, tmp_path, shard=Shard(rank, 3), on_image=lambda: done.append(1)
        )
        assert summary is None  # only rank 0 merges
    lines = [(tmp_path / PARTS / f"rank{r}.jsonl").read_text().splitlines() for r in (1, 2)]
    assert [len(rank_lines) for rank_lines in lines] == [2, 2]  # images 1, 4 and 2, 5
    summary = predict_source(detector, folder, tmp_path, shard=Shard(0, 3))
    assert summary.images == IMAGES and not (tmp_path / PARTS).exists()


def test_two_processes_under_torchrun_write_what_one_process_writes(folder, tmp_path):
    common = [str(folder), "--weights", "seed_animals", "--backend", "torch", "--save-txt"]
    one = subprocess.run(
        [sys.executable, "-m", "onestage", "predict", *common, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--standalone", "--local-addr", "127.0.0.1"]  # fmt: skip
    two = subprocess.run(
        [*torchrun, "-m", "onestage", "predict", *common, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count(f"{IMAGES} image(s)") == 1  # rank 0 alone reports
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")


def test_under_torchrun_predict_needs_an_output_folder(folder, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    done = run_in_process(monkeypatch, capsys, "predict", str(folder), "--weights", "seed_animals")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: under torchrun every process writes to one folder: give --out"
    )


def test_two_processes_under_torchrun_evaluate_as_one_process_does(tmp_path):
    common = ["--weights", "seed_animals", "--backend", "torch", "--synthetic", "9"]
    reports = {}
    for name, launcher in (
        ("one", [sys.executable, "-m", "onestage"]),
        ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                 "--standalone", "--local-addr", "127.0.0.1", "-m", "onestage"]),
    ):  # fmt: skip
        done = subprocess.run(
            [*launcher, "evaluate", *common, "--out", str(tmp_path / name)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        metrics.pop("seconds")
        reports[name] = metrics
        assert not (tmp_path / name / "parts").exists()
    assert reports["two"] == reports["one"]
    assert reports["one"]["images"] == 9 and reports["one"]["voc"]["mAP50"] > 0.5
