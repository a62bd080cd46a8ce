"""The detections of one image, as the predictor returns them and every consumer takes them (the
server, the evaluator, the metrics): absolute pixel xyxy boxes, scores and class ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class DetectionsLike(Protocol):
    boxes_xyxy: Any  # (D, 4) absolute pixel xyxy
    scores: Any  # (D,)
    class_ids: Any  # (D,) int


@dataclass(frozen=True)
class ImageDetections:
    """The scored detections of one image."""

    boxes_xyxy: np.ndarray  # (D, 4) float64, absolute pixel xyxy
    scores: np.ndarray  # (D,) float64
    class_ids: np.ndarray  # (D,) int64

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(ids):
            raise ValueError(
                f"detections: {len(boxes)} boxes, {len(scores)} scores and "
                f"{len(ids)} class ids differ in length"
            )
        if not np.isfinite(scores).all():
            raise ValueError("detections: scores must be finite (they are sorted)")
        object.__setattr__(self, "boxes_xyxy", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", ids)

    @classmethod
    def of(cls, detections: DetectionsLike) -> ImageDetections:
        """Convert any object with `boxes_xyxy`, `scores` and `class_ids` attributes."""
        if isinstance(detections, cls):
            return detections
        return cls(detections.boxes_xyxy, detections.scores, detections.class_ids)
