"""The leaderboard: the same evaluator and interleaved latency for every model, files written."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import run_in_process, run_onestage
from onestage.checkpoint import save_weights
from onestage.engine import compare as compare_module
from onestage.engine.compare import (
    LeaderboardRow,
    compare,
    flag_incomparable,
    for_classes,
    resolve_entry,
    training_record,
    write_leaderboard,
)
from onestage.engine.evaluator import evaluate_detector, synthetic_eval_set
from onestage.engine.predictor import Detector, resolve_weights
from onestage.errors import OnestageError
from onestage.metrics import ImageGroundTruth
from onestage.models import build_model
from onestage.plots import pareto_front


def fake_run(tmp_path: Path, name: str = "run") -> Path:
    """A run folder holding the shipped weights, two epochs of results and a config."""
    run = tmp_path / name
    (run / "weights").mkdir(parents=True)
    shutil.copy(resolve_weights("seed_animals"), run / "weights" / "best.safetensors")
    (run / "results.csv").write_text(
        "epoch,train/loss,images_per_s,time_s\n1,2.0,40,50\n2,1.5,60,25\n"
    )
    (run / "config.yaml").write_text("threads: 2\nbatch: 4\n")
    return run


def test_training_record_reads_images_time_and_threads(tmp_path: Path):
    images, seconds, rate, threads = training_record(fake_run(tmp_path))
    assert (images, seconds, threads) == (40 * 50 + 60 * 25, 75, 2)
    assert rate == pytest.approx(3500 / 75)


def test_entries_from_a_run_folder_a_weights_file_and_a_shipped_name(tmp_path: Path):
    run = fake_run(tmp_path)
    assert resolve_entry(run) == resolve_entry(run / "weights" / "best.safetensors")
    assert resolve_entry(run).name == "run" and resolve_entry(run).run_dir == run
    shipped = resolve_entry("seed_animals")
    assert shipped.name == "seed_animals" and shipped.run_dir is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(OnestageError, match=r"no weights/best\.safetensors"):
        resolve_entry(tmp_path / "empty")


def test_pareto_front_by_hand():
    # (latency, accuracy): b is beaten by a (faster and better); d ties c's accuracy but slower
    latency = [10.0, 12.0, 20.0, 25.0, 5.0]
    accuracy = [0.8, 0.7, 0.9, 0.9, 0.5]
    assert pareto_front(latency, accuracy) == [True, False, True, False, True]


def test_rows_with_another_input_size_or_training_threads_are_flagged():
    rows = [
        LeaderboardRow("a", "a", 1, 1.0, 320, 0.5, 0.4, training_threads=2),
        LeaderboardRow("b", "b", 1, 1.0, 320, 0.5, 0.4, training_threads=2),
        LeaderboardRow("c", "c", 1, 1.0, 416, 0.5, 0.4, training_threads=1),
    ]
    flag_incomparable(rows)
    assert rows[0].flags == rows[1].flags == []
    assert rows[2].flags == [
        "input size 416 px, most rows 320 px",
        "trained with 1 threads, most rows 2 threads",
    ]


def test_ground_truth_is_mapped_to_a_model_with_another_class_order():
    eval_set = synthetic_eval_set(("cat", "dog"), 0)
    eval_set.ground_truths.append(ImageGroundTruth(np.zeros((2, 4)), [0, 1], [False, False]))
    mapped = for_classes(eval_set, ("fish", "dog", "cat"))
    assert mapped.ground_truths[0].class_ids.tolist() == [2, 1]
    with pytest.raises(OnestageError, match="classes the model does not know: cat"):
        for_classes(eval_set, ("dog",))


def test_compare_scores_like_the_evaluator_and_writes_the_leaderboard(tmp_path: Path):
    eval_set = synthetic_eval_set(Detector.load("seed_animals", "cpu").class_names, 4, seed=5)
    rows = compare(["seed_animals", fake_run(tmp_path)], eval_set, rounds=2)
    expected = evaluate_detector(Detector.load("seed_animals", "cpu"), eval_set)
    assert [row.name for row in rows] == ["seed_animals", "run"]  # equal scores: input order
    for row in rows:
        assert (row.map50, row.map50_95) == (expected.voc.map, expected.coco.ap)
        assert row.parameters == 3_770_096 and row.input_size == 320
        assert row.gflops > 0 and row.forward_ms > 0 and row.postprocess_ms > 0
    assert rows[0].training_images is None and rows[1].training_images == 3500
    write_leaderboard(rows, tmp_path / "board", "4 synthetic images")
    with (tmp_path / "board" / "leaderboard.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["name"] for r in table] == ["seed_animals", "run"]
    assert float(table[0]["map50_95"]) == pytest.approx(expected.coco.ap, rel=1e-3)
    document = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    assert document["test_set"] == "4 synthetic images"
    assert document["rows"][1]["training_seconds"] == 75
    markdown = (tmp_path / "board" / "leaderboard.md").read_text().splitlines()
    assert markdown[2].startswith("| name | parameters | gflops |") and len(markdown) == 6
    picture = np.asarray(Image.open(tmp_path / "board" / "speed_accuracy.png").convert("RGB"))
    assert picture.shape == (495, 660, 3)
    red = (picture[..., 0] > 200) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    assert red.any()  # the Pareto front is drawn in red
    assert not math.isnan(rows[0].map50)


def test_rows_are_ranked_by_map50_95_best_first_whatever_their_latency(tmp_path, monkeypatch):
    """Three models of clearly different accuracy, given in neither order, with latencies
    (patched) that rank them in a third order, fastest first or slowest first; the files
    written keep the ranking."""
    shipped = Detector.load("animals", "cpu")
    untrained = tmp_path / "untrained.safetensors"
    save_weights(untrained, build_model("csp-n", len(shipped.class_names)), shipped.metadata)
    sources = ["seed_animals", untrained, "animals"]
    forward_ms = [5.0, 30.0, 10.0]  # of each source, by position

    def patched_latency(
        detectors: list[Detector], image: np.ndarray, rounds: int
    ) -> list[tuple[float, float]]:
        assert len(detectors) == len(forward_ms)
        return [(forward, 1.0) for forward in forward_ms]

    monkeypatch.setattr(compare_module, "batch1_latency_ms", patched_latency)
    eval_set = synthetic_eval_set(shipped.class_names, 2, seed=5)
    rows = compare(sources, eval_set, rounds=1)

    assert [row.name for row in rows] == ["animals", "seed_animals", "untrained"]
    assert rows[0].map50_95 > rows[1].map50_95 + 0.1 > rows[2].map50_95 + 0.2
    assert [row.forward_ms for row in rows] == [10.0, 5.0, 30.0]
    write_leaderboard(rows, tmp_path / "board", "2 synthetic images")
    with (tmp_path / "board" / "leaderboard.csv").open() as handle:
        assert [r["name"] for r in csv.DictReader(handle)] == [row.name for row in rows]
    document = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    assert [r["name"] for r in document["rows"]] == [row.name for row in rows]
    table = (tmp_path / "board" / "leaderboard.md").read_text().splitlines()[4:]
    assert [line.split(" | ")[0] for line in table] == [f"| {row.name}" for row in rows]


def test_cli_compare_and_its_bad_input(tmp_path: Path, monkeypatch, capsys):
    done = run_onestage(
        "compare", "seed_animals", "--synthetic", "2", "--rounds", "1", "--out", str(tmp_path / "c")
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c" / "leaderboard.md").is_file() and "leaderboard in" in done.stdout
    bad = run_in_process(monkeypatch, capsys, "compare", "seed_animals")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: give either --data DIR or --synthetic N"
    )
