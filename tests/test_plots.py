"""Plots: every figure writes a PNG that opens; the PR interpolation on hand-worked curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onestage.metrics import ImageDetections, ImageGroundTruth
from onestage.metrics.confusion import confusion_matrix
from onestage.metrics.voc import all_point_ap, evaluate_voc
from onestage.plots import (
    RECALL_POINTS,
    interpolated_precision,
    plot_ap_per_class,
    plot_confusion_matrix,
    plot_pr_curves,
    plot_pr_grid,
    plot_results,
)


def assert_png(path: Path, min_width: int = 250, min_height: int = 150) -> None:
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= min_height
        assert image.width <= 4000 and image.height <= 4000


def pr_inputs(num_classes: int) -> tuple[dict, dict, dict]:
    """Precision, recall and AP per class; class 1 has no detections, class 2 a NaN AP."""
    rng = np.random.default_rng(num_classes)
    precision, recall, ap = {}, {}, {}
    for index in range(num_classes):
        name = f"class{index}"
        hits = rng.random(12) < 0.6
        recall[name] = np.cumsum(hits) / 10
        precision[name] = np.cumsum(hits) / np.arange(1, 13)
        ap[name] = all_point_ap(recall[name], precision[name])
    if num_classes > 1:
        precision["class1"], recall["class1"], ap["class1"] = np.zeros(0), np.zeros(0), 0.0
    if num_classes > 2:
        ap["class2"] = float("nan")
    return precision, recall, ap


def test_interpolated_precision_is_the_envelope_on_101_recall_points():
    curve = interpolated_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
    assert curve.shape == (RECALL_POINTS,)
    np.testing.assert_array_equal(curve[:51], 1.0)  # recall 0 .. 0.5
    np.testing.assert_allclose(curve[51:], 2 / 3)
    partial = interpolated_precision(np.array([0.25, 0.5]), np.array([1.0, 0.5]))
    np.testing.assert_array_equal(partial[[0, 25, 26, 50, 51, 100]], [1, 1, 0.5, 0.5, 0, 0])
    np.testing.assert_array_equal(interpolated_precision(np.zeros(0), np.zeros(0)), 0.0)


def test_interpolated_curve_area_matches_all_point_ap():
    precision, recall, ap = pr_inputs(1)
    curve = interpolated_precision(recall["class0"], precision["class0"])
    assert abs(curve.mean() - ap["class0"]) < 1.5 / RECALL_POINTS


@pytest.mark.parametrize("num_classes", [1, 3, 15])
def test_evaluation_plots_write_pngs(tmp_path: Path, num_classes: int):
    precision, recall, ap = pr_inputs(num_classes)
    plot_ap_per_class(ap, tmp_path / "ap.png", "VOC AP@0.5")
    plot_pr_curves(precision, recall, ap, tmp_path / "pr.png")
    plot_pr_grid(precision, recall, ap, tmp_path / "grid.png")
    matrix = np.random.default_rng(0).integers(0, 5, (num_classes + 1, num_classes + 1))
    matrix[:, 0] = 0  # a true class without objects
    plot_confusion_matrix(matrix, list(ap), tmp_path / "confusion.png")
    for name in ("ap", "pr", "grid", "confusion"):
        assert_png(tmp_path / f"{name}.png")


def test_degenerate_inputs_do_not_crash(tmp_path: Path):
    plot_ap_per_class({"a": float("nan"), "b": float("nan")}, tmp_path / "nan.png", "all NaN")
    plot_ap_per_class({}, tmp_path / "none.png", "no classes")
    empty = {"a": np.zeros(0)}
    plot_pr_curves(empty, empty, {"a": 0.0}, tmp_path / "pr.png")
    plot_pr_grid(empty, empty, {"a": 0.0}, tmp_path / "grid.png")
    plot_pr_curves({}, {}, {}, tmp_path / "pr_none.png")
    plot_confusion_matrix(np.zeros((3, 3), int), ["a", "b"], tmp_path / "zeros.png")
    for name in ("nan", "none", "pr", "grid", "pr_none", "zeros"):
        assert_png(tmp_path / f"{name}.png", min_width=200, min_height=100)


def test_confusion_plot_counts_many_classes_and_shape_check(tmp_path: Path):
    names = [f"c{i}" for i in range(31)]  # above the annotation limit
    matrix = np.diag(np.arange(32))
    plot_confusion_matrix(matrix, names, tmp_path / "counts.png", normalize=False)
    assert_png(tmp_path / "counts.png")
    with pytest.raises(ValueError, match="does not fit"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a", "b"], tmp_path / "bad.png")


def test_plots_from_real_metrics(tmp_path: Path):
    box, far = (10, 10, 30, 30), (60, 60, 90, 90)
    gts = [ImageGroundTruth([box, far], [0, 1], [False, False])]
    dets = [ImageDetections([box, box, (70, 0, 99, 9)], [0.9, 0.8, 0.7], [0, 0, 1])]
    result = evaluate_voc(gts, dets, ["cat", "dog"])
    plot_pr_curves(result.precision, result.recall, result.ap_per_class, tmp_path / "pr.png")
    plot_pr_grid(result.precision, result.recall, result.ap_per_class, tmp_path / "grid.png")
    plot_confusion_matrix(confusion_matrix(gts, dets, 2), ["cat", "dog"], tmp_path / "cm.png")
    for name in ("pr", "grid", "cm"):
        assert_png(tmp_path / f"{name}.png")


def test_plot_results_still_draws_training_curves(tmp_path: Path):
    csv_path = tmp_path / "results.csv"
    csv_path.write_text("epoch,loss,lr,note\n0,2.5,0.01,warmup\n1,1.7,0.01,x\n")
    plot_results(csv_path, tmp_path / "results.png")
    assert_png(tmp_path / "results.png")
