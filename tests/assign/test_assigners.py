"""ATSS and TAL assigners: hand-worked answers on strips, and batches against per-image loops;
the contract and registry of every assigner (the max-IoU rule's own tests: test_assign.py)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import fields

import numpy as np
import pytest
import torch

from helpers import strips
from onestage.assign import (
    ASSIGNERS,
    ATSSAssigner,
    MaxIoUAssigner,
    PriorTargets,
    TaskAlignedAssigner,
    assigner_names,
    build_assigner,
)
from onestage.assign.common import with_a_slot
from onestage.boxes import box_iou
from onestage.errors import OnestageError
from onestage.priors import Priors
from onestage.priors.anchors import AnchorLevel, cell_anchors


def one_level(*intervals: tuple[float, float]) -> Priors:
    """Strip priors, all on one pyramid level."""
    boxes = strips(*intervals)
    return Priors(boxes, (boxes.shape[0],))


def atss_one(
    priors: Priors, boxes: torch.Tensor, class_ids: list[int], topk: int = 9
) -> PriorTargets:
    """ATSS for a single image, 3 classes."""
    return ATSSAssigner(topk)(priors, boxes[None], torch.tensor([class_ids]), 3)


FAR = ((30, 31), (32, 33), (34, 35), (36, 37), (38, 39), (40, 41))  # IoU 0 with every box below


# ---------------------------------------------------------------------------------------- ATSS


def test_atss_threshold_is_mean_plus_sample_std() -> None:
    # box [0, 10]; one level of 5 priors, topk 9 -> all 5 are candidates, IoUs 1, 0.9, 0.3, 0, 0:
    # mean = 2.2 / 5 = 0.44, sum of squared deviations = 1.9 - 5 * 0.44**2 = 0.932,
    # sample std = sqrt(0.932 / 4) = 0.4827 -> threshold 0.9227: only the IoU-1 prior passes.
    # (The population std sqrt(0.932 / 5) = 0.4317 would also let the IoU-0.9 prior in.)
    priors = one_level((0, 10), (1, 10), (0, 3), *FAR[:2])
    targets = atss_one(priors, strips((0, 10)), [2])
    assert targets.matched_gt.tolist() == [[0, -1, -1, -1, -1]]
    assert targets.class_targets.tolist() == [[2, 3, 3, 3, 3]]
    assert targets.target_scores[0, 0].tolist() == [0.0, 0.0, 1.0]
    assert targets.box_targets[0, 0].tolist() == [0.0, 0.0, 10.0, 1.0]
    assert not targets.box_targets[0, 1:].any() and not targets.target_scores[0, 1:].any()


def test_atss_threshold_is_inclusive() -> None:
    # candidate IoUs 1, 0.5, 0: mean 0.5, sample std sqrt(0.5 / 2) = 0.5, threshold exactly 1.0
    priors = one_level((0, 10), (0, 5), FAR[0])
    assert atss_one(priors, strips((0, 10)), [0]).matched_gt.tolist() == [[0, -1, -1]]
    # all candidates at one IoU (0.2 each): std 0, threshold 0.2, every candidate passes
    priors = one_level((0, 2), (2, 4), (4, 6), (6, 8), (8, 10))
    assert atss_one(priors, strips((0, 10)), [0]).matched_gt.tolist() == [[0, 0, 0, 0, 0]]


def test_atss_centre_must_lie_inside_the_box() -> None:
    # The worked example of the atss module: IoUs 0.6 ([2, 8]), 0.4 ([2, 20]) and six 0s;
    # mean 1 / 8, sample std sqrt((0.52 - 8 / 64) / 7) = 0.2376, threshold 0.3626. [2, 20]
    # passes the threshold, but its centre 11 lies outside [0, 10].
    priors = one_level((2, 8), (2, 20), *FAR)
    assert atss_one(priors, strips((0, 10)), [0]).matched_gt.tolist() == [[0] + [-1] * 7]
    # a centre on the box's edge is outside: [0, 20] (IoU 0.5, centre 10), and [-10, 10] (IoU
    # 0.5, centre 0) on its left edge
    priors = one_level((2, 8), (0, 20), *FAR)
    assert atss_one(priors, strips((0, 10)), [0]).matched_gt.tolist() == [[0] + [-1] * 7]
    priors = one_level((2, 8), (-10, 10), *FAR)
    assert atss_one(priors, strips((0, 10)), [0]).matched_gt.tolist() == [[0] + [-1] * 7]
    # moved inside, [0, 19.8] (IoU 0.505, centre 9.9) is positive
    priors = one_level((2, 8), (0, 19.8), *FAR)
    assert atss_one(priors, strips((0, 10)), [0]).matched_gt.tolist() == [[0, 0] + [-1] * 6]


def test_atss_candidates_are_picked_level_by_level() -> None:
    # box [0, 10], centre 5, topk 2. Level 0: [4, 6], [6, 8], [8, 10] (IoU 0.2 each, centre
    # distances 0, 2, 4); level 1: [0, 16] (IoU 0.625, distance 3) and [-20, -10] (IoU 0).
    # Per level the candidates are [4, 6], [6, 8], [0, 16], [-20, -10]: IoUs 0.2, 0.2, 0.625, 0,
    # mean 0.25625, sample std sqrt((0.470625 - 4 * 0.25625**2) / 3) = 0.2633, threshold 0.5195:
    # only [0, 16] is positive. (A top 2 over all priors would pick [4, 6] and [6, 8]: threshold
    # 0.2, both positive, [0, 16] not a candidate.)
    priors = Priors(strips((4, 6), (6, 8), (8, 10), (0, 16), (-20, -10)), (3, 2))
    assert atss_one(priors, strips((0, 10)), [0], topk=2).matched_gt.tolist() == [
        [-1, -1, -1, 0, -1]
    ]


@pytest.mark.parametrize(
    ("boxes", "expected"),
    [
        # [4, 10] has IoU 0.6 with both [0, 10] and [4, 14]: the tie goes to the lower index
        (((0, 10), (4, 14)), 0),
        (((4, 14), (0, 10)), 0),
        # IoU 0.6 with [0, 10], 0.75 with [4, 12]: the higher IoU wins
        (((0, 10), (4, 12)), 1),
    ],
)
def test_atss_prior_claimed_by_two_boxes_takes_the_higher_iou(
    boxes: tuple[tuple[int, int], ...], expected: int
) -> None:
    # One level: [4, 10] and six far priors (topk 9: all 7 are candidates of both boxes).
    # Box with IoU 0.6: mean 0.6 / 7, sample std sqrt((0.36 - 0.36 / 7) / 6) = 0.2268, threshold
    # 0.3125; box with IoU 0.75: threshold 0.1071 + 0.2835 = 0.3906. [4, 10] passes both and its
    # centre 7 lies inside both.
    priors = one_level((4, 10), *FAR)
    targets = atss_one(priors, strips(*boxes), [0, 1])
    assert targets.matched_gt.tolist() == [[expected] + [-1] * 6]
    assert targets.class_targets[0, 0] == expected
    assert targets.box_targets[0, 0].tolist() == strips(boxes[expected])[0].tolist()


def test_atss_padding_takes_nothing_and_ignored_objects_make_ignored_priors() -> None:
    # slot 0: padding with the same box as slot 1 (the tie rule would give it [2, 8] were it a
    # box); slot 1: a real box of class 1; slot 2: an ignored object. Candidate IoUs of slots 1
    # and 2: 0.6 and four 0s, threshold 0.12 + sqrt(0.288 / 4) = 0.3883.
    priors = one_level((2, 8), (22, 28), *FAR[:3])
    boxes = strips((0, 10), (0, 10), (20, 30))
    targets = atss_one(priors, boxes, [-1, 1, -2])
    assert targets.matched_gt.tolist() == [[1, 2, -1, -1, -1]]
    assert targets.positive.tolist() == [[True, False, False, False, False]]
    assert targets.ignored.tolist() == [[False, True, False, False, False]]
    assert targets.class_targets.tolist() == [[1, 3, 3, 3, 3]]
    assert not targets.box_targets[0, 1].any() and not targets.target_scores[0, 1].any()


def test_atss_one_candidate_passes_and_two_at_different_ious_do_not() -> None:
    # topk 1, one level: one candidate, [0, 10] (IoU 1): std 0 (not the n - 1 divisor's 0 / 0),
    # threshold 1, positive
    one = atss_one(one_level((0, 10), (20, 30)), strips((0, 10)), [0], topk=1)
    assert one.matched_gt.tolist() == [[0, -1]]
    # two candidates, IoUs 1 and 0.5: mean 0.75, sample std sqrt(2 * 0.25**2 / 1) = 0.3536,
    # threshold 1.1036: none passes (the population std 0.25 would let the IoU-1 prior in)
    two = atss_one(one_level((0, 10), (0, 5)), strips((0, 10)), [0])
    assert two.matched_gt.tolist() == [[-1, -1]]


def test_atss_candidate_indices_count_every_level_before() -> None:
    # three levels of 1, 1 and 2 priors, topk 1: the candidates are priors 0, 1 and, on the third
    # level, [0, 10] (centre 5, distance 0): prior 2. IoUs 0, 0, 1: mean 1/3, sample std
    # sqrt((2/9 + 4/9) / 2) = 0.5774, threshold 0.9107: prior 2 is positive.
    priors = Priors(strips((20, 30), (40, 50), (0, 10), (60, 70)), (1, 1, 2))
    assert atss_one(priors, strips((0, 10)), [0], topk=1).matched_gt.tolist() == [[-1, -1, 0, -1]]


def test_atss_ties_in_distance_go_to_the_lowest_index_among_many() -> None:
    # 20 priors at one spot (torch's unstable CPU sort reorders 17 or more ties), topk 3: priors
    # 0, 1, 2 are the candidates, all at IoU 1 (std 0, threshold 1): all three positive
    priors = one_level(*[(0, 10)] * 20)
    targets = atss_one(priors, strips((0, 10)), [0], topk=3)
    assert targets.matched_gt.tolist() == [[0, 0, 0] + [-1] * 17]


def test_atss_an_ignored_object_in_the_first_slot() -> None:
    # IoUs 1, 0, 0: mean 1/3, sample std 0.5774, threshold 0.9107: prior 0 takes the ignored
    # object of slot 0; it is ignored, not positive
    targets = atss_one(one_level((0, 10), *FAR[:2]), strips((0, 10)), [-2])
    assert targets.matched_gt.tolist() == [[0, -1, -1]]
    assert targets.ignored.tolist() == [[True, False, False]]
    assert not targets.positive.any() and targets.class_targets.tolist() == [[3, 3, 3]]


# bfloat16 keeps 8 significant bits, so 0.5 + 0.50390625 (= 1 + 2**-8, 9 bits) rounds to 1 (ties
# to even): a centre computed in bfloat16 from these x intervals would lie at 0.5. In float32,
# EDGE_PRIORS have centres 0.5 (on the box's left edge) and 0.501953125 (inside it).
EDGE_BOX = (0.5, 0.50390625)
EDGE_PRIORS = one_level((0.49609375, 0.50390625), EDGE_BOX)


def test_atss_reads_bfloat16_boxes_in_float32() -> None:
    # box [0.5, 0.50390625] (centre 0.501953125), topk 1: the candidate is prior 1 (distance 0),
    # IoU 1, centre inside: positive. Prior 0 (centre 0.5, on the edge) would be the candidate if
    # either centre were computed in bfloat16, and would not be positive.
    for dtype in (torch.float32, torch.bfloat16):
        priors = Priors(EDGE_PRIORS.boxes.to(dtype), EDGE_PRIORS.level_sizes)
        targets = atss_one(priors, strips(EDGE_BOX).to(dtype), [0], topk=1)
        assert targets.matched_gt.tolist() == [[-1, 0]], dtype


# ----------------------------------------------------------------------------------------- TAL


def tal_one(
    priors: Priors,
    boxes: torch.Tensor,
    class_ids: list[int],
    scores: list[list[float]],
    pred_boxes: torch.Tensor,
    topk: int,
    alpha: float = 1.0,
    beta: float = 6.0,
) -> PriorTargets:
    """TAL (alpha 1 and beta 6 unless given) for a single image, 2 classes."""
    return TaskAlignedAssigner(topk=topk, alpha=alpha, beta=beta)(
        priors, boxes[None], torch.tensor([class_ids]), 2, torch.tensor([scores]), pred_boxes[None]
    )


# The worked example of the tal module: box [0, 8] of class 1, topk 2; the predicted boxes have
# u = 0.5, 1, 0.5, 0.5, 1 with it. Class 0 scores are high everywhere: they must not be read
# for a class-1 box.
WORKED_PRIORS = one_level((0, 2), (2, 4), (4, 6), (6, 8), (8, 10))
WORKED_PREDICTED = strips((0, 4), (0, 8), (4, 8), (2, 6), (0, 8))
WORKED_SCORES = [[0.99, 0.8], [0.99, 0.01], [0.99, 0.4], [0.99, 0.2], [0.99, 0.9]]


def test_tal_top_k_by_alignment_and_normalised_scores() -> None:
    # t = s * u**6: 0.8 / 64 = 0.0125, 0.01 * 1 = 0.01, 0.4 / 64, 0.2 / 64; [8, 10] is not a
    # candidate (centre 9), whatever its t (0.9). Top 2: priors 0 and 1; max t 0.0125, max u 1:
    # target scores 0.0125 / 0.0125 * 1 = 1 and 0.01 / 0.0125 * 1 = 0.8.
    priors, scores = WORKED_PRIORS, WORKED_SCORES
    pred_boxes = WORKED_PREDICTED.clone().requires_grad_()
    targets = tal_one(priors, strips((0, 8)), [1], scores, pred_boxes, topk=2)
    assert targets.matched_gt.tolist() == [[0, 0, -1, -1, -1]]
    assert targets.class_targets.tolist() == [[1, 1, 2, 2, 2]]
    assert not targets.target_scores.requires_grad
    torch.testing.assert_close(
        targets.target_scores[0], torch.tensor([[0, 1.0], [0, 0.8], [0, 0], [0, 0], [0, 0]])
    )
    assert targets.box_targets[0, :2].tolist() == [[0.0, 0.0, 8.0, 1.0]] * 2
    # beta 1 ranks by s * u instead: 0.4, 0.01, 0.2, 0.1 -> priors 0 and 2
    beta_1 = TaskAlignedAssigner(topk=2, beta=1.0)(
        priors,
        strips((0, 8))[None],
        torch.tensor([[1]]),
        2,
        torch.tensor([scores]),
        pred_boxes[None],
    )
    assert beta_1.matched_gt.tolist() == [[0, -1, 0, -1, -1]]


def test_tal_alpha_is_the_power_of_the_score() -> None:
    # The worked example at alpha 0.5: t = sqrt(s) * u**6: sqrt(0.8) / 64 = 0.8944 / 64 =
    # 0.013975, sqrt(0.01) * 1 = 0.1, sqrt(0.4) / 64 = 0.00988, sqrt(0.2) / 64 = 0.00699. Top 2:
    # priors 1 and 0 (the same two as at alpha 1); max t 0.1, max u 1: target scores
    # 0.013975 / 0.1 = sqrt(0.8) / 6.4 = 0.1398 and 1 (alpha 1 gives 1 and 0.8).
    targets = tal_one(
        WORKED_PRIORS, strips((0, 8)), [1], WORKED_SCORES, WORKED_PREDICTED, topk=2, alpha=0.5
    )
    assert targets.matched_gt.tolist() == [[0, 0, -1, -1, -1]]
    torch.testing.assert_close(
        targets.target_scores[0, :, 1],
        torch.tensor([math.sqrt(0.8) / 6.4, 1.0, 0, 0, 0]),  # 0.1398, 1
    )
    assert not targets.target_scores[0, :, 0].any()


# Two boxes for TAL's conflict rule, full-height strips: box 0 [0, 8] of class 0, box 1 [4, 12]
# of class 1. Priors (centres 3, 5, 7, 9): 0 is a candidate of box 0 only, 1 and 2 of both, 3 of
# box 1 only. Predicted boxes of priors 0, 1, 3: [0, 4] (u = 0.5, 0), [0, 8] (1, 1/3),
# [4, 12] (1/3, 1). Scores (class 0, class 1): (0.1, 0.1), (0.5, 0.9), (0.5, 0.9), (0.1, 0.5).
CONFLICT_PRIORS = one_level((2, 4), (4, 6), (6, 8), (8, 10))
CONFLICT_SCORES = [[0.1, 0.1], [0.5, 0.9], [0.5, 0.9], [0.1, 0.5]]


@pytest.mark.parametrize(
    ("prior_2_box", "matched", "scores"),
    [
        # [4, 8]: u = 0.5 with both boxes. t for box 0: 0.1 / 64, 0.5, 0.5 / 64 -> top 2: priors
        # 1, 2; for box 1: 0.9 / 729, 0.9 / 64, 0.5 -> top 2: priors 3, 2. Prior 2: IoU tie, box 0
        # (the lower index) although its t is lower there. Box 0: max t 0.5, max u 1 -> 1 and
        # (0.5 / 64) / 0.5 = 1 / 64; box 1 keeps prior 3 only -> 0.5 / 0.5 * 1 = 1.
        ((4, 8), [-1, 0, 0, 1], [[0, 0], [1, 0], [1 / 64, 0], [0, 1]]),
        # [4, 10]: u = 0.4 with box 0, 0.75 with box 1. t for box 0: 0.5 * 0.4**6 = 0.002048 >
        # 0.1 / 64 -> top 2: priors 1, 2; for box 1: 0.9 * 0.75**6 = 0.160 -> top 2: 3, 2. Prior 2
        # goes to box 1 (0.75 > 0.4): box 1 scores 1 and 0.9 * 0.75**6 / 0.5 * 1.
        ((4, 10), [-1, 0, 1, 1], [[0, 0], [1, 0], [0, 1.8 * 0.75**6], [0, 1]]),
    ],
)
def test_tal_prior_claimed_by_two_boxes_takes_the_higher_iou(
    prior_2_box: tuple[int, int], matched: list[int], scores: list[list[float]]
) -> None:
    pred_boxes = strips((0, 4), (0, 8), prior_2_box, (4, 12))
    targets = tal_one(
        CONFLICT_PRIORS, strips((0, 8), (4, 12)), [0, 1], CONFLICT_SCORES, pred_boxes, topk=2
    )
    assert targets.matched_gt.tolist() == [matched]
    assert targets.class_targets.tolist() == [[2, 0, matched[2], 1]]
    torch.testing.assert_close(targets.target_scores[0], torch.tensor(scores))


def test_tal_normalises_over_the_positives_left_after_the_conflict() -> None:
    # box 0 [0, 8] (class 0), box 1 [4, 12] (class 1); priors [2, 4], [6, 8], [8, 10] (centres 3,
    # 7, 9), topk 2. Prior 1 predicts [0, 8]: u = 1 with box 0, 1/3 with box 1; prior 2 predicts
    # [10, 12]: u = 1/4 with box 1. Box 1's candidates are priors 1 (t = 0.1 / 729) and 2
    # (t = 0.8 / 4096, its largest): both in its top 2, but prior 1 goes to box 0 (1 > 1/3). Box
    # 1's max u over what it keeps is then 1/4 (not 1/3): prior 2 scores 1 * 1/4.
    # Box 0: prior 0 predicts [0, 4] (u = 0.5, t = 0.8 / 64), prior 1 t = 0.5: max t 0.5, max u 1
    # -> prior 1 scores 1, prior 0 (0.8 / 64) / 0.5 = 0.025.
    priors = one_level((2, 4), (6, 8), (8, 10))
    pred_boxes = strips((0, 4), (0, 8), (10, 12))
    scores = [[0.8, 0.0], [0.5, 0.1], [0.0, 0.8]]
    targets = tal_one(priors, strips((0, 8), (4, 12)), [0, 1], scores, pred_boxes, topk=2)
    assert targets.matched_gt.tolist() == [[0, 0, 1]]
    torch.testing.assert_close(
        targets.target_scores[0], torch.tensor([[0.025, 0], [1.0, 0], [0, 0.25]])
    )


def test_tal_padding_takes_nothing_and_ignored_objects_use_the_best_class() -> None:
    # slot 0: padding with the box of slot 2 (it would win the IoU tie for prior 2 were it a box);
    # slot 1: ignored object [0, 4] (candidates: priors 0 and 1); slot 2: real box [4, 8] of
    # class 0 (candidates: priors 2 and 3). Every prediction is its prior's box: u = 0.5 with
    # its box. topk 1.
    # Ignored object: s = best class score: 0.3 (prior 0) > 0.2 (prior 1) -> prior 0 (reading
    # class 0 would pick prior 1). Real box: s = 0.7 > 0.4 -> prior 2, score 1 * max u = 0.5.
    priors = one_level((0, 2), (2, 4), (4, 6), (6, 8))
    scores = [[0.1, 0.3], [0.2, 0.1], [0.7, 0.9], [0.4, 0.0]]
    boxes = strips((4, 8), (0, 4), (4, 8))
    targets = tal_one(priors, boxes, [-1, -2, 0], scores, priors.boxes, topk=1)
    assert targets.matched_gt.tolist() == [[1, -1, 2, -1]]
    assert targets.positive.tolist() == [[False, False, True, False]]
    assert targets.ignored.tolist() == [[True, False, False, False]]
    assert targets.class_targets.tolist() == [[2, 2, 0, 2]]
    torch.testing.assert_close(
        targets.target_scores[0], torch.tensor([[0, 0], [0, 0], [0.5, 0], [0, 0]])
    )
    assert targets.box_targets[0].tolist() == [
        [0.0] * 4,
        [0.0] * 4,
        [4.0, 0.0, 8.0, 1.0],
        [0.0] * 4,
    ]


def test_tal_alpha_0_ranks_by_iou_and_beta_0_by_score() -> None:
    # The worked example. Alpha 0: t = u**6 = 1/64, 1, 1/64, 1/64: prior 1, then prior 0 (the
    # lowest index of the three ties); max t 1, max u 1: target scores 1 and 1/64.
    targets = tal_one(
        WORKED_PRIORS, strips((0, 8)), [1], WORKED_SCORES, WORKED_PREDICTED, topk=2, alpha=0.0
    )
    assert targets.matched_gt.tolist() == [[0, 0, -1, -1, -1]]
    torch.testing.assert_close(targets.target_scores[0, :, 1], torch.tensor([1 / 64, 1, 0, 0, 0]))
    # Beta 0: t = s = 0.8, 0.01, 0.4, 0.2: priors 0 and 2; max t 0.8, max u 0.5: target scores
    # 0.8 / 0.8 * 0.5 = 0.5 and 0.4 / 0.8 * 0.5 = 0.25.
    targets = tal_one(
        WORKED_PRIORS, strips((0, 8)), [1], WORKED_SCORES, WORKED_PREDICTED, topk=2, beta=0.0
    )
    assert targets.matched_gt.tolist() == [[0, -1, 0, -1, -1]]
    torch.testing.assert_close(targets.target_scores[0, :, 1], torch.tensor([0.5, 0, 0.25, 0, 0]))


def test_tal_an_ignored_object_reads_each_priors_own_best_score() -> None:
    # Ignored object [0, 4], candidates [0, 2] and [2, 4], topk 1. Prior 0 predicts [0, 2]
    # (u = 0.5) with best score 0.9: t = 0.9 / 64 = 0.0141; prior 1 predicts [0, 4] (u = 1)
    # with best score 0.01: t = 0.01. Prior 0 takes it. (Reading the highest score of the
    # image, 0.9, for both would rank by u alone: prior 1.)
    priors = one_level((0, 2), (2, 4))
    scores = [[0.9, 0.1], [0.01, 0.005]]
    targets = tal_one(priors, strips((0, 4)), [-2], scores, strips((0, 2), (0, 4)), topk=1)
    assert targets.matched_gt.tolist() == [[0, -1]]
    assert targets.ignored.tolist() == [[True, False]]


def test_tal_ties_in_alignment_go_to_the_lowest_index_among_many() -> None:
    # 20 priors at one spot with one prediction and one score: equal t (torch's unstable CPU sort
    # reorders 17 or more ties), topk 3: priors 0, 1, 2
    priors = one_level(*[(0, 10)] * 20)
    targets = tal_one(priors, strips((0, 10)), [0], [[0.5, 0.5]] * 20, priors.boxes, topk=3)
    assert targets.matched_gt.tolist() == [[0, 0, 0] + [-1] * 17]


# 1 - 2**-8: exact in bfloat16, its square 0.99220276 (16 significant bits) is not.
A = 1 - 2**-8


def test_tal_reads_bfloat16_inputs_in_float32() -> None:
    # Candidates: prior 1 of EDGE_PRIORS only (prior 0's centre lies on the box's left edge);
    # computed in bfloat16, prior 1's centre would lie there too and nothing would be assigned.
    for dtype in (torch.float32, torch.bfloat16):
        priors = Priors(EDGE_PRIORS.boxes.to(dtype), EDGE_PRIORS.level_sizes)
        box = strips((0.5, 1.0)).to(dtype)
        targets = TaskAlignedAssigner(topk=1)(
            priors,
            box[None],
            torch.tensor([[0]]),
            2,
            torch.full((1, 2, 2), 0.5, dtype=dtype),
            box.expand(1, 2, 4),
        )
        assert targets.matched_gt.tolist() == [[-1, 0]], dtype
    # Two priors at (0.5, 0.5) predicting [2**-8, 0, 1, A] for the box [0, 0, A, A]: both areas
    # A * A, intersection (A - 2**-8) A, union 2 A * A - (A - 2**-8) A = A, so u = A - 2**-8 =
    # 127/128 (0.99220 with either area rounded to bfloat16). Alpha 0.5, scores 0.5 and 0.75: t =
    # sqrt(s) u**6, prior 1 the best; target scores sqrt(0.5 / 0.75) * 127/128 = 0.81013 and
    # 127/128 (sqrt in bfloat16, 0.70703 / 0.86719, would give 0.80894).
    priors = one_level((0.25, 0.75), (0.25, 0.75))
    box = torch.tensor([[[0.0, 0.0, A, A]]])
    predicted = torch.tensor([[[2**-8, 0.0, 1.0, A]] * 2])
    scores = torch.tensor([[[0.5], [0.75]]])
    expected = torch.tensor([math.sqrt(0.5 / 0.75) * 127 / 128, 127 / 128])
    for dtype in (torch.float32, torch.bfloat16):
        targets = TaskAlignedAssigner(topk=2, alpha=0.5)(
            priors, box.to(dtype), torch.tensor([[0]]), 1, scores.to(dtype), predicted.to(dtype)
        )
        assert targets.matched_gt.tolist() == [[0, 0]], dtype
        torch.testing.assert_close(targets.target_scores[0, :, 0], expected, rtol=0, atol=1e-6)


# -------------------------------------------------------------- batches against per-image loops


def prior_centres(boxes: torch.Tensor) -> torch.Tensor:
    """(A, 4) -> (A, 2), float32 arithmetic as in the assigners (so that equal centres tie)."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def inside(point: list[float], box: list[float]) -> bool:
    return box[0] < point[0] < box[2] and box[1] < point[1] < box[3]


def reference_atss(
    priors: Priors, boxes: torch.Tensor, class_ids: list[int], topk: int
) -> list[int]:
    """ATSS for one image, box by box and level by level with Python numbers."""
    iou = box_iou(priors.boxes, boxes).tolist()  # (A, M)
    centres = prior_centres(priors.boxes)
    best: list[tuple[float, int]] = [(-1.0, -1)] * priors.boxes.shape[0]  # (IoU, box) per prior
    for box_index, (box, class_id) in enumerate(zip(boxes.tolist(), class_ids, strict=True)):
        if class_id == -1:
            continue
        distance = (centres - prior_centres(boxes[box_index : box_index + 1])).square().sum(1)
        candidates: list[int] = []
        start = 0
        for size in priors.level_sizes:
            level = range(start, start + size)
            candidates += sorted(level, key=lambda a: (distance[a].item(), a))[:topk]
            start += size
        values = [iou[a][box_index] for a in candidates]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        for a in candidates:
            value = iou[a][box_index]
            passed = value >= statistics.mean(values) + spread
            # strictly higher: of two boxes at one IoU, the lower index keeps the prior
            if passed and inside(centres[a].tolist(), box) and value > best[a][0]:
                best[a] = (value, box_index)
    return [box_index for _, box_index in best]


def reference_tal(
    priors: Priors,
    boxes: torch.Tensor,
    class_ids: list[int],
    scores: list[list[float]],
    pred_boxes: torch.Tensor,
    topk: int,
) -> tuple[list[int], list[float]]:
    """TAL for one image with Python numbers, alpha 1 and beta 6: matched box and score."""
    iou = box_iou(pred_boxes, boxes).tolist()  # (A, M)
    centres = prior_centres(priors.boxes).tolist()
    num_priors = len(centres)
    metric: dict[tuple[int, int], float] = {}
    top: dict[int, list[int]] = {}
    for g, (box, class_id) in enumerate(zip(boxes.tolist(), class_ids, strict=True)):
        if class_id == -1:
            continue
        for a in range(num_priors):
            s = max(scores[a]) if class_id == -2 else scores[a][class_id]
            metric[a, g] = s * iou[a][g] ** 6
        candidates = [a for a in range(num_priors) if inside(centres[a], box)]
        top[g] = sorted(candidates, key=lambda a: (-metric[a, g], a))[:topk]
    matched = [-1] * num_priors
    for a in range(num_priors):
        claims = [g for g in top if a in top[g]]
        if claims:
            matched[a] = max(claims, key=lambda g: (iou[a][g], -g))
    score = [0.0] * num_priors
    for g in top:
        if class_ids[g] == -2:
            continue  # priors of an ignored object are not positive: no score
        kept = [a for a in top[g] if matched[a] == g]
        best_metric = max((metric[a, g] for a in kept), default=0.0)
        best_iou = max((iou[a][g] for a in kept), default=0.0)
        for a in kept:
            score[a] = metric[a, g] / best_metric * best_iou if best_metric > 0 else 0.0
    return matched, score


# Two levels of anchors, 2 per cell (so centres tie within a cell): 4 x 4 then 2 x 2 -> 40.
LEVELS = (
    AnchorLevel(sizes=(0.25,), ratios=(1.0, 2.0)),
    AnchorLevel(sizes=(0.5,), ratios=(1.0, 2.0)),
)
ANCHOR_PRIORS = Priors(
    torch.from_numpy(
        np.concatenate((cell_anchors(LEVELS[0], 4, 4), cell_anchors(LEVELS[1], 2, 2)))
    ),
    (32, 8),
)


def random_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image 0 with 4 objects (one ignored), image 1 with 2 and two padding slots: gt boxes
    (2, 4, 4) normalised xyxy, class ids (2, 4), scores (2, 40, 3), predicted boxes (2, 40, 4)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(2, 4, 2, generator=generator) * 0.8 + 0.1
    sizes = torch.rand(2, 4, 2, generator=generator) * 0.5 + 0.1
    boxes = torch.cat((centres - sizes / 2, centres + sizes / 2), dim=-1)
    class_ids = torch.tensor([[0, 2, -2, 1], [1, 0, -1, -1]])
    scores = torch.rand(2, 40, 3, generator=generator)
    jitter = (torch.rand(2, 40, 4, generator=generator) - 0.5) * 0.2
    return boxes, class_ids, scores, ANCHOR_PRIORS.boxes + jitter


# Seeds whose batches have positive and ignored priors under both assigners (checked below).
SEEDS = (0, 3, 4, 6, 9)


def assert_same_targets(batched: PriorTargets, image: int, solo: PriorTargets) -> None:
    for name in ("class_targets", "box_targets", "target_scores", "positive", "ignored"):
        torch.testing.assert_close(getattr(batched, name)[image], getattr(solo, name)[0])
    assert batched.matched_gt[image].tolist() == solo.matched_gt[0].tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_atss_batch_equals_per_image_loops(seed: int) -> None:
    boxes, class_ids, _, _ = random_batch(seed)
    assigner = ATSSAssigner(topk=3)
    batched = assigner(ANCHOR_PRIORS, boxes, class_ids, 3)
    assert batched.positive.any() and batched.ignored.any()
    for image, count in enumerate((4, 2)):  # the real slots come first
        ids = class_ids[image, :count]
        solo = assigner(ANCHOR_PRIORS, boxes[image : image + 1, :count], ids[None], 3)
        assert_same_targets(batched, image, solo)
        expected = reference_atss(ANCHOR_PRIORS, boxes[image, :count], ids.tolist(), topk=3)
        assert batched.matched_gt[image].tolist() == expected


@pytest.mark.parametrize("seed", SEEDS)
def test_tal_batch_equals_per_image_loops(seed: int) -> None:
    boxes, class_ids, scores, pred_boxes = random_batch(seed)
    assigner = TaskAlignedAssigner(topk=3)
    batched = assigner(ANCHOR_PRIORS, boxes, class_ids, 3, scores, pred_boxes)
    assert batched.positive.any() and batched.ignored.any()
    for image, count in enumerate((4, 2)):  # the real slots come first
        ids = class_ids[image, :count]
        one = slice(image, image + 1)
        solo = assigner(
            ANCHOR_PRIORS, boxes[one, :count], ids[None], 3, scores[one], pred_boxes[one]
        )
        assert_same_targets(batched, image, solo)
        matched, score = reference_tal(
            ANCHOR_PRIORS,
            boxes[image, :count],
            ids.tolist(),
            scores[image].tolist(),
            pred_boxes[image],
            topk=3,
        )
        assert batched.matched_gt[image].tolist() == matched
        torch.testing.assert_close(
            batched.target_scores[image].sum(dim=1), torch.tensor(score), rtol=1e-5, atol=1e-7
        )


# ------------------------------------------------------------------------- contract and registry


@pytest.mark.parametrize("name", ["atss", "maxiou", "tal"])
def test_a_batch_without_objects_is_all_background(name: str) -> None:
    priors = one_level((0, 2), (2, 4))
    targets = build_assigner(name)(
        priors,
        torch.zeros(2, 0, 4),
        torch.zeros(2, 0, dtype=torch.int64),
        3,
        torch.rand(2, 2, 3),
        priors.boxes.expand(2, 2, 4),
    )
    assert targets.matched_gt.tolist() == [[-1, -1]] * 2
    assert (targets.class_targets == 3).all() and not targets.positive.any()
    assert targets.box_targets.shape == (2, 2, 4) and targets.target_scores.shape == (2, 2, 3)
    assert not targets.box_targets.any() and not targets.target_scores.any()


def test_registry_names_builds_and_rejects() -> None:
    assert assigner_names() == ["atss", "maxiou", "tal"]
    assert build_assigner("atss", topk=4) == ATSSAssigner(topk=4)
    assert build_assigner("maxiou", iou_threshold=0.5) == MaxIoUAssigner(iou_threshold=0.5)
    assert build_assigner("tal", alpha=0.5) == TaskAlignedAssigner(alpha=0.5)
    match = "unknown assigner 'simota'; valid names: atss, maxiou, tal"
    with pytest.raises(OnestageError, match=match):
        build_assigner("simota")
    with pytest.raises(OnestageError, match=r"unknown option\(s\) radius .*valid options: topk$"):
        build_assigner("atss", radius=2.5)
    with pytest.raises(OnestageError, match="topk"):
        build_assigner("tal", topk=0)
    with pytest.raises(ValueError, match="sum to the 2 priors"):
        Priors(strips((0, 1), (1, 2)), (1, 2))
    with pytest.raises(ValueError, match="needs pred_scores"):
        TaskAlignedAssigner()(one_level((0, 1)), strips((0, 1))[None], torch.tensor([[0]]), 1)


@pytest.mark.parametrize("name", ["atss", "maxiou", "tal"])
def test_assigners_run_on_the_priors_device(name: str) -> None:
    # the meta device (shapes only) stands in for a GPU: a tensor made on the CPU would not mix
    priors = Priors(strips((0, 2), (2, 4)).to("meta"), (2,))
    targets = build_assigner(name)(
        priors,
        strips((0, 4))[None].to("meta"),
        torch.tensor([[0]], device="meta"),
        3,
        torch.rand(1, 2, 3, device="meta"),
        priors.boxes[None],
    )
    assert targets.matched_gt.device.type == "meta" and targets.target_scores.shape == (1, 2, 3)


def test_every_assigner_gives_the_same_fields_for_the_same_input() -> None:
    # One contract (onestage.assign): the same PriorTargets fields, shapes, dtypes and devices,
    # whichever assigner, and each field meaning the same: box and class targets are the matched
    # box's on positive priors (box 0, background class elsewhere), target scores sit at the
    # class of a positive prior only, and a prior that takes an ignored object is ignored.
    boxes, class_ids, scores, predicted = random_batch(0)
    layout = {
        "class_targets": ((2, 40), torch.int64),
        "box_targets": ((2, 40, 4), torch.float32),
        "target_scores": ((2, 40, 3), torch.float32),
        "positive": ((2, 40), torch.bool),
        "ignored": ((2, 40), torch.bool),
        "matched_gt": ((2, 40), torch.int64),
    }
    assert set(ASSIGNERS.classes) == {"maxiou", "atss", "tal"}
    for name in ASSIGNERS.names():
        targets = build_assigner(name)(ANCHOR_PRIORS, boxes, class_ids, 3, scores, predicted)
        assert type(targets) is PriorTargets, name
        got = {
            f.name: (tuple(getattr(targets, f.name).shape), getattr(targets, f.name).dtype)
            for f in fields(targets)
        }
        assert got == layout, name
        assert targets.positive.any() and targets.ignored.any(), name
        index = targets.matched_gt.clamp(min=0)  # (2, 40)
        matched_ids = class_ids.gather(1, index)
        matched_boxes = boxes.gather(1, index[..., None].expand(2, 40, 4))
        taken = targets.matched_gt >= 0
        assert torch.equal(targets.positive, taken & (matched_ids >= 0)), name
        assert torch.equal(targets.ignored, taken & (matched_ids == -2)), name
        expected_classes = torch.where(targets.positive, matched_ids, 3)
        assert torch.equal(targets.class_targets, expected_classes), name
        expected_boxes = torch.where(targets.positive[..., None], matched_boxes, 0.0)
        assert torch.equal(targets.box_targets, expected_boxes), name
        off_class = torch.nn.functional.one_hot(expected_classes, 4)[..., :3] == 0
        assert not targets.target_scores[off_class].any(), name


def test_a_missing_slot_is_one_padding_slot() -> None:
    boxes, class_ids = with_a_slot(torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.int64))
    assert boxes.tolist() == [[[0.0] * 4]] * 2 and class_ids.tolist() == [[-1], [-1]]
    boxes, class_ids = strips((0, 1))[None], torch.tensor([[2]])
    same_boxes, same_ids = with_a_slot(boxes, class_ids)  # a batch with slots: unchanged
    assert same_boxes is boxes and same_ids is class_ids


ONE_PRIOR, ONE_BOX, CLASS_0 = one_level((0, 1)), strips((0, 1))[None], torch.tensor([[0]])
NEEDS_PREDICTIONS = "task-aligned assignment needs pred_scores and pred_boxes"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ATSSAssigner(topk=0), OnestageError, "ATSS topk must be at least 1, got 0"),
        (
            lambda: TaskAlignedAssigner(alpha=-1.0),
            OnestageError,
            "TAL needs topk >= 1 and alpha, beta >= 0, got topk=13, alpha=-1.0, beta=6.0",
        ),
        (
            lambda: Priors(strips((0, 1), (1, 2)), (0, 2)),
            ValueError,
            "level sizes (0, 2) must be positive and sum to the 2 priors",
        ),
        (
            lambda: TaskAlignedAssigner()(ONE_PRIOR, ONE_BOX, CLASS_0, 2, torch.rand(1, 1, 2)),
            ValueError,
            NEEDS_PREDICTIONS,
        ),
        (
            lambda: TaskAlignedAssigner()(ONE_PRIOR, ONE_BOX, CLASS_0, 2, None, ONE_BOX),
            ValueError,
            NEEDS_PREDICTIONS,
        ),
        (
            lambda: TaskAlignedAssigner()(
                ONE_PRIOR, ONE_BOX, CLASS_0, 2, torch.rand(1, 1, 3), ONE_BOX
            ),
            ValueError,
            "pred_scores has 3 classes, not 2",
        ),
    ],
    ids=["atss-topk", "tal-alpha", "level-sizes", "no-boxes", "no-scores", "classes"],
)
def test_errors_say_what_was_wrong(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value) == message
