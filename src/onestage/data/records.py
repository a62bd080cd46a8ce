"""The one record type for annotated images, shared by every reader, writer and dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Coordinates may overshoot the image by this many pixels (float rounding in converted labels).
BOX_TOLERANCE_PX = 1e-3


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


@dataclass
class DetectionDataset:
    """Class names plus records per split (e.g. "train", "val")."""

    class_names: tuple[str, ...]
    splits: dict[str, list[ImageRecord]]

    @property
    def num_images(self) -> int:
        return sum(len(records) for records in self.splits.values())


def box_problem(box_xyxy: tuple[float, float, float, float], width: int, height: int) -> str | None:
    """Why an absolute-pixel xyxy box is invalid for a width x height image, or None if valid."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    if not all(np.isfinite([x1, y1, x2, y2])):
        return f"box {_fmt(box_xyxy)} has a non-finite coordinate"
    if x2 <= x1 or y2 <= y1:
        return f"box {_fmt(box_xyxy)} has non-positive size"
    tol = BOX_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        return f"box {_fmt(box_xyxy)} lies outside the {width}x{height} image"
    return None


def _fmt(box: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"
