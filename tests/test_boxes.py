from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onestage.boxes import (
    batched_box_iou,
    box_area,
    box_iou,
    clip_boxes,
    cxcywh_to_xyxy,
    elementwise_box_iou,
    elementwise_generalized_box_iou,
    xyxy_to_cxcywh,
)
from onestage.priors.offsets import decode_offsets, encode_offsets

SETTINGS = settings(deadline=None, max_examples=50)


@st.composite
def xyxy_boxes(draw: st.DrawFn, count: int, min_size: float = 0.02) -> torch.Tensor:
    """`count` normalised xyxy boxes of positive size, as a (count, 4) float32 tensor."""
    unit = st.floats(0.0, 1.0)
    side = st.floats(min_size, 1.0)
    rows = draw(st.lists(st.tuples(unit, unit, side, side), min_size=count, max_size=count))
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(count, 4)
    return torch.cat((boxes[:, :2], boxes[:, :2] + boxes[:, 2:]), dim=1)


@SETTINGS
@given(xyxy_boxes(8))
def test_xyxy_cxcywh_round_trip(boxes: torch.Tensor) -> None:
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes, atol=1e-6, rtol=0)


def test_cxcywh_values_and_leading_shape() -> None:
    boxes = torch.tensor([0.1, 0.2, 0.5, 0.8]).expand(2, 3, 4)
    expected = torch.tensor([0.3, 0.5, 0.4, 0.6]).expand(2, 3, 4)
    torch.testing.assert_close(xyxy_to_cxcywh(boxes), expected)


def test_xyxy_values_and_leading_shape() -> None:
    # centre (0.3, 0.5), size 0.4 x 0.6 -> x 0.3 -+ 0.2, y 0.5 -+ 0.3, for each of (2, 3) boxes
    boxes = torch.tensor([0.3, 0.5, 0.4, 0.6]).expand(2, 3, 4)
    expected = torch.tensor([0.1, 0.2, 0.5, 0.8]).expand(2, 3, 4)
    torch.testing.assert_close(cxcywh_to_xyxy(boxes), expected)


@SETTINGS
@given(xyxy_boxes(6), xyxy_boxes(6))
def test_encode_decode_round_trip(gt: torch.Tensor, anchors: torch.Tensor) -> None:
    decoded = decode_offsets(encode_offsets(gt, anchors), anchors)
    torch.testing.assert_close(decoded, gt, atol=1e-5, rtol=0)


@SETTINGS
@given(xyxy_boxes(5), xyxy_boxes(3))
def test_encode_broadcasts_over_anchors(gt: torch.Tensor, anchors: torch.Tensor) -> None:
    offsets = encode_offsets(gt[:, None, :], anchors[None, :, :])  # (5, 3, 4)
    assert offsets.shape == (5, 3, 4)
    torch.testing.assert_close(offsets[4, 2], encode_offsets(gt[4], anchors[2]))


def test_encode_is_the_seed_formula() -> None:
    anchor = torch.tensor([0.3, 0.3, 0.5, 0.5])
    gt = torch.tensor([0.25, 0.2, 0.65, 0.6])  # centre (0.45, 0.4), size 0.4 x 0.4
    expected = torch.tensor(
        [10 * 0.05 / 0.2, 10 * 0.0 / 0.2, 5 * math.log(2 + 1e-6), 5 * math.log(2 + 1e-6)]
    )
    torch.testing.assert_close(encode_offsets(gt, anchor), expected)


def test_decode_clamps_huge_size_offsets() -> None:
    anchor = torch.tensor([0.4, 0.4, 0.6, 0.6])
    decoded = decode_offsets(torch.tensor([0.0, 0.0, 1e4, 1e4]), anchor)
    assert torch.isfinite(decoded).all()
    torch.testing.assert_close(xyxy_to_cxcywh(decoded)[2:], torch.tensor([12.5, 12.5]))
    # a tighter cap: log ratios 1e4 * 0.2 clamped to log(3), a box 3 x 0.2 = 0.6 wide and high
    capped = decode_offsets(
        torch.tensor([0.0, 0.0, 1e4, 1e4]), anchor, max_log_size_ratio=math.log(3)
    )
    torch.testing.assert_close(capped, torch.tensor([0.2, 0.2, 0.8, 0.8]))


def test_encode_keeps_the_log_finite_for_an_empty_ground_truth_box() -> None:
    # a padding box of size 0: log(0 / 0.2 + 1e-6) / 0.2 = 5 log(1e-6) = -69.08 on each side
    anchor = torch.tensor([0.3, 0.3, 0.5, 0.5])
    empty = torch.tensor([0.4, 0.4, 0.4, 0.4])
    size = 5 * math.log(1e-6)
    torch.testing.assert_close(encode_offsets(empty, anchor), torch.tensor([0.0, 0.0, size, size]))


@SETTINGS
@given(xyxy_boxes(5), xyxy_boxes(4))
def test_iou_is_symmetric_and_in_unit_interval(a: torch.Tensor, b: torch.Tensor) -> None:
    iou = box_iou(a, b)
    assert iou.shape == (5, 4)
    assert ((iou >= 0) & (iou <= 1 + 1e-6)).all()
    torch.testing.assert_close(iou, box_iou(b, a).T)
    torch.testing.assert_close(torch.diagonal(box_iou(a, a)), torch.ones(5))


@SETTINGS
@given(xyxy_boxes(12), xyxy_boxes(6))
def test_batched_iou_equals_per_image(a: torch.Tensor, b: torch.Tensor) -> None:
    a, b = a.reshape(3, 4, 4), b.reshape(3, 2, 4)
    batched = batched_box_iou(a, b)
    assert batched.shape == (3, 4, 2)
    for image in range(3):
        torch.testing.assert_close(batched[image], box_iou(a[image], b[image]))


@SETTINGS
@given(xyxy_boxes(6), xyxy_boxes(6))
def test_giou_bounds_and_relation_to_iou(a: torch.Tensor, b: torch.Tensor) -> None:
    giou = elementwise_generalized_box_iou(a, b)
    iou = elementwise_box_iou(a, b)
    assert ((giou >= -1 - 1e-6) & (giou <= 1 + 1e-6)).all()
    assert (giou <= iou + 1e-6).all()
    torch.testing.assert_close(iou, torch.diagonal(box_iou(a, b)))


@SETTINGS
@given(xyxy_boxes(6), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_giou_equals_iou_when_one_box_contains_the_other(
    outer: torch.Tensor, shrink: float, shift: float
) -> None:
    size = outer[:, 2:] - outer[:, :2]
    inner_size = size * (0.1 + 0.9 * shrink)
    top_left = outer[:, :2] + (size - inner_size) * shift
    inner = torch.cat((top_left, top_left + inner_size), dim=1)
    torch.testing.assert_close(
        elementwise_generalized_box_iou(outer, inner), elementwise_box_iou(outer, inner)
    )


def test_hand_worked_iou_and_giou() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 4.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0], [1.0, 0.0, 2.0, 2.0]])
    # overlap 1 / union 7; disjoint; inner box of area 2 in a box of area 8
    torch.testing.assert_close(elementwise_box_iou(a, b), torch.tensor([1 / 7, 0.0, 0.25]))
    # enclosing boxes: 3 x 3 (union 7), 3 x 3 (union 2), the outer box itself
    expected_giou = torch.tensor([1 / 7 - 2 / 9, -7 / 9, 0.25])
    torch.testing.assert_close(elementwise_generalized_box_iou(a, b), expected_giou)
    torch.testing.assert_close(box_area(a), torch.tensor([4.0, 1.0, 8.0]))


def test_degenerate_boxes_give_zero_not_nan() -> None:
    point = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    inverted = torch.tensor([[0.6, 0.6, 0.4, 0.4]])
    normal = torch.tensor([[0.4, 0.4, 0.6, 0.6]])
    assert box_area(inverted).item() == 0
    for a, b in [(point, point), (point, normal), (inverted, normal), (inverted, inverted)]:
        assert box_iou(a, b).item() == 0
        assert batched_box_iou(a[None], b[None]).item() == 0
    assert elementwise_generalized_box_iou(point, point).item() == 0


def test_giou_gradient_is_finite_for_degenerate_boxes() -> None:
    a = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.3, 0.3]], requires_grad=True)
    b = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2]])
    (1 - elementwise_generalized_box_iou(a, b)).sum().backward()
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_functions_preserve_dtype(dtype: torch.dtype) -> None:
    a = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.2, 0.3, 0.9, 0.8]], dtype=dtype)
    b = torch.tensor([[0.0, 0.2, 0.4, 0.7], [0.3, 0.3, 0.6, 0.9]], dtype=dtype)
    outputs = [
        xyxy_to_cxcywh(a),
        cxcywh_to_xyxy(a),
        box_area(a),
        box_iou(a, b),
        batched_box_iou(a[None], b[None]),
        elementwise_box_iou(a, b),
        elementwise_generalized_box_iou(a, b),
        encode_offsets(a, b),
        decode_offsets(a, b),
        clip_boxes(a),
    ]
    assert all(output.dtype == dtype for output in outputs)
    torch.testing.assert_close(
        box_iou(a, b).float(), box_iou(a.float(), b.float()), atol=2e-2, rtol=0
    )


def test_clip_boxes() -> None:
    boxes = torch.tensor([[-0.2, 0.1, 1.3, 0.9], [10.0, -5.0, 700.0, 500.0]])
    torch.testing.assert_close(clip_boxes(boxes[:1]), torch.tensor([[0.0, 0.1, 1.0, 0.9]]))
    torch.testing.assert_close(
        clip_boxes(boxes[1:], width=640, height=480), torch.tensor([[10.0, 0.0, 640.0, 480.0]])
    )
