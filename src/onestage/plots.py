"""Matplotlib figures written to files: training curves (and, later, evaluation plots)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from onestage.fileio import atomic_write_bytes


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
