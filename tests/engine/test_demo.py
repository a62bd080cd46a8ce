"""The demo job end to end at a tiny budget: every output it promises, with known answers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onestage.checkpoint import load_weights
from onestage.engine.demo import run_demo, shipped_weights_available
from onestage.engine.evaluator import evaluate

TEST_IMAGES = 4
OBJECTS_PER_TEST_IMAGE = 4  # the fixed synthetic test set's default


def without_timings(metrics: dict) -> str:
    """metrics.json content minus the wall-clock seconds, as comparable text (NaN-safe)."""
    return json.dumps({key: value for key, value in metrics.items() if key != "seconds"})


def test_demo_writes_preview_run_and_report_with_known_answers(tmp_path: Path):
    summary = run_demo(tmp_path / "demo", epochs=1, steps=1, test_images=TEST_IMAGES)

    # The preview: 16 distinct 320 px synthetic tiles, 4 x 4 with 4 px gutters.
    with Image.open(summary.data_preview) as image:
        preview = np.asarray(image.convert("RGB"))
    assert preview.shape == (4 * 324 - 4, 4 * 324 - 4, 3)
    tiles = {preview[r : r + 320, c : c + 320].tobytes() for r in (0, 324) for c in (0, 324)}
    assert len(tiles) == 4

    # The shipped weights (installed with the package) on the fixed test set, in fp32 on CPU:
    # deterministic up to float summation order (~1e-6), far inside the tolerance. Every one of
    # the 16 animals is found above every false positive.
    assert shipped_weights_available() and not summary.notes
    shipped = summary.shipped
    assert sum(c.ground_truths for c in shipped.voc.counts.values()) == 16
    assert shipped.voc.map == 1.0
    assert shipped.coco.ap == pytest.approx(0.7281, abs=1e-3)
    written = json.loads((summary.shipped_report / "metrics.json").read_text())
    assert without_timings(written) == without_timings(shipped.metrics())

    # The short training run: one epoch, validated, so best = last = epoch 1.
    weights = summary.run_dir / "weights"
    _, best = load_weights(weights / "best.safetensors")
    assert best["epoch"] == 1
    assert (weights / "best.safetensors").read_bytes() == (
        weights / "last.safetensors"
    ).read_bytes()
    with (summary.run_dir / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    assert list(rows[0]) == [
        "epoch",
        "train/loss",
        "train/cls",
        "train/box",
        "lr",
        "images_per_s",
        "time_s",
        "val/mAP50",
        "val/mAP50-95",
    ]
    assert rows[0]["epoch"] == "1"
    assert np.isfinite(float(rows[0]["train/loss"])) and float(rows[0]["train/loss"]) > 0
    for column in ("val/mAP50", "val/mAP50-95"):
        assert float(rows[0][column]) == pytest.approx(best["metrics"][column], rel=1e-5)

    # The trained report is exactly what `evaluate` gives for the run's best weights on the
    # same fixed test set.
    report = json.loads((summary.trained_report / "metrics.json").read_text())
    again = evaluate(weights / "best.safetensors", synthetic=TEST_IMAGES)
    assert without_timings(report) == without_timings(again.metrics())
    assert report["images"] == TEST_IMAGES
    counts = report["counts"].values()
    assert sum(c["ground_truths"] for c in counts) == TEST_IMAGES * OBJECTS_PER_TEST_IMAGE
    assert sum(c["detections"] for c in counts) > 0
    with Image.open(summary.trained_report / "predictions_grid.png") as grid:
        assert grid.size == (2 * 324 - 4, 2 * 324 - 4)  # the 4 test images, 2 x 2
