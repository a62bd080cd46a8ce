"""Detection metrics: VOC AP@0.5 (Cartucho/mAP matching, `metrics.voc`), COCO, Cartucho export.

Every metric takes two lists in the same image order, one ground truth and one detection set per
image. Any object with the attributes below works (duck typing; numpy arrays or CPU tensors), so
`onestage.data.records.ImageRecord` is a ground truth as it stands:

- ground truth: ``boxes_xyxy`` (G, 4) absolute pixel xyxy, ``class_ids`` (G,) int, ``difficult``
  (G,) bool;
- detections: ``boxes_xyxy`` (D, 4) absolute pixel xyxy, ``scores`` (D,), ``class_ids`` (D,) int.

Boxes must be in pixels of the original image: scale normalised boxes (as model post-processing
returns them) by (width, height, width, height) first.

`ImageGroundTruth` and `onestage.detections.ImageDetections` are the concrete, validated forms
the metrics convert their inputs to. An image's id is its list position; names are only needed
for exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from onestage.detections import DetectionsLike, ImageDetections


class GroundTruthLike(Protocol):
    boxes_xyxy: Any  # (G, 4) absolute pixel xyxy
    class_ids: Any  # (G,) int
    difficult: Any  # (G,) bool


@dataclass(frozen=True)
class ImageGroundTruth:
    """The objects of one image; `difficult` objects are ignored by VOC and COCO evaluation."""

    boxes_xyxy: np.ndarray  # (G, 4) float64, absolute pixel xyxy
    class_ids: np.ndarray  # (G,) int64
    difficult: np.ndarray  # (G,) bool

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        if not len(boxes) == len(ids) == len(difficult):
            raise ValueError(
                f"ground truth: {len(boxes)} boxes, {len(ids)} class ids and "
                f"{len(difficult)} difficult flags differ in length"
            )
        object.__setattr__(self, "boxes_xyxy", boxes)
        object.__setattr__(self, "class_ids", ids)
        object.__setattr__(self, "difficult", difficult)

    @classmethod
    def of(cls, ground_truth: GroundTruthLike) -> ImageGroundTruth:
        """Convert any object with `boxes_xyxy`, `class_ids` and `difficult` attributes."""
        if isinstance(ground_truth, cls):
            return ground_truth
        return cls(ground_truth.boxes_xyxy, ground_truth.class_ids, ground_truth.difficult)


def as_evaluation_inputs(
    ground_truths: list[GroundTruthLike],
    detections: list[DetectionsLike],
    num_classes: int,
) -> tuple[list[ImageGroundTruth], list[ImageDetections]]:
    """Convert both lists and check that they pair up and that class ids are in [0, num_classes)."""
    if len(ground_truths) != len(detections):
        raise ValueError(
            f"{len(ground_truths)} ground-truth images but {len(detections)} detection images"
        )
    gts = [ImageGroundTruth.of(g) for g in ground_truths]
    dets = [ImageDetections.of(d) for d in detections]
    for image_id, (gt, det) in enumerate(zip(gts, dets, strict=True)):
        ids = np.concatenate((gt.class_ids, det.class_ids))
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            bad = sorted({i for i in ids.tolist() if not 0 <= i < num_classes})
            raise ValueError(f"image {image_id}: class ids {bad} outside [0, {num_classes})")
    return gts, dets


__all__ = [
    "GroundTruthLike",
    "ImageGroundTruth",
    "as_evaluation_inputs",
]
