"""Task-aligned assignment (TAL): TOOD's rule (Feng et al., ICCV 2021), as YOLOv8 runs it.

Per image and ground-truth box g of class c, from the detached predictions:

1. Alignment metric of prior a: t = s ** alpha * u ** beta, with s the predicted score (a
   probability) of class c and u the IoU of the predicted box with g (plain IoU; YOLOv8 uses
   CIoU clamped at 0). An ignored object has no class: s is the prior's highest class score.
2. Candidates: the priors whose centre lies strictly inside g (YOLOv8 asks for 1e-9, below
   float32 resolution in normalised coordinates).
3. Positive for g: the `topk` candidates with the largest t; ties go to the lowest prior index
   (a stable sort). A candidate in the top k is positive even with t = 0 (target score 0), as in
   YOLOv8.
4. A prior positive for several boxes takes the one whose IoU with its predicted box is the
   highest (YOLOv8's rule; ties: the lowest box index), and stops being positive for the others.
5. Target score of a positive prior of g, at class c: t / max t * max u, the maxima over g's
   positives after step 4: g's best-aligned prior gets g's best IoU, the others in proportion
   (the soft label of varifocal and BCE losses). 0 if g's max t is 0.

Defaults: topk 13, alpha 1.0, beta 6.0, the values of the TOOD paper (and of the class default
of YOLOv8's TaskAlignedAssigner); YOLOv8's detection loss runs topk 10, alpha 0.5.

Worked example (tests/assign/test_assigners.py), full-height strips, one box g = [0, 8] of class 1,
topk 2:

    prior               [0, 2]     [2, 4]     [4, 6]     [6, 8]     [8, 10] (centre outside)
    u (predicted box)   0.5        1          0.5        0.5        1
    s (class 1)         0.8        0.01       0.4        0.2        0.9
    t = s * u**6        0.0125     0.01       0.00625    0.003125   (not a candidate)
    top 2: [0, 2] and [2, 4]; max t = 0.0125, max u = 1
    target score        1.0        0.8        0          0          0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from onestage.assign.common import (
    PriorTargets,
    centres_inside,
    gt_slots,
    take_highest_iou,
    targets_from_matches,
    with_a_slot,
)
from onestage.boxes import batched_box_iou
from onestage.errors import OnestageError
from onestage.priors import Priors

# Alignment metric given to non-candidates before ranking: below every real metric (>= 0).
_NOT_CANDIDATE = -1.0


@dataclass(frozen=True)
class TaskAlignedAssigner:
    """TAL (see the module docstring): `topk` positives per box, metric s ** alpha * u ** beta."""

    uses_predictions: ClassVar[bool] = True  # whether it reads pred_scores, pred_boxes
    topk: int = 13
    alpha: float = 1.0
    beta: float = 6.0

    def __post_init__(self) -> None:
        if self.topk < 1 or self.alpha < 0 or self.beta < 0:
            raise OnestageError(
                f"TAL needs topk >= 1 and alpha, beta >= 0, got topk={self.topk}, "
                f"alpha={self.alpha}, beta={self.beta}"
            )

    def __call__(
        self,
        priors: Priors,
        gt_boxes: Tensor,
        gt_class_ids: Tensor,
        num_classes: int,
        pred_scores: Tensor | None = None,
        pred_boxes: Tensor | None = None,
    ) -> PriorTargets:
        """Assign boxes to priors from the predictions (detached here).

        gt_boxes: (B, M, 4) normalised xyxy; gt_class_ids: (B, M) int64, -1 padding, -2 ignored;
        pred_scores: (B, A, C) class probabilities, C = num_classes; pred_boxes: (B, A, 4)
        decoded boxes, normalised xyxy. Computes in at least float32.
        """
        if pred_scores is None or pred_boxes is None:
            raise ValueError("task-aligned assignment needs pred_scores and pred_boxes")
        if pred_scores.shape[-1] != num_classes:
            raise ValueError(f"pred_scores has {pred_scores.shape[-1]} classes, not {num_classes}")
        gt_boxes, gt_class_ids = with_a_slot(gt_boxes, gt_class_ids)
        batch, max_boxes = gt_class_ids.shape
        num_priors = priors.boxes.shape[0]
        dtype = torch.promote_types(pred_scores.dtype, torch.float32)
        scores = pred_scores.detach().to(dtype)  # (B, A, C)
        boxes = gt_boxes.to(dtype)  # (B, M, 4)
        iou = batched_box_iou(pred_boxes.detach().to(dtype), boxes)  # (B, A, M)

        valid, ignored = gt_slots(gt_class_ids)  # (B, M) each
        class_index = gt_class_ids.clamp(min=0)[:, None, :].expand(batch, num_priors, max_boxes)
        score = scores.gather(2, class_index)  # (B, A, M): score of each box's class
        score = torch.where(ignored[:, None, :], scores.amax(dim=2, keepdim=True), score)
        metric = score.pow(self.alpha) * iou.pow(self.beta)  # (B, A, M)

        candidate = centres_inside(priors.boxes.to(dtype), boxes) & valid[:, None, :]  # (B, A, M)
        ranked = metric.masked_fill(~candidate, _NOT_CANDIDATE).sort(
            dim=1, descending=True, stable=True
        )  # ties: lowest prior index first
        top = ranked.indices[:, : self.topk]  # (B, min(topk, A), M)
        in_top = torch.zeros_like(candidate).scatter(1, top, True)  # (B, A, M)
        positive = in_top & candidate  # fewer than topk candidates: the rest is dropped here

        matched = take_highest_iou(positive, iou)  # (B, A)
        box_index = torch.arange(max_boxes, device=matched.device)
        kept = positive & (matched[:, :, None] == box_index)  # (B, A, M): one box per prior
        kept_metric = metric.masked_fill(~kept, 0.0)  # (B, A, M)
        best_metric = kept_metric.amax(dim=1, keepdim=True)  # (B, 1, M)
        best_iou = iou.masked_fill(~kept, 0.0).amax(dim=1, keepdim=True)  # (B, 1, M)
        # Where a box's best metric is 0, all its kept metrics are 0: dividing by 1 keeps them 0.
        normalised = kept_metric * best_iou / torch.where(best_metric > 0, best_metric, 1.0)
        target = normalised.sum(dim=2)  # (B, A): at most one box per prior is non-zero
        return targets_from_matches(matched, gt_boxes, gt_class_ids, num_classes, target)
