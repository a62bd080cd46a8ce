"""An exported file's metadata checked against its graph when it is loaded.

Decoding reads the graph's output through the metadata alone (`priors.numpy_codings.numpy_coding`),
so metadata that disagrees with the graph gives wrong boxes silently (levels in another order),
garbage boxes (another reg_max) or a runtime's traceback (another input size). `check_graph`
compares what the metadata describes with the shapes the runtime reports, and refuses a
mismatch in one line naming the file and the field:

- the input (batch, 3, S, S): S == "input_size";
- the levels ("coding.feature_sizes"): largest first, the order the head lays out its output
  (the layout records no strides, so a level's size is not checked against one);
- the output (batch, A, values): A == the priors the levels give, h * w per level times
  "coding.anchors_per_cell" (anchors) or once (points); values ==
  `priors.numpy_codings.output_values` of the box coding, "coding.reg_max" (points) and the
  number of "class_names".

A dynamic dimension (the batch, or one the runtime cannot know before it runs) is accepted.
Where a count disagrees, the field blamed is the one whose value would make it agree: A
divisible by the cells blames anchors_per_cell, otherwise feature_sizes; for points, values
whose box part is whole bins once the classes are taken off blame reg_max, otherwise
class_names. Metadata fields of the wrong kind are left to the predictor's metadata check.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from onestage.errors import OnestageError
from onestage.priors.numpy_codings import BOX_CODINGS, output_values
from onestage.runtime import Shape


@dataclass(frozen=True)
class _Described:
    """What an exported file's metadata says its graph is."""

    input_size: int
    num_classes: int
    box_coding: str
    levels: tuple[tuple[int, int], ...]  # (height, width) per level, as written
    anchors_per_cell: int  # 1 for points
    reg_max: int  # 0 for anchors


def _described(metadata: dict[str, Any]) -> _Described | None:
    """The metadata's account of the graph, or None where a field the check reads is not of the
    kind onestage writes."""
    size, names, coding = (metadata.get(key) for key in ("input_size", "class_names", "coding"))
    if not (type(size) is int and isinstance(names, list) and isinstance(coding, dict)):
        return None
    box_coding, levels = coding.get("box_coding"), coding.get("feature_sizes")
    count = coding.get("reg_max" if box_coding == "points" else "anchors_per_cell")
    if box_coding not in BOX_CODINGS or type(count) is not int or not _int_pairs(levels):
        return None
    points = box_coding == "points"
    return _Described(
        input_size=size,
        num_classes=len(names),
        box_coding=box_coding,
        levels=tuple((h, w) for h, w in levels),
        anchors_per_cell=1 if points else count,
        reg_max=count if points else 0,
    )


def check_graph(
    path: Path, metadata: dict[str, Any], input_shape: Shape, output_shape: Shape
) -> None:
    """A one-line error naming `path` and the field where `metadata` disagrees with the graph
    whose input and output have these shapes (see the module docstring)."""
    if len(input_shape) != 4 or input_shape[1] not in (3, None) or len(output_shape) != 3:
        raise OnestageError(
            f"{path}: the graph maps {_text(input_shape)} to {_text(output_shape)}, not "
            "(batch, 3, S, S) images to (batch, priors, values)"
        )
    graph = _described(metadata)
    if graph is None:
        return
    _check_input(path, graph, input_shape[2:])
    if not _largest_first(graph.levels):
        raise OnestageError(
            f"{path}: metadata 'coding.feature_sizes' {[list(level) for level in graph.levels]} "
            "is not largest first, the order of the graph's output"
        )
    priors, values = output_shape[1:]
    if priors is not None:
        _check_priors(path, graph, priors)
    if values is not None:
        _check_values(path, graph, values)


def check_whole_graph(
    path: Path, metadata: dict[str, Any], boxes_shape: Shape, scores_shape: Shape
) -> None:
    """As `check_graph`, for a whole-graph file (`export.whole_graph`) from the boxes (B, A, 4)
    and scores (B, C, A) of one run: A against the levels, C against "class_names"."""
    if not (
        len(boxes_shape) == 3
        and boxes_shape[2] == 4
        and len(scores_shape) == 3
        and scores_shape[2] == boxes_shape[1]
    ):
        raise OnestageError(
            f"{path}: the graph gives {_text(boxes_shape)} and {_text(scores_shape)}, not "
            "(batch, priors, 4) boxes and (batch, classes, priors) scores"
        )
    graph = _described(metadata)
    if graph is None:
        return
    _check_priors(path, graph, boxes_shape[1])
    if scores_shape[1] != graph.num_classes:
        raise OnestageError(
            f"{path}: metadata 'class_names' ({_classes(graph.num_classes)}) does not match the "
            f"graph's scores ({_classes(scores_shape[1])})"
        )


def _check_input(path: Path, graph: _Described, sides: Shape) -> None:
    if any(side not in (graph.input_size, None) for side in sides):
        height, width = ("?" if side is None else str(side) for side in sides)
        found = height if height == width else f"{height}x{width}"
        raise OnestageError(
            f"{path}: metadata 'input_size' {graph.input_size} does not match the graph's "
            f"input {found}"
        )


def _check_priors(path: Path, graph: _Described, priors: int) -> None:
    cells = sum(h * w for h, w in graph.levels)
    if priors == cells * graph.anchors_per_cell:
        return
    if graph.box_coding == "anchors" and priors % cells == 0:
        raise OnestageError(
            f"{path}: metadata 'coding.anchors_per_cell' {graph.anchors_per_cell} does not "
            f"match the graph's output ({priors} priors over {cells} cells: "
            f"{priors // cells} per cell)"
        )
    raise OnestageError(
        f"{path}: metadata 'coding.feature_sizes' {[list(level) for level in graph.levels]} "
        f"({cells * graph.anchors_per_cell} priors) does not match the graph's output "
        f"({priors} priors)"
    )


def _check_values(path: Path, graph: _Described, values: int) -> None:
    if values == output_values(graph.box_coding, graph.reg_max, graph.num_classes):
        return
    box_values = values - graph.num_classes
    if graph.box_coding == "points" and box_values > 0 and box_values % 4 == 0:
        raise OnestageError(
            f"{path}: metadata 'coding.reg_max' {graph.reg_max} does not match the graph's "
            f"output ({values} values per prior: reg_max {box_values // 4 - 1} with "
            f"{_classes(graph.num_classes)})"
        )
    classes = values - output_values(graph.box_coding, graph.reg_max, 0)
    raise OnestageError(
        f"{path}: metadata 'class_names' ({_classes(graph.num_classes)}) does not match the "
        f"graph's output ({values} values per prior: {_classes(classes)})"
    )


def _classes(count: int) -> str:
    return f"{count} class" + ("" if count == 1 else "es")


def _largest_first(levels: tuple[tuple[int, int], ...]) -> bool:
    """Whether no level is taller or wider than the one before it."""
    return all(h <= above_h and w <= above_w for (above_h, above_w), (h, w) in pairwise(levels))


def _int_pairs(levels: Any) -> bool:
    """Whether `levels` is a non-empty list of [height, width] pairs of positive integers."""
    return (
        isinstance(levels, list)
        and bool(levels)
        and all(
            isinstance(level, list)
            and len(level) == 2
            and all(type(side) is int and side >= 1 for side in level)
            for level in levels
        )
    )


def _text(shape: Shape) -> str:
    """(?, 3, 320, 320): a shape with its dynamic dimensions as "?"."""
    return "(" + ", ".join("?" if dim is None else str(dim) for dim in shape) + ")"
