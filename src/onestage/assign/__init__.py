"""Assigners by name: `build_assigner("atss", topk=9)(priors, gt_boxes, gt_class_ids, 15)`.

An assigner decides, per image, which ground-truth box each prior (anchor, or cell of an anchor-
free head) learns from. The registry `ASSIGNERS` holds "maxiou" (`MaxIoUAssigner`, the seed's
rule; anchors only), "atss" (`ATSSAssigner`) and "tal" (`TaskAlignedAssigner`). Every assigner
is called the same way: a `onestage.priors.Priors` (boxes (A, 4) normalised xyxy in head output
order, and the number of priors of each pyramid level, largest map first), ground truth in the
batch layout (gt_boxes (B, M, 4) normalised xyxy; gt_class_ids (B, M) int64 in [0, num_classes),
-1 for padding slots, -2 for ignored objects), num_classes, and the detached predictions
pred_scores (B, A, C) probabilities and pred_boxes (B, A, 4) normalised xyxy, which only
prediction-aware assigners (TAL) read. It returns a `PriorTargets`: class_targets (B, A) with
num_classes for background, box_targets (B, A, 4) the matched boxes in normalised xyxy on
positive priors, 0 elsewhere (encoding them is the loss's job), target_scores (B, A, C) soft
one-hot, positive and ignored (B, A) masks (a prior that takes an ignored object is neither
positive nor negative), and matched_gt (B, A), the box index or -1."""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

from onestage.assign.atss import ATSSAssigner
from onestage.assign.common import PriorTargets
from onestage.assign.maxiou import MaxIoUAssigner
from onestage.assign.tal import TaskAlignedAssigner
from onestage.priors import Priors
from onestage.registry import Registry


class Assigner(Protocol):
    """What a head's training step calls (see the module docstring); `uses_predictions` says
    whether it reads pred_scores and pred_boxes (the caller computes them only then)."""

    uses_predictions: bool

    def __call__(
        self,
        priors: Priors,
        gt_boxes: Tensor,
        gt_class_ids: Tensor,
        num_classes: int,
        pred_scores: Tensor | None = None,
        pred_boxes: Tensor | None = None,
    ) -> PriorTargets: ...


ASSIGNERS: Registry[type] = Registry("assigner")
ASSIGNERS.register("maxiou")(MaxIoUAssigner)
ASSIGNERS.register("atss")(ATSSAssigner)
ASSIGNERS.register("tal")(TaskAlignedAssigner)
assigner_names = ASSIGNERS.names


def build_assigner(name: str, **options: Any) -> Assigner:
    """The assigner `name` configured with `options` (its dataclass fields)."""
    return ASSIGNERS.build(name, **options)


__all__ = [
    "ASSIGNERS",
    "ATSSAssigner",
    "Assigner",
    "MaxIoUAssigner",
    "PriorTargets",
    "TaskAlignedAssigner",
    "assigner_names",
    "build_assigner",
]
