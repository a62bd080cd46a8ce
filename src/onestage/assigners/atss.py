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

Worked example (tests/test_assigners.py), full-height strips so that IoU is the IoU of the x
intervals: one level of 8 priors (topk 9 -> all 8 are candidates) and g = [0, 10]:

    prior      [2, 8]   [2, 20]   six priors far away
    IoU        0.6      0.4       0 each          mean = 1 / 8 = 0.125
    centre     5 in     11 out                    std = sqrt((0.52 - 8 * 0.125**2) / 7) = 0.2376
                                                  t_g = 0.3626
    -> [2, 8] is positive; [2, 20] passes the threshold but its centre is outside g.

Ignored objects (class id IGNORED_CLASS_ID) take part in every step like real ones; a prior that
ends up with one is `ignored` (neither positive nor negative), as in `onestage.assign`.
Padding slots (PAD_CLASS_ID) take no prior.

The contract shared with `tal.py`: inputs are a `Priors` and ground truth in the batch layout of
`onestage.assign`, gt_boxes (B, M, 4) normalised xyxy and gt_class_ids (B, M) int64 with -1 for
padding and -2 for ignored objects; the output is a `PriorTargets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from onestage.assign import BACKGROUND, IGNORED_CLASS_ID, PAD_CLASS_ID
from onestage.boxes import batched_box_iou, xyxy_to_cxcywh
from onestage.errors import OnestageError

# IoU given to the (prior, box) pairs that are not positive before taking the highest IoU per
# prior: below every real IoU (>= 0), so such a pair never wins.
_NOT_POSITIVE = -1.0


@dataclass(frozen=True)
class Priors:
    """The priors (anchors, or cells for anchor-free heads) of a head, in its output order.

    boxes: (A, 4) normalised xyxy; an anchor-free head passes each cell's box (centre +- half
    its stride). level_sizes: the number of priors of each pyramid level, in prior order
    (largest map first); they sum to A. Only ATSS reads the levels.
    """

    boxes: Tensor
    level_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if (
            not self.level_sizes
            or min(self.level_sizes) < 1
            or sum(self.level_sizes) != self.boxes.shape[0]
        ):
            raise ValueError(
                f"level sizes {self.level_sizes} must be positive and sum to the "
                f"{self.boxes.shape[0]} priors"
            )


@dataclass(frozen=True)
class PriorTargets:
    """Training targets of a batch, one row per prior.

    The fields of `assign.AssignedTargets` plus target_scores; box_targets are boxes, not offsets.

    class_targets: (B, A) int64, the matched box's class, or num_classes for background and for
    ignored priors (which no loss term reads).
    box_targets: (B, A, 4) the matched box, normalised xyxy, on positive priors; 0 elsewhere.
    Not encoded: the head or loss encodes them (offsets, distances to the sides, ...).
    target_scores: (B, A, C) float, C = num_classes, soft one-hot: a positive prior's score at
    its class (ATSS: 1; TAL: the normalised alignment metric), 0 everywhere else.
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


@dataclass(frozen=True)
class ATSSAssigner:
    """ATSS (see the module docstring): `topk` candidates per level and box (9 in the paper)."""

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
