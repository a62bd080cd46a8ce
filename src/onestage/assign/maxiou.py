"""Max-IoU anchor matching, the seed's rule, vectorised over the batch: `match_anchors`, and
`MaxIoUAssigner`, the rule as an assigner (registered as "maxiou" in `onestage.assign`).

The seed (d2l's assign_anchor_to_bbox) matches per image in two steps:

1. Threshold: an anchor whose best IoU with a ground-truth box is >= the threshold takes that
   box (ties between boxes: the lowest box index).
2. Forced (greedy bipartite): M times, the (anchor, box) pair with the globally largest remaining
   IoU is matched, overriding step 1 for that anchor, and the anchor's row and the box's column
   are removed. So every box gets at least its best free anchor, however low its IoU.

Tie rule of step 2: the argmax over the flattened (anchor, box) IoU matrix takes the first
maximum, i.e. the lowest anchor index, then the lowest box index. Worked example, one image,
3 anchors x 2 boxes, threshold 0.4 (rows = anchors):

           box0  box1
    a0     0.6   0.3        step 1: a0 -> box0 (0.6 >= 0.4); a1, a2 -> -1
    a1     0.1   0.3        step 2a: max 0.6 at (a0, box0): a0 -> box0; drop row a0, column box0
    a2     0.0   0.3        step 2b: max 0.3 at (a1, box1) and (a2, box1): a1 -> box1
                            result: [0, 1, -1]

One deviation from the seed, which only degenerate data can reach: step 2 forces pairs with a
positive IoU only (the seed would give a box that overlaps no free anchor some arbitrary anchor
with IoU 0). Padding slots never match.

Ignored objects (VOC "difficult", COCO "iscrowd": the metrics neither reward nor punish
detecting them) take part in step 1 only. An anchor that step 1 gives to an ignored object, and
that step 2 does not force onto a real one, is neither positive nor negative: `MaxIoUAssigner`
marks it `ignored`, and the losses leave it out of every term, hard-negative mining included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from onestage.assign.common import (
    BACKGROUND,
    PriorTargets,
    gt_slots,
    targets_from_matches,
    with_a_slot,
)
from onestage.boxes import batched_box_iou
from onestage.priors import Priors

# IoU given to padding slots and to removed rows and columns: below every real IoU (>= 0).
_REMOVED = -1.0


def match_anchors(
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    iou_threshold: float = 0.4,
    force_best: bool = True,
    gt_ignored: Tensor | None = None,
) -> Tensor:
    """Assign ground-truth boxes to anchors with the seed's rule (see the module docstring).

    anchors: (A, 4) and gt_boxes: (B, M, 4), xyxy in the same unit (normalised in onestage);
    gt_valid: (B, M) bool, False for padding slots; gt_ignored: (B, M) bool, objects matched by
    the threshold only (never forced). Returns matched_gt: (B, A) int64, the index into M of the
    box each anchor takes, or BACKGROUND (-1). force_best=False skips the forced step (threshold
    only). IoU is computed in at least float32.
    """
    batch, max_boxes = gt_valid.shape
    num_anchors = anchors.shape[0]
    matched = torch.full((batch, num_anchors), BACKGROUND, dtype=torch.int64, device=anchors.device)
    if max_boxes == 0:
        return matched

    dtype = torch.promote_types(anchors.dtype, torch.float32)
    iou = batched_box_iou(
        anchors.to(dtype).expand(batch, num_anchors, 4), gt_boxes.to(dtype)
    )  # (B, A, M)
    iou = iou.masked_fill(~gt_valid[:, None, :], _REMOVED)

    best_gt = iou.argmax(dim=2)  # (B, A), first maximum = lowest box index
    best_iou = iou.gather(2, best_gt[:, :, None])[:, :, 0]  # (B, A)
    matched = torch.where(best_iou >= iou_threshold, best_gt, matched)
    if not force_best:
        return matched

    if gt_ignored is not None:
        iou = iou.masked_fill(gt_ignored[:, None, :], _REMOVED)  # ignored objects are not forced
    images = torch.arange(batch, device=anchors.device)
    flat = iou.reshape(batch, num_anchors * max_boxes)  # (B, A * M), contiguous
    grid = flat.view(batch, num_anchors, max_boxes)  # (B, A, M), shares memory with flat
    for _ in range(max_boxes):
        best_pair = flat.argmax(dim=1)  # (B,), first maximum in (anchor, box) order
        pair_iou = flat.gather(1, best_pair[:, None])[:, 0]  # (B,)
        anchor_index = best_pair // max_boxes  # (B,)
        box_index = best_pair % max_boxes  # (B,)
        current = matched[images, anchor_index]  # (B,)
        matched[images, anchor_index] = torch.where(pair_iou > 0, box_index, current)
        # Removing the row and column is harmless where nothing was forced (all IoU <= 0 there).
        grid[images, anchor_index, :] = _REMOVED
        grid[images, :, box_index] = _REMOVED
    return matched


@dataclass(frozen=True)
class MaxIoUAssigner:
    """The seed's rule (see the module docstring): `iou_threshold` for step 1, `force_best`
    False skips step 2 (threshold only)."""

    uses_predictions: ClassVar[bool] = False  # whether it reads pred_scores, pred_boxes
    iou_threshold: float = 0.4
    force_best: bool = True

    def __call__(
        self,
        priors: Priors,
        gt_boxes: Tensor,
        gt_class_ids: Tensor,
        num_classes: int,
        pred_scores: Tensor | None = None,
        pred_boxes: Tensor | None = None,
    ) -> PriorTargets:
        """Match priors (anchors) to boxes; target scores are 1.

        gt_boxes: (B, M, 4) normalised xyxy; gt_class_ids: (B, M) int64, -1 padding, -2 ignored.
        pred_scores and pred_boxes are not read: they are accepted so that every assigner has
        the same call. Background priors get class num_classes (the seed's 15 for 15 classes).
        Box targets are in the priors' dtype.
        """
        valid, ignored = gt_slots(gt_class_ids)  # (B, M) each
        matched = match_anchors(
            priors.boxes, gt_boxes, valid, self.iou_threshold, self.force_best, ignored
        )  # (B, A)
        gt_boxes, gt_class_ids = with_a_slot(gt_boxes.to(priors.boxes.dtype), gt_class_ids)
        dtype = torch.promote_types(priors.boxes.dtype, torch.float32)
        scores = torch.ones_like(matched, dtype=dtype)  # (B, A)
        return targets_from_matches(matched, gt_boxes, gt_class_ids, num_classes, scores)
