"""The anchor-free detector's loss: quality-aware classification, IoU boxes, DFL (YOLOv8's form).

`QualityLoss`, "quality" in `losses.LOSSES`, is called like every loss (`losses.common`):
`loss(pred, targets, coding)` with a `PointCoding` head's output, which the coding splits into
its box part and logits, and an assigner's `PriorTargets` (TAL's soft target scores: each
positive prior's score at its class is its normalised alignment, about the IoU it should
predict). With S = the sum of all target scores in the batch (at least 1), the normaliser of
every term:

- cls = sum over every prior that is not ignored and every class of the classification term
  against the target scores ("bce": binary cross-entropy, YOLOv8's; "vfl": varifocal; "qfl":
  quality focal), / S;
- box = sum over positive priors of w * (1 - CIoU) (or 1 - GIoU) between the decoded prediction
  and the target box, w = the prior's target score, / S;
- dfl = sum over positive priors of w * the mean over the 4 sides of the distribution focal loss
  of the target's distance (stride units), / S; 0 for a head without distributions (reg_max 0).

loss = cls_weight * cls + box_weight * box + dfl_weight * dfl (YOLOv8's weights 0.5, 7.5, 1.5);
the parts are returned unweighted. All float32, no boolean indexing (static shapes, no host
synchronisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from onestage.assign.common import PriorTargets
from onestage.boxes import elementwise_generalized_box_iou
from onestage.errors import OnestageError
from onestage.losses.common import register_loss
from onestage.losses.terms import (
    ciou_loss,
    distribution_focal_loss,
    quality_focal_loss,
    varifocal_loss,
)
from onestage.priors.codings import PointCoding
from onestage.train_choices import BOX_TERMS, CLASS_TERMS, POINT_LOSS


@register_loss(POINT_LOSS)
@dataclass(frozen=True)
class QualityLoss:
    """See the module docstring; `cls_loss` in CLASS_TERMS, `box_loss` in BOX_TERMS."""

    box_coding: ClassVar[str] = "points"
    score_mode: ClassVar[str] = "sigmoid"
    cls_loss: str = "bce"
    box_loss: str = "ciou"
    cls_weight: float = 0.5
    box_weight: float = 7.5
    dfl_weight: float = 1.5

    def __post_init__(self) -> None:
        if self.cls_loss not in CLASS_TERMS:
            raise OnestageError(
                f"unknown classification loss {self.cls_loss!r} for an anchor-free head; "
                f"valid: {', '.join(CLASS_TERMS)}"
            )
        if self.box_loss not in BOX_TERMS:
            raise OnestageError(
                f"unknown box loss {self.box_loss!r} for an anchor-free head; "
                f"valid: {', '.join(BOX_TERMS)}"
            )

    def class_term(self, logits: Tensor, target_scores: Tensor) -> Tensor:
        """Per element (B, A, C) classification loss against soft targets."""
        if self.cls_loss == "vfl":
            return varifocal_loss(logits, target_scores)
        if self.cls_loss == "qfl":
            return quality_focal_loss(logits, target_scores)
        return F.binary_cross_entropy_with_logits(
            logits.float(), target_scores.float(), reduction="none"
        )

    def box_term(self, predicted_xyxy: Tensor, target_xyxy: Tensor) -> Tensor:
        """Per prior (B, A) box loss between decoded boxes."""
        if self.box_loss == "giou":
            return 1.0 - elementwise_generalized_box_iou(predicted_xyxy, target_xyxy)
        return ciou_loss(predicted_xyxy, target_xyxy)

    def __call__(
        self, pred: Tensor, targets: PriorTargets, coding: PointCoding
    ) -> dict[str, Tensor]:
        """pred (B, A, 4 (reg_max + 1) + C) of the head, the assigner's targets (box_targets
        normalised xyxy) -> loss, cls, box, dfl."""
        box_part, logits = coding.split(pred.float())
        scores = targets.target_scores.float()  # (B, A, C)
        normaliser = scores.sum().clamp(min=1.0)
        weight = scores.sum(dim=-1)  # (B, A): the positive priors' target scores, 0 elsewhere
        positive = targets.positive

        counted = ~targets.ignored[..., None]  # (B, A, 1)
        cls = torch.where(counted, self.class_term(logits, scores), 0.0).sum() / normaliser

        # Negatives get a dummy target (their own point's cell) so every term stays finite.
        predicted = coding.decode(box_part)  # (B, A, 4)
        target_boxes = torch.where(positive[..., None], targets.box_targets.float(), predicted)
        per_prior = self.box_term(predicted, target_boxes.detach())  # (B, A)
        box = torch.where(positive, per_prior * weight, 0.0).sum() / normaliser

        if coding.reg_max > 0:
            distances = coding.encode(targets.box_targets.float())  # (B, A, 4)
            per_side = distribution_focal_loss(
                coding.bins(box_part), distances, coding.reg_max
            )  # (B, A, 4)
            dfl = torch.where(positive, per_side.mean(-1) * weight, 0.0).sum() / normaliser
        else:
            dfl = box.new_zeros(())
        loss = self.cls_weight * cls + self.box_weight * box + self.dfl_weight * dfl
        return {"loss": loss, "cls": cls, "box": box, "dfl": dfl}
