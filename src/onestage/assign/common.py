"""The contract every assigner shares, and the steps the assigners have in common.

Inputs are a `onestage.priors.Priors` and ground truth in the batch layout of `onestage.assign`:
gt_boxes (B, M, 4) normalised xyxy and gt_class_ids (B, M) int64 with -1 for padding and -2 for
ignored objects. The output is a `PriorTargets`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from onestage.boxes import xyxy_to_cxcywh
from onestage.data.records import IGNORED_CLASS_ID, PAD_CLASS_ID

# matched_gt value of a prior that takes no ground-truth box (background).
BACKGROUND = -1

# IoU given to the (prior, box) pairs that are not positive before taking the highest IoU per
# prior: below every real IoU (>= 0), so such a pair never wins.
_NOT_POSITIVE = -1.0


@dataclass(frozen=True)
class PriorTargets:
    """Training targets of a batch, one row per prior.

    class_targets: (B, A) int64, the matched box's class, or num_classes for background and for
    ignored priors (which no loss term reads).
    box_targets: (B, A, 4) the matched box, normalised xyxy, on positive priors; 0 elsewhere.
    Not encoded: the loss encodes them as its head reads boxes (offsets, distances to the sides).
    target_scores: (B, A, C) float, C = num_classes, soft one-hot: a positive prior's score at
    its class (max-IoU and ATSS: 1; TAL: the normalised alignment metric), 0 everywhere else.
    positive: (B, A) bool, priors that took a real box.
    ignored: (B, A) bool, priors that took an ignored box: neither positive nor negative.
    matched_gt: (B, A) int64, the index into M of the box a prior took (real or ignored), or
    BACKGROUND (-1).
    """

    class_targets: Tensor
    box_targets: Tensor
    target_scores: Tensor
    positive: Tensor
    ignored: Tensor
    matched_gt: Tensor


def with_a_slot(gt_boxes: Tensor, gt_class_ids: Tensor) -> tuple[Tensor, Tensor]:
    """The ground truth unchanged, or with one padding slot where a batch has none (M = 0).

    gt_boxes: (B, M, 4) normalised xyxy, gt_class_ids: (B, M). A padding slot takes no prior, so
    the assigners need no separate path for a batch without objects.
    """
    if gt_class_ids.shape[1] > 0:
        return gt_boxes, gt_class_ids
    batch = gt_class_ids.shape[0]
    return gt_boxes.new_zeros(batch, 1, 4), gt_class_ids.new_full((batch, 1), PAD_CLASS_ID)


def centres_inside(prior_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """Whether each prior's centre lies strictly inside each box: (A, 4), (B, M, 4) -> (B, A, M).

    Both normalised xyxy. A centre on a box's edge is outside.
    """
    centres = xyxy_to_cxcywh(prior_boxes)[None, :, None, :2]  # (1, A, 1, 2)
    top_left = gt_boxes[:, None, :, :2]  # (B, 1, M, 2)
    bottom_right = gt_boxes[:, None, :, 2:]  # (B, 1, M, 2)
    return ((centres > top_left) & (centres < bottom_right)).all(dim=-1)  # (B, A, M)


def take_highest_iou(positive: Tensor, iou: Tensor) -> Tensor:
    """The box each prior takes among those it is positive for: the highest IoU.

    positive: (B, A, M) bool; iou: (B, A, M). Ties go to the lowest box index. Returns (B, A)
    int64, the box index or BACKGROUND (-1) for a prior positive for none.
    """
    best = iou.masked_fill(~positive, _NOT_POSITIVE).argmax(dim=2)  # (B, A), first maximum
    return torch.where(positive.any(dim=2), best, BACKGROUND)


def targets_from_matches(
    matched: Tensor, gt_boxes: Tensor, gt_class_ids: Tensor, num_classes: int, scores: Tensor
) -> PriorTargets:
    """Class, box and score targets from each prior's matched box.

    matched: (B, A) int64 box index or -1; gt_boxes: (B, M, 4) normalised xyxy (M >= 1, see
    `with_a_slot`); gt_class_ids: (B, M); scores: (B, A) float, the target score of a positive
    prior at its class (ignored elsewhere).
    """
    batch, num_priors = matched.shape
    index = matched.clamp(min=0)  # (B, A)
    matched_classes = gt_class_ids.gather(1, index)  # (B, A)
    positive = (matched >= 0) & (matched_classes >= 0)  # (B, A)
    ignored = (matched >= 0) & (matched_classes == IGNORED_CLASS_ID)  # (B, A)
    class_targets = torch.where(positive, matched_classes, num_classes)  # (B, A)
    matched_boxes = gt_boxes.gather(1, index[:, :, None].expand(batch, num_priors, 4))  # (B, A, 4)
    # Each row writes its score at its class; non-positive rows write 0 (at column C - 1).
    target_scores = scores.new_zeros(batch, num_priors, num_classes).scatter_(
        2,
        class_targets.clamp(max=num_classes - 1)[:, :, None],
        torch.where(positive, scores, 0.0)[:, :, None],
    )  # (B, A, C)
    return PriorTargets(
        class_targets=class_targets,
        box_targets=torch.where(positive[:, :, None], matched_boxes, 0.0),
        target_scores=target_scores,
        positive=positive,
        ignored=ignored,
        matched_gt=matched,
    )


def gt_slots(gt_class_ids: Tensor) -> tuple[Tensor, Tensor]:
    """(B, M) class ids -> (valid, ignored), both (B, M) bool: valid = real or ignored object."""
    ignored = gt_class_ids == IGNORED_CLASS_ID
    return (gt_class_ids >= 0) | ignored, ignored
