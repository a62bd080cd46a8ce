"""Per-element loss terms (VFL, QFL, CIoU, DFL, ltrb code) against hand-worked values.

Recurring numbers: logit 0 -> p = 1/2, BCE(1/2, q) = ln 2 for every q; logit ln 3 -> p = 3/4,
1 - p = 1/4. Expected values are written with `math`, never with the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from onestage.boxes import complete_box_iou, elementwise_box_iou
from onestage.losses.terms import (
    ciou_loss,
    distribution_focal_loss,
    quality_focal_loss,
    varifocal_loss,
)
from onestage.priors.distances import (
    boxes_to_distances,
    distances_to_boxes,
    distribution_to_distance,
)

LN3 = math.log(3)
# BCE(p = 3/4, q = 0.6) = -(0.6 ln 0.75 + 0.4 ln 0.25) = 0.172609 + 0.554518 = 0.727127
BCE_075_06 = -(0.6 * math.log(0.75) + 0.4 * math.log(0.25))


def scalar(value: float) -> torch.Tensor:
    """A 0-d float32 leaf that records its gradient."""
    return torch.tensor(value, requires_grad=True)


@pytest.mark.parametrize(
    ("logit", "score", "expected"),
    [
        (0.0, 0.8, 0.8 * math.log(2)),  # positive: q * BCE = 0.8 ln 2 = 0.554518
        (0.0, 0.0, 0.75 * 0.5**2 * math.log(2)),  # negative: alpha p^2 ln 2 = 0.129965
        (LN3, 0.6, 0.6 * BCE_075_06),  # 0.6 * 0.727127 = 0.436276
        (LN3, 0.0, 0.75 * 0.75**2 * math.log(4)),  # 0.75 * 0.5625 * ln 4 = 0.584843
    ],
)
def test_varifocal_hand_values(logit: float, score: float, expected: float) -> None:
    value = varifocal_loss(torch.tensor([logit]), torch.tensor([score]))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_varifocal_negatives_are_alpha_p_gamma_bce() -> None:
    logits = [-3.0, -0.5, 0.0, 1.0, 4.0]
    value = varifocal_loss(torch.tensor(logits), torch.zeros(5), alpha=0.6, gamma=1.5)
    expected = []
    for logit in logits:
        p = 1 / (1 + math.exp(-logit))
        expected.append(0.6 * p**1.5 * -math.log(1 - p))
    assert value.tolist() == pytest.approx(expected, rel=1e-5)


def test_varifocal_gradient_flows_through_the_weight_not_the_target() -> None:
    # Negative, logit 0: d/dx [alpha p^2 softplus(x)] = alpha (2 p^2 (1 - p) ln 2 + p^2 * p)
    # = 0.75 (0.25 ln 2 + 0.125) = 0.223715. Positive, q = 0.8: d/dx [q BCE] = q (p - q) = -0.24.
    logits = torch.zeros(2, requires_grad=True)
    scores = torch.tensor([0.0, 0.8], requires_grad=True)
    varifocal_loss(logits, scores).sum().backward()
    assert logits.grad.tolist() == pytest.approx(
        [0.75 * (0.25 * math.log(2) + 0.125), -0.24], rel=1e-6
    )
    assert scores.grad is None


@pytest.mark.parametrize(
    ("logit", "score", "expected"),
    [
        (0.0, 0.8, 0.3**2 * math.log(2)),  # ln 2 * |0.8 - 0.5|^2 = 0.062383
        (LN3, 0.6, 0.15**2 * BCE_075_06),  # 0.727127 * 0.0225 = 0.016360
        (LN3, 1.0, 0.25**2 * math.log(4 / 3)),  # -ln 0.75 * 0.25^2 = 0.017980
        (LN3, 0.0, 0.75**2 * math.log(4)),  # -ln 0.25 * 0.75^2 = 0.779791
        (0.0, 0.5, 0.0),  # q = p: |q - p| = 0
    ],
)
def test_quality_focal_hand_values(logit: float, score: float, expected: float) -> None:
    value = quality_focal_loss(torch.tensor([logit]), torch.tensor([score]))
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-12)


@pytest.mark.parametrize("beta", [0.5, 2.0])
@pytest.mark.parametrize("target", [0.0, 1.0])
def test_quality_focal_is_focal_without_alpha_at_hard_targets(beta: float, target: float) -> None:
    # q in {0, 1}: QFL = (1 - p_t)^beta * -ln p_t, p_t = p for q = 1 and 1 - p for q = 0.
    logits = [-4.0, -1.0, 0.0, 2.0, 5.0]
    value = quality_focal_loss(torch.tensor(logits), torch.full((5,), target), beta=beta)
    expected = []
    for logit in logits:
        p = 1 / (1 + math.exp(-logit))
        p_t = p if target == 1.0 else 1 - p
        expected.append((1 - p_t) ** beta * -math.log(p_t))
    assert value.tolist() == pytest.approx(expected, rel=1e-5)


def test_quality_focal_gradient_hand_values() -> None:
    # beta = 2, x = 0, q = 0.8: d/dx [BCE (q - p)^2] = (p - q)(q - p)^2 + BCE * 2 (p - q) p (1 - p)
    # = -0.3 * 0.09 + ln 2 * 2 * -0.3 * 0.25 = -0.027 - 0.103972 = -0.130972.
    logit = scalar(0.0)
    quality_focal_loss(logit, torch.tensor(0.8)).backward()
    assert logit.grad.item() == pytest.approx(-0.027 - 0.15 * math.log(2), rel=1e-6)
    # beta = 0.5, q = p exactly: the cusp at the minimum takes gradient 0 (the true slope is inf).
    logit = scalar(0.0)
    quality_focal_loss(logit, torch.tensor(0.5), beta=0.5).backward()
    assert logit.grad.item() == 0.0


@pytest.mark.parametrize("exponent", [0.25, 0.5])
def test_fractional_exponents_keep_gradients_finite_at_confident_logits(exponent: float) -> None:
    # Direct forms fail here: 1 - sigmoid(20) rounds to 0 in float32 and x^0.25 has slope inf.
    confident = (-1000.0, -100.0, -20.0, 20.0, 100.0, 1000.0)
    grid = [(logit, q) for logit in confident for q in (0.0, 1.0, 0.3)]
    logits = torch.tensor([logit for logit, _ in grid], requires_grad=True)
    scores = torch.tensor([q for _, q in grid])
    for value in (
        varifocal_loss(logits, scores, gamma=exponent),
        quality_focal_loss(logits, scores, beta=exponent),
    ):
        assert torch.isfinite(value).all()
        (grad,) = torch.autograd.grad(value.sum(), logits)
        assert torch.isfinite(grad).all(), grad
    # Confident and right (q = 1, logit 100; q = 0, logit -100): loss and gradient about 0.
    right = quality_focal_loss(torch.tensor([100.0, -100.0]), torch.tensor([1.0, 0.0]), exponent)
    assert right.tolist() == pytest.approx([0.0, 0.0], abs=1e-30)


def test_exponents_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="gamma >= 0"):
        varifocal_loss(torch.zeros(1), torch.zeros(1), gamma=-1.0)
    with pytest.raises(ValueError, match="beta >= 0"):
        quality_focal_loss(torch.zeros(1), torch.zeros(1), beta=-0.5)


def test_exponent_zero_turns_the_modulators_off() -> None:
    # VFL, gamma 0: negatives weigh alpha p^0 = 0.75, positives q: logit 0 -> 0.75 ln 2, 0.8 ln 2.
    vfl = varifocal_loss(torch.zeros(2), torch.tensor([0.0, 0.8]), gamma=0.0)
    assert vfl.tolist() == pytest.approx([0.75 * math.log(2), 0.8 * math.log(2)], rel=1e-6)
    # QFL, beta 0: |q - p|^0 = 1 everywhere, also where q = p (0^0 = 1): plain BCE, ln 2.
    qfl = quality_focal_loss(torch.zeros(2), torch.tensor([0.5, 0.8]), beta=0.0)
    assert qfl.tolist() == pytest.approx([math.log(2)] * 2, rel=1e-6)


def test_every_term_computes_in_float32() -> None:
    for dtype in (torch.bfloat16, torch.float64):
        logits, scores = torch.zeros(2, 3, dtype=dtype), torch.full((2, 3), 0.5, dtype=dtype)
        boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5]], dtype=dtype)
        outputs = (
            varifocal_loss(logits, scores),
            quality_focal_loss(logits, scores),
            complete_box_iou(boxes, boxes),
            distribution_focal_loss(logits, scores[:, 0], reg_max=2),
            distribution_to_distance(logits, reg_max=2),
            distances_to_boxes(boxes[:, :2], boxes, 0.5),
            boxes_to_distances(boxes[:, :2], boxes, 0.5),
        )
        assert {output.dtype for output in outputs} == {torch.float32}


# CIoU hand example: a = (0, 0, 2, 2) (2 x 2, centre (1, 1)), b = (1, 1, 3, 2) (2 x 1, centre
# (2, 1.5)). Intersection [1, 2] x [1, 2] = 1, union 4 + 2 - 1 = 5: IoU = 0.2.
# rho^2 = 1^2 + 0.5^2 = 1.25; enclosing (0, 0, 3, 2): c^2 = 9 + 4 = 13; rho^2 / c^2 = 0.096154.
# v = 4 / pi^2 (atan 1 - atan 2)^2 = 0.405285 * 0.103524 = 0.041956;
# alpha = v / (1 - 0.2 + v) = 0.049832; alpha v = 0.002091. CIoU = 0.2 - 0.096154 - 0.002091.
V_HAND = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
ALPHA_HAND = V_HAND / (0.8 + V_HAND)
CIOU_HAND = 0.2 - 1.25 / 13 - ALPHA_HAND * V_HAND  # 0.101755


def test_ciou_of_identical_boxes_is_one() -> None:
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.3, 0.9], [10.0, 20.0, 50.0, 30.0]])
    assert complete_box_iou(boxes, boxes).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert ciou_loss(boxes, boxes).tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-7)


def test_ciou_hand_example_is_symmetric_and_broadcasts() -> None:
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 1.0, 3.0, 2.0])
    assert complete_box_iou(a, b).item() == pytest.approx(CIOU_HAND, rel=1e-6)
    assert complete_box_iou(b, a).item() == pytest.approx(CIOU_HAND, rel=1e-6)
    assert ciou_loss(a, b).item() == pytest.approx(1 - CIOU_HAND, rel=1e-6)
    pairwise = complete_box_iou(torch.stack((a, b))[:, None], torch.stack((a, b))[None])
    assert pairwise.shape == (2, 2)
    assert pairwise.flatten().tolist() == pytest.approx([1.0, CIOU_HAND, CIOU_HAND, 1.0], rel=1e-6)


def test_ciou_treats_alpha_as_a_constant_in_the_gradient() -> None:
    # Reference: the same formula written out, with alpha the Python number ALPHA_HAND.
    a = torch.tensor([0.0, 0.0, 2.0, 2.0], requires_grad=True)
    b = torch.tensor([1.0, 1.0, 3.0, 2.0])
    (grad,) = torch.autograd.grad(complete_box_iou(a, b), a)
    ar = a.detach().clone().requires_grad_(True)
    rho_sq = ((b[0] + b[2] - ar[0] - ar[2]) / 2) ** 2 + ((b[1] + b[3] - ar[1] - ar[3]) / 2) ** 2
    c_sq = (torch.maximum(ar[2], b[2]) - torch.minimum(ar[0], b[0])) ** 2 + (
        torch.maximum(ar[3], b[3]) - torch.minimum(ar[1], b[1])
    ) ** 2
    angle_a = torch.atan((ar[2] - ar[0]) / (ar[3] - ar[1]))
    v = 4 / math.pi**2 * (math.atan(2.0) - angle_a) ** 2
    reference = elementwise_box_iou(ar, b) - rho_sq / c_sq - ALPHA_HAND * v
    (expected,) = torch.autograd.grad(reference, ar)
    assert grad.tolist() == pytest.approx(expected.tolist(), rel=1e-5)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # Same shape, 1 apart: rho^2 = 4, enclosing 3 x 1: c^2 = 10, v = 0 -> -0.4.
        ([0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0], -0.4),
        # 1 x 1 vs 2 x 1: rho^2 = 3.5^2 = 12.25, c^2 = 25 + 1 = 26, v = V_HAND, IoU = 0 so
        # alpha = v / (1 + v): -12.25 / 26 - v^2 / (1 + v) = -0.471154 - 0.001689 = -0.472843.
        ([0.0, 0.0, 1.0, 1.0], [3.0, 0.0, 5.0, 1.0], -12.25 / 26 - V_HAND**2 / (1 + V_HAND)),
        # Vertical line vs far horizontal line, the worst case: v = 4 / pi^2 (pi / 2)^2 = 1,
        # alpha v = 1 / 2; rho^2 = 100.5^2 + 0.5^2, c^2 = 101^2 + 1^2.
        ([0.0, 0.0, 0.0, 1.0], [100.0, 0.0, 101.0, 0.0], -(100.5**2 + 0.25) / 10202 - 0.5),
    ],
)
def test_ciou_of_disjoint_boxes_is_negative_and_bounded(
    a: list[float], b: list[float], expected: float
) -> None:
    value = complete_box_iou(torch.tensor(a), torch.tensor(b)).item()
    assert value == pytest.approx(expected, rel=1e-6)
    assert -1.5 <= value < 0


def test_ciou_distance_penalty_starts_above_a_diagonal_of_1e_12() -> None:
    # Two points: IoU 0, v 0 (both angles 0). 1e-12 apart, rho^2 = c^2 = 1e-24 (exactly, in
    # float32), at most the cut-off: no penalty, CIoU 0. 2e-12 apart: rho^2 / c^2 = 1, CIoU -1.
    point = torch.zeros(4)
    near = torch.tensor([1e-12, 0.0, 1e-12, 0.0])
    assert complete_box_iou(point, near).item() == 0.0
    assert complete_box_iou(point, 2 * near).item() == -1.0


def test_a_box_with_w2_plus_h2_at_most_1e_24_takes_the_angle_of_a_point() -> None:
    # Square a = (0, 0, w, w), w = 7.071068e-13: w^2 + w^2 = 1e-24 exactly in float32, a point
    # (angle 0), against b = (0, 0, 2, 2) (angle pi / 4): v = 4 / pi^2 (pi / 4)^2 = 1 / 4.
    # IoU ~ w^2 / 4 ~ 0; centres (w / 2, w / 2) and (1, 1): rho^2 = 2 (w is lost in 1 - w / 2),
    # c^2 = 8; alpha = 0.25 / 1.25 = 0.2: CIoU = -0.25 - 0.05. Twice as wide (w^2 + h^2 =
    # 4e-24) it is a square again, v = 0: CIoU = -0.25.
    side = 7.071068e-13
    b = torch.tensor([0.0, 0.0, 2.0, 2.0])
    tiny = complete_box_iou(torch.tensor([0.0, 0.0, side, side]), b)
    assert tiny.item() == pytest.approx(-0.3, rel=1e-6)
    small = complete_box_iou(torch.tensor([0.0, 0.0, 2 * side, 2 * side]), b)
    assert small.item() == pytest.approx(-0.25, rel=1e-6)


@pytest.mark.parametrize(
    ("a", "expected"),
    [
        # Zero width (1, 1)-(1, 3) vs b = (0, 0, 2, 2): IoU 0; centres (1, 2), (1, 1): rho^2 = 1;
        # enclosing 2 x 3: c^2 = 13; angles 0 and pi / 4: v = 4 / pi^2 * pi^2 / 16 = 1 / 4,
        # alpha = 0.25 / 1.25 = 0.2: CIoU = -1 / 13 - 0.05 = -0.126923.
        ([1.0, 1.0, 1.0, 3.0], -1 / 13 - 0.05),
        # Zero height (0, 1)-(2, 1): centre (1, 1) = b's, angle pi / 2: v = 1 / 4 again.
        ([0.0, 1.0, 2.0, 1.0], -0.05),
        # A point at (1, 1) takes angle 0 (YOLO's convention): v = 1 / 4, rho = 0.
        ([1.0, 1.0, 1.0, 1.0], -0.05),
    ],
)
def test_ciou_of_zero_size_boxes_has_finite_gradients(a: list[float], expected: float) -> None:
    a_tensor = torch.tensor(a, requires_grad=True)
    b_tensor = torch.tensor([0.0, 0.0, 2.0, 2.0], requires_grad=True)
    value = complete_box_iou(a_tensor, b_tensor)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    grads = torch.autograd.grad(value, (a_tensor, b_tensor))
    assert all(torch.isfinite(grad).all() for grad in grads)


def test_ciou_of_a_point_with_itself_is_zero_with_zero_gradient() -> None:
    # Empty boxes have IoU 0 (`boxes`); c = 0 so no distance penalty; v = 0.
    point = torch.tensor([0.5, 0.5, 0.5, 0.5], requires_grad=True)
    value = complete_box_iou(point, point.detach().clone())
    (grad,) = torch.autograd.grad(value, point)
    assert value.item() == 0.0
    assert grad.tolist() == [0.0, 0.0, 0.0, 0.0]


# DFL hand example, reg_max = 4: logits (0, ln 2, ln 3, ln 2, ln 4) -> exp sums to
# 1 + 2 + 3 + 2 + 4 = 12, p = (1, 2, 3, 2, 4) / 12.
DFL_LOGITS = [0.0, math.log(2), LN3, math.log(2), math.log(4)]
DFL_P = [1 / 12, 2 / 12, 3 / 12, 2 / 12, 4 / 12]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (2.0, math.log(4)),  # on bin 2: -ln p2 = ln 4 = 1.386294
        (2.3, 0.7 * math.log(4) + 0.3 * math.log(6)),  # 0.970406 + 0.537528 = 1.507934
        (1.5, 0.5 * math.log(6) + 0.5 * math.log(4)),  # 0.895880 + 0.693147 = 1.589027
        (4.0, math.log(3)),  # y = reg_max: weight 1 on bin 4 (y_l clamped to 3), -ln p4
        (0.0, math.log(12)),  # bin 0
        (5.0, math.log(3)),  # clamped to reg_max
        (-1.0, math.log(12)),  # clamped to 0
    ],
)
def test_dfl_hand_values(target: float, expected: float) -> None:
    value = distribution_focal_loss(torch.tensor(DFL_LOGITS), torch.tensor(target), reg_max=4)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_dfl_on_a_bin_is_the_cross_entropy_of_that_bin() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 8)  # (B, sides, reg_max + 1)
    bins = torch.randint(0, 8, (3, 4))
    value = distribution_focal_loss(logits, bins.float(), reg_max=7)
    expected = F.cross_entropy(logits.reshape(-1, 8), bins.reshape(-1), reduction="none")
    assert value.shape == (3, 4)
    assert torch.allclose(value, expected.reshape(3, 4), rtol=1e-6, atol=1e-6)


def test_dfl_gradient_is_softmax_minus_the_two_bin_target() -> None:
    # y = 2.3: target distribution (0, 0, 0.7, 0.3, 0); d DFL / d logits = p - target.
    logits = torch.tensor(DFL_LOGITS, requires_grad=True)
    target = torch.tensor(2.3, requires_grad=True)
    distribution_focal_loss(logits, target, reg_max=4).backward()
    expected = [p - t for p, t in zip(DFL_P, [0.0, 0.0, 0.7, 0.3, 0.0], strict=True)]
    assert logits.grad.tolist() == pytest.approx(expected, abs=1e-6)
    assert target.grad is None


def test_two_bins_are_the_smallest_distribution() -> None:
    # reg_max 1, logits (0, ln 3): p = (1/4, 3/4). Target 0.25: -(0.75 ln 1/4 + 0.25 ln 3/4);
    # decode 0 x 1/4 + 1 x 3/4 = 0.75.
    logits = torch.tensor([0.0, LN3])
    value = distribution_focal_loss(logits, torch.tensor(0.25), reg_max=1)
    assert value.item() == pytest.approx(0.75 * math.log(4) + 0.25 * math.log(4 / 3), rel=1e-6)
    assert distribution_to_distance(logits, reg_max=1).item() == pytest.approx(0.75, rel=1e-6)
    with pytest.raises(ValueError) as raised:
        distribution_to_distance(torch.zeros(1), reg_max=0)
    assert str(raised.value) == (
        "distribution logits need reg_max + 1 = 1 bins (reg_max >= 1) in their last dimension, "
        "got shape (1,)"
    )


def test_distribution_terms_check_the_number_of_bins() -> None:
    with pytest.raises(ValueError, match="reg_max \\+ 1 = 5 bins"):
        distribution_focal_loss(torch.zeros(2, 4), torch.zeros(2), reg_max=4)
    with pytest.raises(ValueError, match="got shape \\(4,\\)"):
        distribution_to_distance(torch.zeros(4), reg_max=4)


@pytest.mark.parametrize("magnitude", [20.0, 100.0])
def test_decode_of_one_hot_logits_is_the_bin(magnitude: float) -> None:
    logits = torch.full((3, 17), -magnitude)  # reg_max = 16
    logits[0, 0] = logits[1, 5] = logits[2, 16] = magnitude
    assert distribution_to_distance(logits, reg_max=16).tolist() == pytest.approx(
        [0.0, 5.0, 16.0], abs=1e-6
    )


def test_decode_is_the_expected_bin() -> None:
    assert distribution_to_distance(torch.zeros(17), reg_max=16).item() == pytest.approx(8.0)
    # (0 * 1 + 1 * 2 + 2 * 3 + 3 * 2 + 4 * 4) / 12 = 30 / 12.
    decoded = distribution_to_distance(torch.tensor(DFL_LOGITS), reg_max=4)
    assert decoded.item() == pytest.approx(2.5, rel=1e-6)


def test_distances_and_boxes_round_trip() -> None:
    # Point (0.5, 0.25), cell (0.125, 0.25) (stride 8 on a 64 x 32 image), ltrb (1, 2, 3, 0.5):
    # box (0.5 - 0.125, 0.25 - 0.5, 0.5 + 0.375, 0.25 + 0.125), all exact in binary.
    point = torch.tensor([0.5, 0.25])
    strides = torch.tensor([0.125, 0.25])
    distances = torch.tensor([1.0, 2.0, 3.0, 0.5])
    box = distances_to_boxes(point, distances, strides)
    assert box.tolist() == [0.375, -0.25, 0.875, 0.375]
    assert boxes_to_distances(point, box, strides).tolist() == [1.0, 2.0, 3.0, 0.5]
    # A point outside its box gets a negative distance (left unclamped).
    assert boxes_to_distances(point, torch.tensor([0.75, 0.0, 1.0, 0.5]), strides)[0] == -2.0


def test_ltrb_code_follows_the_points_dtype_and_device() -> None:
    # float64 strides do not make a float64 result; CPU strides go to the points' device
    # (the meta device stands in for an accelerator: shapes and devices, no values).
    point = torch.tensor([[0.5, 0.25]])
    strides = torch.tensor([[0.125]], dtype=torch.float64)
    box = distances_to_boxes(point, torch.tensor([[1.0, 2.0, 3.0, 4.0]]), strides)
    assert box.dtype == torch.float32 and box.tolist() == [[0.375, 0.0, 0.875, 0.75]]
    distances = boxes_to_distances(point, box, strides)
    assert distances.dtype == torch.float32 and distances.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    on_meta = point.to("meta")
    cpu_strides = torch.full((1, 1), 0.125)
    assert distances_to_boxes(on_meta, box.to("meta"), cpu_strides).device.type == "meta"
    assert boxes_to_distances(on_meta, box.to("meta"), cpu_strides).device.type == "meta"
    decoded = distribution_to_distance(torch.zeros(3, 5, device="meta"), reg_max=4)
    assert decoded.shape == (3,) and decoded.device.type == "meta"


def test_ltrb_code_broadcasts_points_and_square_strides_over_a_batch() -> None:
    torch.manual_seed(0)
    points = torch.rand(6, 2)  # (A, 2)
    strides = torch.tensor([[0.125]] * 4 + [[0.25]] * 2)  # (A, 1): square cells, two levels
    distances = torch.rand(2, 6, 4) * 4  # (B, A, 4)
    boxes = distances_to_boxes(points, distances, strides)  # (B, A, 4)
    assert boxes.shape == (2, 6, 4)
    assert torch.allclose(boxes[1, 5, :2], points[5] - distances[1, 5, :2] * 0.25)
    assert torch.allclose(boxes_to_distances(points, boxes, strides), distances, atol=1e-5)
