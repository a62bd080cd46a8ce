"""Plots: what each figure draws (its axes' data, read before the figure is closed) and that
the PNG written shows it; the PR interpolation on hand-worked curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from onestage.detections import ImageDetections
from onestage.metrics import ImageGroundTruth
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

TAB_BLUE = (31, 119, 180)  # matplotlib "tab:blue" (also the first colour of the cycle)
TAB_RED = (214, 39, 40)
BLACK = (0, 0, 0)
DPI = 110  # the plots' savefig resolution


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch):
    """The figures the plot functions close after saving, in order, kept open to be read."""
    close = plt.close
    made: list = []
    monkeypatch.setattr(plt, "close", made.append)
    yield made
    for figure in made:
        close(figure)


def png_of(path: Path, figure) -> np.ndarray:
    """The RGB pixels of the PNG `path`, checked to be `figure` rendered, and not blank."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    width, height = figure.get_size_inches() * DPI
    assert abs(pixels.shape[0] - height) < 1 and abs(pixels.shape[1] - width) < 1
    packed = pixels.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    assert len(np.unique(packed)) > 20  # text, lines, fills: not a blank canvas
    return pixels


def count_colour(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 0) -> int:
    """Pixels within `tolerance` of `rgb` in every channel (thin lines are anti-aliased)."""
    distance = np.abs(pixels.astype(np.int16) - np.array(rgb, dtype=np.int16)).max(axis=-1)
    return int((distance <= tolerance).sum())


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
def test_ap_bars_are_the_sorted_aps_with_labels_and_mean(
    tmp_path: Path, figures: list, num_classes: int
):
    _, _, ap = pr_inputs(num_classes)
    plot_ap_per_class(ap, tmp_path / "ap.png", "VOC AP@0.5")
    (figure,) = figures
    (axis,) = figure.axes
    order = sorted(ap, key=lambda n: -np.inf if np.isnan(ap[n]) else ap[n], reverse=True)
    assert axis.get_title() == "VOC AP@0.5"
    # best on top: bar k (width = AP, NaN drawn as 0) sits at y = n - 1 - k, named by its tick
    bars = axis.patches
    np.testing.assert_allclose(
        [bar.get_width() for bar in bars], np.nan_to_num([ap[n] for n in order])
    )
    np.testing.assert_allclose(
        [bar.get_y() + bar.get_height() / 2 for bar in bars],
        [num_classes - 1 - k for k in range(num_classes)],
    )
    ticks = dict(
        zip(axis.get_yticks(), (t.get_text() for t in axis.get_yticklabels()), strict=True)
    )
    assert [ticks[num_classes - 1 - k] for k in range(num_classes)] == order
    expected_labels = ["n/a" if np.isnan(ap[n]) else f"{ap[n]:.3f}" for n in order]
    assert [text.get_text() for text in axis.texts] == expected_labels
    (mean_line,) = axis.lines
    mean = np.nanmean(list(ap.values()))
    np.testing.assert_allclose(mean_line.get_xdata(), [mean, mean])
    assert axis.get_legend().get_texts()[0].get_text() == f"mean {mean:.3f}"
    pixels = png_of(tmp_path / "ap.png", figure)
    assert count_colour(pixels, TAB_BLUE) > 100 * sum(bar.get_width() > 0.05 for bar in bars)
    assert count_colour(pixels, TAB_RED, tolerance=60) > 50  # the dashed mean


@pytest.mark.parametrize("num_classes", [1, 3, 15])
def test_pr_curves_are_each_class_envelope_and_their_mean(
    tmp_path: Path, figures: list, num_classes: int
):
    precision, recall, ap = pr_inputs(num_classes)
    plot_pr_curves(precision, recall, ap, tmp_path / "pr.png")
    (figure,) = figures
    (axis,) = figure.axes
    *class_lines, mean_line = axis.lines
    assert len(class_lines) == num_classes
    curves = [interpolated_precision(recall[name], precision[name]) for name in ap]
    for line, curve in zip(class_lines, curves, strict=True):
        np.testing.assert_allclose(line.get_xdata(), np.linspace(0, 1, RECALL_POINTS))
        np.testing.assert_allclose(line.get_ydata(), curve)
    np.testing.assert_allclose(mean_line.get_ydata(), np.mean(curves, axis=0))
    assert mean_line.get_color() == "black" and mean_line.get_linewidth() == 2.5
    if num_classes > 1:  # class1 has no detections: a flat zero curve
        np.testing.assert_array_equal(class_lines[1].get_ydata(), 0.0)
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert legend[0] == f"class0 {ap['class0']:.3f}"
    assert legend[2:3] == (["class2 n/a"] if num_classes > 2 else [])
    assert legend[-1] == f"all classes, mean AP {np.nanmean(list(ap.values())):.3f}"
    pixels = png_of(tmp_path / "pr.png", figure)
    assert count_colour(pixels, BLACK) > 300  # the bold mean curve, beyond the text
    first_colour = tuple(round(255 * c) for c in plt.cm.tab20(0)[:3])
    assert count_colour(pixels, first_colour) > 20


@pytest.mark.parametrize("num_classes", [1, 3, 7])
def test_pr_grid_has_one_panel_per_class_with_raw_curve_and_envelope(
    tmp_path: Path, figures: list, num_classes: int
):
    precision, recall, ap = pr_inputs(num_classes)
    plot_pr_grid(precision, recall, ap, tmp_path / "grid.png")
    (figure,) = figures
    panels = [axis for axis in figure.axes if axis.get_visible()]
    assert len(panels) == num_classes
    assert len(figure.axes) == {1: 1, 3: 3, 7: 10}[num_classes]  # rows of at most 5 panels
    for axis, name in zip(panels, ap, strict=True):
        assert axis.get_title() == f"{name} AP " + (
            "n/a" if np.isnan(ap[name]) else (f"{ap[name]:.3f}")
        )
        raw, envelope = axis.lines
        np.testing.assert_allclose(raw.get_xdata(), recall[name])
        np.testing.assert_allclose(raw.get_ydata(), precision[name])
        np.testing.assert_allclose(
            envelope.get_ydata(), interpolated_precision(recall[name], precision[name])
        )
        texts = [text.get_text() for text in axis.texts]
        assert texts == (["no detections"] if name == "class1" else [])
    pixels = png_of(tmp_path / "grid.png", figure)
    assert count_colour(pixels, TAB_BLUE) > 50 * num_classes


def test_confusion_plot_shows_the_column_normalised_matrix(tmp_path: Path, figures: list):
    matrix = np.array([[3, 0, 1, 0], [1, 0, 0, 2], [0, 0, 4, 0], [0, 0, 1, 0]])
    plot_confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "confusion.png")
    (figure,) = figures
    axis = figure.axes[0]  # the second is the colour bar
    expected = np.array(
        [[0.75, 0, 1 / 6, 0], [0.25, 0, 0, 1], [0, 0, 4 / 6, 0], [0, 0, 1 / 6, 0]]
    )  # each true-class column sums to 1; "b" has no objects and stays 0
    np.testing.assert_allclose(axis.images[0].get_array(), expected)
    assert [t.get_text() for t in axis.get_xticklabels()] == ["a", "b", "c", "background"]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["a", "b", "c", "background"]
    cells = {(text.get_position(), text.get_text()) for text in axis.texts}
    assert cells == {
        ((0, 0), "0.75"),
        ((2, 0), "0.17"),
        ((0, 1), "0.25"),
        ((3, 1), "1.00"),
        ((2, 2), "0.67"),
        ((2, 3), "0.17"),
    }
    pixels = png_of(tmp_path / "confusion.png", figure)
    darkest = tuple(round(255 * c) for c in plt.cm.Blues(1.0)[:3])
    assert count_colour(pixels, darkest) > 500  # the cell (1, 3) of value 1.0, and the bar


def test_degenerate_inputs_draw_empty_or_zero_plots(tmp_path: Path, figures: list):
    plot_ap_per_class({"a": float("nan"), "b": float("nan")}, tmp_path / "nan.png", "all NaN")
    plot_ap_per_class({}, tmp_path / "none.png", "no classes")
    empty = {"a": np.zeros(0)}
    plot_pr_curves(empty, empty, {"a": 0.0}, tmp_path / "pr.png")
    plot_pr_grid(empty, empty, {"a": 0.0}, tmp_path / "grid.png")
    plot_pr_curves({}, {}, {}, tmp_path / "pr_none.png")
    plot_confusion_matrix(np.zeros((3, 3), int), ["a", "b"], tmp_path / "zeros.png")
    nan, none, pr, grid, pr_none, zeros = figures
    assert [bar.get_width() for bar in nan.axes[0].patches] == [0.0, 0.0]
    assert [text.get_text() for text in nan.axes[0].texts] == ["n/a", "n/a"]
    assert not nan.axes[0].lines and nan.axes[0].get_legend() is None  # no mean of nothing
    assert not none.axes[0].patches and not none.axes[0].lines
    assert [list(line.get_ydata()) for line in pr.axes[0].lines] == [[0.0] * RECALL_POINTS] * 2
    assert [text.get_text() for text in grid.axes[0].texts] == ["no detections"]
    assert not pr_none.axes[0].lines and pr_none.axes[0].get_legend() is None
    np.testing.assert_array_equal(zeros.axes[0].images[0].get_array(), 0.0)
    assert not zeros.axes[0].texts
    for name, figure in zip(
        ("nan", "none", "pr", "grid", "pr_none", "zeros"), figures, strict=True
    ):
        png_of(tmp_path / f"{name}.png", figure)


def test_confusion_plot_counts_many_classes_and_shape_check(tmp_path: Path, figures: list):
    names = [f"c{i}" for i in range(31)]  # above the annotation limit
    matrix = np.diag(np.arange(32))
    plot_confusion_matrix(matrix, names, tmp_path / "counts.png", normalize=False)
    (figure,) = figures
    axis = figure.axes[0]
    np.testing.assert_array_equal(axis.images[0].get_array(), matrix)  # raw counts
    assert axis.images[0].get_clim() == (0, 31)
    assert not axis.texts
    assert axis.get_title() == "Confusion matrix"
    pixels = png_of(tmp_path / "counts.png", figure)
    darkest = tuple(round(255 * c) for c in plt.cm.Blues(1.0)[:3])
    assert count_colour(pixels, darkest) > 0  # the diagonal's largest count
    with pytest.raises(ValueError, match="does not fit"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a", "b"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plots_from_real_metrics(tmp_path: Path, figures: list):
    box, far = (10, 10, 30, 30), (60, 60, 90, 90)
    gts = [ImageGroundTruth([box, far], [0, 1], [False, False])]
    dets = [ImageDetections([box, box, (70, 0, 99, 9)], [0.9, 0.8, 0.7], [0, 0, 1])]
    result = evaluate_voc(gts, dets, ["cat", "dog"])
    plot_pr_curves(result.precision, result.recall, result.ap_per_class, tmp_path / "pr.png")
    plot_pr_grid(result.precision, result.recall, result.ap_per_class, tmp_path / "grid.png")
    plot_confusion_matrix(confusion_matrix(gts, dets, 2), ["cat", "dog"], tmp_path / "cm.png")
    pr, grid, cm = figures
    # cat: a hit then a duplicate (precision 1 up to recall 1); dog: one miss (all zero)
    cat, dog, mean = pr.axes[0].lines
    np.testing.assert_array_equal(cat.get_ydata(), 1.0)
    np.testing.assert_array_equal(dog.get_ydata(), 0.0)
    np.testing.assert_array_equal(mean.get_ydata(), 0.5)
    legend = [text.get_text() for text in pr.axes[0].get_legend().get_texts()]
    assert legend == ["cat 1.000", "dog 0.000", "all classes, mean AP 0.500"]
    # predicted x true: cat found; the duplicate and the stray dog box are false positives on
    # background; the dog is missed (predicted background)
    np.testing.assert_allclose(
        cm.axes[0].images[0].get_array(), [[1, 0, 0.5], [0, 0, 0.5], [0, 1, 0]]
    )
    assert [axis.get_title() for axis in grid.axes] == ["cat AP 1.000", "dog AP 0.000"]
    for name, figure in (("pr", pr), ("grid", grid), ("cm", cm)):
        png_of(tmp_path / f"{name}.png", figure)


def test_plot_results_draws_one_panel_per_numeric_column(tmp_path: Path, figures: list):
    csv_path = tmp_path / "results.csv"
    csv_path.write_text("epoch,loss,lr,note\n1,2.5,0.01,warmup\n2,1.7,0.005,x\n3,1.2,0.001,y\n")
    plot_results(csv_path, tmp_path / "results.png")
    (figure,) = figures
    loss, lr = figure.axes  # "note" is not a number: no panel
    for axis, title, values in ((loss, "loss", [2.5, 1.7, 1.2]), (lr, "lr", [0.01, 0.005, 0.001])):
        assert axis.get_title() == title and axis.get_xlabel() == "epoch"
        (line,) = axis.lines
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(line.get_ydata(), values)
    pixels = png_of(tmp_path / "results.png", figure)
    assert count_colour(pixels, TAB_BLUE) > 50
    assert (
        pixels[:, : pixels.shape[1] // 2].tobytes() != pixels[:, pixels.shape[1] // 2 :].tobytes()
    )
