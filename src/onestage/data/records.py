"""The one record type for annotated images, shared by every reader, writer and dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onestage.errors import DataError

Box = tuple[float, float, float, float]

# Coordinates may overshoot the image by this many pixels (float rounding in converted labels).
BOX_TOLERANCE_PX = 1e-3
# Unless reading strictly, a box overshooting an image edge by at most this fraction of the image
# side (width for x, height for y) is clipped into the image, as Ultralytics does.
CLIP_TOLERANCE = 0.02
# Class ids below 0 in a training batch's ground truth: PAD_CLASS_ID marks the padding slots,
# IGNORED_CLASS_ID an object training ignores (VOC difficult, COCO crowd).
PAD_CLASS_ID = -1
IGNORED_CLASS_ID = -2


@dataclass(frozen=True)
class ImageRecord:
    """One annotated image.

    `boxes_xyxy` are absolute pixel coordinates (x1, y1, x2, y2), continuous convention: a box
    covering the whole image is (0, 0, width, height). `class_ids` index `class_names`.
    `difficult` marks objects that VOC-style evaluation ignores (False unless a format says so).
    """

    image_path: Path
    width: int
    height: int
    boxes_xyxy: np.ndarray  # (N, 4) float64, absolute pixels
    class_ids: np.ndarray  # (N,) int64
    class_names: tuple[str, ...]
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (N,) bool
    image_id: int | None = None  # the dataset's own id of the image (COCO), else None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        if difficult.size == 0 and ids.size:
            difficult = np.zeros(ids.size, dtype=bool)
        if not (len(boxes) == len(ids) == len(difficult)):
            raise ValueError(
                f"{self.image_path}: {len(boxes)} boxes, {len(ids)} class ids and "
                f"{len(difficult)} difficult flags differ in length"
            )
        object.__setattr__(self, "image_path", Path(self.image_path))
        object.__setattr__(self, "boxes_xyxy", boxes)
        object.__setattr__(self, "class_ids", ids)
        object.__setattr__(self, "difficult", difficult)
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def num_objects(self) -> int:
        return len(self.class_ids)

    @property
    def labels(self) -> list[str]:
        """Class name of each box."""
        return [self.class_names[i] for i in self.class_ids]


@dataclass(frozen=True)
class LabelFix:
    """A box that overshot the image a little, as read leniently: clipped into the image, or
    dropped when clipping left no area. Located like a DataError (file, then line or field).
    """

    path: Path
    box_xyxy: Box  # as in the file, absolute pixels
    clipped_xyxy: Box | None  # None: dropped
    image_size: tuple[int, int]  # (width, height)
    line: int | None = None
    field: str | None = None

    @property
    def dropped(self) -> bool:
        return self.clipped_xyxy is None

    def __str__(self) -> str:
        width, height = self.image_size
        outcome = (
            "dropped (no area left after clipping)"
            if self.clipped_xyxy is None
            else f"clipped to {_fmt(self.clipped_xyxy)}"
        )
        message = f"box {_fmt(self.box_xyxy)} overshoots the {width}x{height} image: {outcome}"
        return str(DataError(self.path, message, line=self.line, field=self.field))


def label_fixes_summary(fixes: list[LabelFix]) -> str:
    """E.g. "3 boxes clipped to the image, 1 degenerate box dropped"."""
    dropped = sum(fix.dropped for fix in fixes)
    clipped = len(fixes) - dropped
    parts = [f"{clipped} {_boxes(clipped)} clipped to the image"] if clipped else []
    parts += [f"{dropped} degenerate {_boxes(dropped)} dropped"] if dropped else []
    return ", ".join(parts)


@dataclass
class DetectionDataset:
    """Class names plus records per split (e.g. "train", "val").

    `label_fixes` lists the boxes a reader clipped or dropped (see `CLIP_TOLERANCE`);
    `category_ids` the dataset's own id of each class (COCO), else None.
    """

    class_names: tuple[str, ...]
    splits: dict[str, list[ImageRecord]]
    label_fixes: list[LabelFix] = field(default_factory=list)
    category_ids: tuple[int, ...] | None = None

    @property
    def num_images(self) -> int:
        return sum(len(records) for records in self.splits.values())


def box_problem(box_xyxy: Box, width: int, height: int, overshoot: float = 0.0) -> str | None:
    """Why an absolute-pixel xyxy box is invalid for a width x height image, or None if valid.

    Edges may lie outside the image by BOX_TOLERANCE_PX, or by `overshoot` times the image side
    when that is more.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    if not all(np.isfinite([x1, y1, x2, y2])):
        return f"box {_fmt(box_xyxy)} has a non-finite coordinate"
    if x2 <= x1 or y2 <= y1:
        return f"box {_fmt(box_xyxy)} has non-positive size"
    tol_x = max(BOX_TOLERANCE_PX, overshoot * width)
    tol_y = max(BOX_TOLERANCE_PX, overshoot * height)
    if x1 < -tol_x or y1 < -tol_y or x2 > width + tol_x or y2 > height + tol_y:
        return f"box {_fmt(box_xyxy)} lies outside the {width}x{height} image"
    return None


def _fmt(box: Box) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"


def _boxes(count: int) -> str:
    return "box" if count == 1 else "boxes"
