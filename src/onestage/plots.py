"""Matplotlib figures written to PNG files: training curves and evaluation plots.

The evaluation plots take `VocResult` fields (`ap_per_class`, `precision`, `recall`) and the
`onestage.metrics.confusion` matrix. A class may have empty precision/recall arrays (no
detections) or a NaN AP; both are drawn, as a flat zero curve and an "n/a" bar.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from onestage.fileio import atomic_write_bytes
from onestage.metrics.confusion import normalize_columns

RECALL_POINTS = 101  # recall grid of the interpolated PR curves, as in COCO and Ultralytics


def plot_results(results_csv: Path, out_png: Path) -> None:
    """One panel per numeric column of results.csv (except epoch), against the epoch."""
    with results_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    columns = [name for name in rows[0] if name != "epoch" and _is_number(rows[0][name])]
    epochs = [int(row["epoch"]) for row in rows]
    panels = len(columns)
    figure_columns = min(4, panels)
    figure_rows = -(-panels // figure_columns)
    figure, axes = plt.subplots(
        figure_rows,
        figure_columns,
        figsize=(3.2 * figure_columns, 2.6 * figure_rows),
        squeeze=False,
    )
    for axis, name in zip(axes.flat, columns, strict=False):
        axis.plot(epochs, [float(row[name]) for row in rows], marker=".", linewidth=1.5)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("epoch", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[panels:]:
        axis.set_visible(False)
    figure.tight_layout()
    _save(figure, out_png)


def interpolated_precision(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Interpolated precision at recall 0, 0.01, ..., 1: the highest precision at recall >= r.

    `recall` must be non-decreasing (cumulative, in score order, as `VocResult` holds it). The
    result is the monotone envelope that VOC all-point and COCO AP integrate, read as a step
    function (COCO's 101-point lookup); 0 beyond the last recall and for empty arrays.
    """
    recall = np.asarray(recall, dtype=np.float64)
    envelope = np.maximum.accumulate(np.asarray(precision, dtype=np.float64)[::-1])[::-1]
    first_reaching = np.searchsorted(recall, np.linspace(0.0, 1.0, RECALL_POINTS), side="left")
    return np.append(envelope, 0.0)[first_reaching]  # (RECALL_POINTS,)


def plot_ap_per_class(ap_per_class: dict[str, float], out_png: Path, title: str) -> None:
    """Horizontal bars sorted by AP (best on top), value labels, the mean (NaN-free) dashed."""
    names = sorted(ap_per_class, key=lambda n: _nan_last(ap_per_class[n]), reverse=True)
    values = np.array([ap_per_class[name] for name in names], dtype=np.float64)
    figure, axis = plt.subplots(
        figsize=(6.4, 1.2 + 0.28 * max(len(names), 1)), layout="constrained"
    )
    positions = np.arange(len(names))[::-1]
    axis.barh(positions, np.nan_to_num(values), color="tab:blue", height=0.7)
    for position, value in zip(positions, values, strict=True):
        axis.text(np.nan_to_num(value) + 0.01, position, _ap_text(value), va="center", fontsize=7)
    axis.set_yticks(positions, names)
    mean = _nan_mean(values)
    if not np.isnan(mean):
        axis.axvline(mean, color="tab:red", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
        axis.legend(loc="lower right", fontsize=7)
    axis.set_xlim(0, 1.1)
    _style(axis, title, "AP", "")
    _save(figure, out_png)


def plot_pr_curves(
    precision: dict[str, np.ndarray],
    recall: dict[str, np.ndarray],
    ap_per_class: dict[str, float],
    out_png: Path,
) -> None:
    """All classes' precision-recall curves overlaid, and their mean interpolated curve bold.

    Curves are `interpolated_precision`, one per class of `ap_per_class`; the legend names each
    class with its AP when there are at most 20.
    """
    grid = np.linspace(0.0, 1.0, RECALL_POINTS)
    curves = [interpolated_precision(*_pr_points(precision, recall, n)) for n in ap_per_class]
    figure, axis = plt.subplots(figsize=(8, 5.5), layout="constrained")
    labelled = len(curves) <= 20
    for index, (name, curve) in enumerate(zip(ap_per_class, curves, strict=True)):
        label = f"{name} {_ap_text(ap_per_class[name])}" if labelled else None
        colour = plt.cm.tab20(index) if labelled else "grey"
        axis.plot(grid, curve, linewidth=0.8, label=label, color=colour)
    if curves:
        label = f"all classes, mean AP {_ap_text(_nan_mean(list(ap_per_class.values())))}"
        axis.plot(grid, np.mean(curves, axis=0), linewidth=2.5, color="black", label=label)
        axis.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7)
    _style_pr(axis, "Precision-recall curves")
    _save(figure, out_png)


def plot_pr_grid(
    precision: dict[str, np.ndarray],
    recall: dict[str, np.ndarray],
    ap_per_class: dict[str, float],
    out_png: Path,
) -> None:
    """One small panel per class of `ap_per_class`: its raw PR curve and its envelope."""
    names = list(ap_per_class)
    columns = max(1, min(5, len(names)))
    rows = max(1, -(-len(names) // columns))
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.6 * columns, 2.4 * rows), squeeze=False, layout="constrained"
    )
    grid = np.linspace(0.0, 1.0, RECALL_POINTS)
    for axis, name in zip(axes.flat, names, strict=False):
        points = _pr_points(precision, recall, name)
        axis.plot(*points, linewidth=0.8, color="grey")
        axis.plot(grid, interpolated_precision(*points), linewidth=1.5, color="tab:blue")
        if not len(points[0]):
            axis.text(0.5, 0.5, "no detections", ha="center", fontsize=8)
        _style_pr(axis, f"{name} AP {_ap_text(ap_per_class[name])}")
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    _save(figure, out_png)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: list[str], out_png: Path, normalize: bool = True
) -> None:
    """Heat map of a (C + 1, C + 1) [predicted, true] matrix with a background row and column.

    `normalize` divides each true-class column by its sum (`normalize_columns`); cells are
    annotated when there are at most 30 classes, blank where zero.
    """
    labels = [*class_names, "background"]
    if np.shape(matrix) != (len(labels), len(labels)):
        raise ValueError(f"matrix shape {np.shape(matrix)} does not fit {len(labels)} labels")
    values = normalize_columns(matrix) if normalize else np.asarray(matrix, dtype=np.float64)
    side = min(4.0 + 0.45 * len(labels), 24.0)
    figure, axis = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    image = axis.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axis, shrink=0.8).ax.tick_params(labelsize=7)
    ticks = np.arange(len(labels))
    axis.set_xticks(ticks, labels, rotation=90)
    axis.set_yticks(ticks, labels)
    if len(class_names) <= 30:
        for (row, column), value in np.ndenumerate(values):
            if value:
                text = f"{value:.2f}" if normalize else f"{value:.0f}"
                colour = "white" if image.norm(value) > 0.5 else "black"
                axis.text(column, row, text, ha="center", va="center", fontsize=6, color=colour)
    title = "Confusion matrix" + (" (columns normalized)" if normalize else "")
    _style(axis, title, "True", "Predicted", grid=False)
    _save(figure, out_png)


def plot_speed_accuracy(
    names: list[str], latency_ms: list[float], accuracy: list[float], out_png: Path
) -> None:
    """mAP@[.5:.95] against batch-1 latency, one labelled point per model; the Pareto front
    (no other model both faster and more accurate) joined by a line and drawn in red."""
    front = pareto_front(latency_ms, accuracy)
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for name, x, y, best in zip(names, latency_ms, accuracy, front, strict=True):
        axis.scatter(x, y, color="tab:red" if best else "tab:blue", zorder=3)
        axis.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    points = sorted((x, y) for x, y, best in zip(latency_ms, accuracy, front, strict=True) if best)
    if len(points) > 1:
        axis.plot(*zip(*points, strict=True), color="tab:red", alpha=0.6, label="Pareto front")
        axis.legend(fontsize=7)
    _style(
        axis,
        "speed and accuracy",
        "batch-1 latency (ms, forward + post-processing)",
        "mAP@[.5:.95]",
    )
    _save(figure, out_png)


def pareto_front(latency_ms: list[float], accuracy: list[float]) -> list[bool]:
    """True for each point that no other point beats on both (lower latency, higher accuracy)."""
    points = list(zip(latency_ms, accuracy, strict=True))
    return [
        not any(x <= latency and y >= score and (x < latency or y > score) for x, y in points)
        for latency, score in points
    ]


def _pr_points(
    precision: dict[str, np.ndarray], recall: dict[str, np.ndarray], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of one class; empty when the class has no curve."""
    return np.asarray(recall.get(name, ()), float), np.asarray(precision.get(name, ()), float)


def _style(axis: plt.Axes, title: str, xlabel: str, ylabel: str, grid: bool = True) -> None:
    axis.set_title(title, fontsize=9)
    axis.set_xlabel(xlabel, fontsize=8)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.tick_params(labelsize=7)
    if grid:
        axis.grid(alpha=0.3)


def _style_pr(axis: plt.Axes, title: str) -> None:
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    _style(axis, title, "Recall", "Precision")


def _nan_last(value: float) -> float:
    return -np.inf if np.isnan(value) else value


def _nan_mean(values: list[float] | np.ndarray) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def _ap_text(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def _save(figure: plt.Figure, out_png: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(out_png, buffer.getvalue())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
