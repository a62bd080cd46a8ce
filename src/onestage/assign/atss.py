"""ATSS, adaptive training sample selection, and the contract that every assigner here shares.

ATSS (Zhang et al., CVPR 2020, "Bridging the Gap Between Anchor-based and Anchor-free
Detection") picks positives from geometry alone, per image and ground-truth box g:

1. Candidates: on each pyramid level, the `topk` priors whose centres are nearest (L2) to g's
   centre; all of the level's priors if it has fewer. Ties in distance go to the lowest prior
   index (a stable sort): they are common, as an anchor-based head has several priors per cell
   around one centre.
2. Threshold: t_g = mean + std of the candidates' IoUs with g, std being the sample standard
   deviation (divisor n - 1, as `torch.std` in the authors' code and in mmdetection; 0 when
   there is a single candidate).
3. Positive for g: a candidate with IoU >= t_g whose centre lies strictly inside g (a centre
   on g's edge is outside; the authors' code asks for 0.01 pixel, below float32 resolution here).
4. A prior positive for several boxes takes the one with the highest IoU (ties: lowest box
   index, the first maximum).

Worked example (tests/assign/test_assigners.py), full-height strips so that IoU is the IoU of the x
intervals: one level of 8 priors (topk 9 -> all 8 are candidates) and g = [0, 10]:

    prior      [2, 8]   [2, 20]   six priors far away
    IoU        0.6      0.4       0 each          mean = 1 / 8 = 0.125
    centre     5 in     11 out                    std = sqrt((0.52 - 8 * 0.125**2) / 7) = 0.2376
                                                  t_g = 0.3626
    -> [2, 8] is positive; [2, 20] passes the threshold but its centre is outside g.

Ignored objects (class id IGNORED_CLASS_ID) take part in every step like real ones; a prior that
ends up with one is `ignored` (neither positive nor negative), as in `onestage.assign.maxiou`.
Padding slots (PAD_CLASS_ID) take no prior.
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
from onestage.boxes import batched_box_iou, xyxy_to_cxcywh
from onestage.errors import OnestageError
from onestage.priors import Priors


@dataclass(frozen=True)
class ATSSAssigner:
    """ATSS (see the module docstring): `topk` candidates per level and box (9 in the paper)."""

    uses_predictions: ClassVar[bool] = False  # whether it reads pred_scores, pred_boxes
    topk: int = 9

    def __post_init__(self) -> None:
        if self.topk < 1:
            raise OnestageError(f"ATSS topk must be at least 1, got {self.topk}")

    def __call__(
        self,
        priors: Priors,
        gt_boxes: Tensor,
        gt_class_ids: Tensor,
        num_classes: int,
        pred_scores: Tensor | None = None,
        pred_boxes: Tensor | None = None,
    ) -> PriorTargets:
        """Assign boxes to priors from geometry alone; target scores are 1.

        gt_boxes: (B, M, 4) normalised xyxy; gt_class_ids: (B, M) int64, -1 padding, -2 ignored.
        pred_scores and pred_boxes are not read: they are accepted so that every assigner has
        the same call. IoUs and distances are computed in at least float32.
        """
        gt_boxes, gt_class_ids = with_a_slot(gt_boxes, gt_class_ids)
        batch = gt_class_ids.shape[0]
        dtype = torch.promote_types(priors.boxes.dtype, torch.float32)
        prior_boxes = priors.boxes.to(dtype)  # (A, 4)
        boxes = gt_boxes.to(dtype)  # (B, M, 4)
        num_priors = prior_boxes.shape[0]
        iou = batched_box_iou(prior_boxes.expand(batch, num_priors, 4), boxes)  # (B, A, M)

        candidates = self._candidates(prior_boxes, boxes, priors.level_sizes)  # (B, K, M)
        candidate_iou = iou.gather(1, candidates)  # (B, K, M)
        count = candidates.shape[1]
        # std_mean (Welford) is exact when all candidates share one IoU: std 0, mean = that IoU,
        # so they all pass. A sum-based mean can round above it and let none pass.
        std, mean = torch.std_mean(
            candidate_iou, dim=1, correction=1 if count > 1 else 0, keepdim=True
        )  # (B, 1, M) each
        passed = candidate_iou >= mean + std  # (B, K, M)
        # Within a column the K candidate indices are distinct (levels do not overlap).
        positive = torch.zeros_like(iou, dtype=torch.bool).scatter(1, candidates, passed)
        valid, _ = gt_slots(gt_class_ids)
        positive &= centres_inside(prior_boxes, boxes) & valid[:, None, :]  # (B, A, M)

        matched = take_highest_iou(positive, iou)  # (B, A)
        scores = torch.ones_like(matched, dtype=dtype)  # (B, A)
        return targets_from_matches(matched, gt_boxes, gt_class_ids, num_classes, scores)

    def _candidates(
        self, prior_boxes: Tensor, gt_boxes: Tensor, level_sizes: tuple[int, ...]
    ) -> Tensor:
        """Per box, the topk nearest priors of every level: (A, 4), (B, M, 4) normalised xyxy
        -> (B, K, M) int64 prior indices, K = sum over levels of min(topk, level size).

        A loop over the pyramid levels (a handful): each level has its own size.
        """
        prior_centres = xyxy_to_cxcywh(prior_boxes)[None, :, None, :2]  # (1, A, 1, 2)
        offsets = prior_centres - xyxy_to_cxcywh(gt_boxes)[:, None, :, :2]  # (B, A, M, 2)
        squared_distance = offsets.square().sum(dim=-1)  # (B, A, M), ordered like L2
        picks = []
        start = 0
        for level_distance in squared_distance.split(level_sizes, dim=1):  # (B, A_level, M)
            nearest = level_distance.sort(dim=1, stable=True).indices  # ties: lowest index
            picks.append(nearest[:, : self.topk] + start)  # (B, min(topk, A_level), M)
            start += level_distance.shape[1]
        return torch.cat(picks, dim=1)  # (B, K, M)
