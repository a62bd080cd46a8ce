"""Anchor matching and training targets: the seed's rule, vectorised over the batch.

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
that step 2 does not force onto a real one, is neither positive nor negative: `build_targets`
marks it `ignored`, and the losses leave it out of every term, hard-negative mining included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from onestage.boxes import batched_box_iou
from onestage.data.records import IGNORED_CLASS_ID
from onestage.priors.offsets import DEFAULT_VARIANCES, encode_offsets

# matched_gt value of an anchor that takes no ground-truth box (background).
BACKGROUND = -1

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
class AssignedTargets:
    """Training targets of a batch, one row per anchor.

    class_targets: (B, A) int64, the matched box's class, or num_classes for background (and
    for ignored anchors, which no loss term reads).
    box_targets: (B, A, 4) encode_offsets of the matched box against the anchor, 0 elsewhere.
    positive: (B, A) bool, anchors that took a real box.
    ignored: (B, A) bool, anchors that took an ignored box: neither positive nor negative.
    matched_gt: (B, A) int64, the index of the matched box, or -1 (see match_anchors).
    """

    class_targets: Tensor
    box_targets: Tensor
    positive: Tensor
    ignored: Tensor
    matched_gt: Tensor


def build_targets(
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_class_ids: Tensor,
    num_classes: int,
    iou_threshold: float = 0.4,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
    force_best: bool = True,
) -> AssignedTargets:
    """Match anchors to boxes and build class and offset targets.

    anchors: (A, 4) and gt_boxes: (B, M, 4) normalised xyxy; gt_class_ids: (B, M) int64 in
    [0, num_classes), PAD_CLASS_ID (-1) for padding slots, IGNORED_CLASS_ID (-2) for objects to
    ignore. Background anchors get class num_classes (the seed's 15 for 15 classes). Box
    targets are in the anchors' dtype.
    """
    batch, max_boxes = gt_class_ids.shape
    num_anchors = anchors.shape[0]
    gt_ignored = gt_class_ids == IGNORED_CLASS_ID  # (B, M)
    gt_valid = (gt_class_ids >= 0) | gt_ignored  # (B, M)
    matched = match_anchors(
        anchors, gt_boxes, gt_valid, iou_threshold, force_best, gt_ignored
    )  # (B, A)
    if max_boxes == 0:  # no slot: every anchor is background
        return AssignedTargets(
            class_targets=torch.full_like(matched, num_classes),
            box_targets=anchors.new_zeros(batch, num_anchors, 4),
            positive=torch.zeros_like(matched, dtype=torch.bool),
            ignored=torch.zeros_like(matched, dtype=torch.bool),
            matched_gt=matched,
        )

    index = matched.clamp(min=0)  # (B, A)
    matched_boxes = gt_boxes.to(anchors.dtype).gather(
        1, index[:, :, None].expand(batch, num_anchors, 4)
    )  # (B, A, 4)
    matched_classes = gt_class_ids.gather(1, index)  # (B, A)
    positive = (matched >= 0) & (matched_classes >= 0)  # (B, A)
    ignored = (matched >= 0) & (matched_classes == IGNORED_CLASS_ID)  # (B, A)
    offsets = encode_offsets(matched_boxes, anchors, variances)  # (B, A, 4)
    return AssignedTargets(
        class_targets=torch.where(positive, matched_classes, num_classes),
        box_targets=torch.where(positive[:, :, None], offsets, 0.0),
        positive=positive,
        ignored=ignored,
        matched_gt=matched,
    )
