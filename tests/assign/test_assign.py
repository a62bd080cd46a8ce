from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import strips
from onestage.assign import MaxIoUAssigner, Priors, PriorTargets
from onestage.assign.maxiou import match_anchors
from onestage.boxes import box_iou
from onestage.priors.anchors import AnchorLevel, cell_anchors
from onestage.priors.offsets import encode_offsets


def match_one(anchors: torch.Tensor, boxes: torch.Tensor, **kwargs: object) -> list[int]:
    """match_anchors for a single image whose slots are all valid."""
    valid = torch.ones(1, boxes.shape[0], dtype=torch.bool)
    return match_anchors(anchors, boxes[None], valid, **kwargs)[0].tolist()


def assign(
    anchors: torch.Tensor, boxes: torch.Tensor, class_ids: torch.Tensor, num_classes: int
) -> PriorTargets:
    """MaxIoUAssigner (threshold 0.4, forced step) with every anchor on one level."""
    return MaxIoUAssigner()(Priors(anchors, (anchors.shape[0],)), boxes, class_ids, num_classes)


def reference_match(anchors: torch.Tensor, boxes: torch.Tensor, threshold: float) -> list[int]:
    """The seed's per-image loops (d2l's assign_anchor_to_bbox), forcing positive IoUs only."""
    num_boxes = boxes.shape[0]
    matched = [-1] * anchors.shape[0]
    if num_boxes == 0:
        return matched
    iou = box_iou(anchors, boxes)
    for anchor, row in enumerate(iou.tolist()):
        best = max(range(num_boxes), key=lambda j: row[j])  # first maximum
        if row[best] >= threshold:
            matched[anchor] = best
    for _ in range(num_boxes):
        anchor, box = divmod(int(iou.argmax()), num_boxes)
        if iou[anchor, box] <= 0:
            break
        matched[anchor] = box
        iou[anchor, :] = -1
        iou[:, box] = -1
    return matched


ANCHORS_X3 = strips((0, 4), (4, 8), (8, 12))


def test_threshold_step_takes_every_anchor_above_threshold() -> None:
    anchors = strips((0, 10), (0, 8), (1, 9), (0, 5), (20, 30))
    box = strips((0, 10))  # IoUs 1.0, 0.8, 0.8, 0.5, 0.0
    assert match_one(anchors, box) == [0, 0, 0, 0, -1]
    assert match_one(anchors, box, iou_threshold=0.5) == [0, 0, 0, 0, -1]  # inclusive
    assert match_one(anchors, box, iou_threshold=0.9) == [0, -1, -1, -1, -1]


def test_box_below_threshold_is_forced_to_its_best_anchor() -> None:
    # IoU 0.2 with anchors 0 and 1 (tie: the lower anchor index wins), 0 with anchor 2
    assert match_one(ANCHORS_X3, strips((0, 20))) == [0, -1, -1]
    assert match_one(ANCHORS_X3, strips((0, 20)), force_best=False) == [-1, -1, -1]


def test_two_boxes_competing_for_one_anchor() -> None:
    # box 0: IoU 0.667 with anchor 0, 0.25 with anchor 1; box 1: 0.8 with anchor 0, 0.125 with 1.
    # The global maximum (anchor 0, box 1) goes first; box 0 then gets its next best, anchor 1.
    boxes = strips((0, 6), (0, 5))
    assert match_one(ANCHORS_X3, boxes) == [1, 0, -1]
    assert match_one(ANCHORS_X3, boxes, force_best=False) == [1, -1, -1]


def test_forced_step_overrides_the_threshold_step() -> None:
    anchors = strips((0, 10), (0, 8))
    # anchor 1: IoU 0.8 with box 0, 0.75 with box 1; box 0 is forced to anchor 0 (IoU 1) first,
    # so anchor 1 is the best free anchor of box 1.
    boxes = strips((0, 10), (0, 6))
    assert match_one(anchors, boxes, force_best=False) == [0, 0]
    assert match_one(anchors, boxes) == [0, 1]


def test_ties_take_the_lowest_anchor_then_the_lowest_box() -> None:
    anchors = strips((0, 4), (0, 5), (8, 12))
    boxes = strips((0, 4), (0, 4))  # two identical boxes
    # threshold step: anchors 0 and 1 take box 0; forced: (anchor 0, box 0), then (anchor 1, box 1)
    assert match_one(anchors, boxes, force_best=False) == [0, 0, -1]
    assert match_one(anchors, boxes) == [0, 1, -1]


def test_padding_never_matches_and_empty_images_are_background() -> None:
    boxes = torch.zeros(3, 2, 4)
    boxes[0] = strips((0, 6), (0, 5))
    boxes[1] = strips((0, 6), (0, 4))  # padding, although it overlaps anchors
    boxes[2, 1] = strips((0, 5))[0]
    valid = torch.tensor([[True, True], [False, False], [False, True]])
    matched = match_anchors(ANCHORS_X3, boxes, valid)
    assert matched.dtype == torch.int64
    assert matched.tolist() == [[1, 0, -1], [-1, -1, -1], [1, -1, -1]]


def test_no_ground_truth_slots_at_all() -> None:
    matched = match_anchors(ANCHORS_X3, torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool))
    assert matched.tolist() == [[-1] * 3] * 2
    targets = assign(ANCHORS_X3, torch.zeros(2, 0, 4), torch.zeros(2, 0).long(), 15)
    assert targets.class_targets.tolist() == [[15] * 3] * 2
    assert targets.matched_gt.tolist() == [[-1] * 3] * 2
    for mask in (targets.positive, targets.ignored):
        assert mask.dtype == torch.bool and mask.tolist() == [[False] * 3] * 2
    assert targets.box_targets.shape == (2, 3, 4) and not targets.box_targets.any()


def test_the_assigner_runs_the_rule_with_its_threshold_and_forced_step() -> None:
    box, class_0 = strips((0, 10))[None], torch.tensor([[0]])
    anchors = strips((0, 10), (0, 8), (1, 9), (0, 5), (20, 30))  # IoUs 1, 0.8, 0.8, 0.5, 0
    priors = Priors(anchors, (5,))
    assert MaxIoUAssigner()(priors, box, class_0, 1).matched_gt.tolist() == [[0, 0, 0, 0, -1]]
    strict = MaxIoUAssigner(iou_threshold=0.9)(priors, box, class_0, 1)
    assert strict.matched_gt.tolist() == [[0, -1, -1, -1, -1]]
    wide = strips((0, 20))[None]  # IoU 0.2 with anchors 0 and 1: forced onto anchor 0 only
    priors = Priors(ANCHORS_X3, (3,))
    assert MaxIoUAssigner()(priors, wide, class_0, 1).matched_gt.tolist() == [[0, -1, -1]]
    threshold_only = MaxIoUAssigner(force_best=False)(priors, wide, class_0, 1)
    assert threshold_only.matched_gt.tolist() == [[-1, -1, -1]]


def test_a_box_that_overlaps_no_anchor_is_not_forced() -> None:
    # IoU 0 with every anchor: the seed would force it onto anchor 0; onestage forces none
    assert match_one(ANCHORS_X3, strips((20, 30))) == [-1, -1, -1]
    # nor when the only anchor it overlaps was taken first: box 0 has IoU 1 with anchor 0,
    # box 1 [0, 2] IoU 0.5 with anchor 0 and 0 with the others
    assert match_one(ANCHORS_X3, strips((0, 4), (0, 2))) == [0, -1, -1]


def test_matching_runs_on_the_anchors_device() -> None:
    # the meta device (shapes only) stands in for a GPU: a tensor made on the CPU would not mix
    anchors = ANCHORS_X3.to("meta")
    boxes = strips((0, 6), (0, 5))[None].to("meta")
    class_ids = torch.tensor([[0, 1]], device="meta")
    matched = match_anchors(anchors, boxes, class_ids >= 0)
    assert matched.device.type == "meta" and matched.dtype == torch.int64
    targets = assign(anchors, boxes, class_ids, num_classes=2)
    assert targets.matched_gt.device.type == "meta" and targets.positive.device.type == "meta"


# bfloat16 keeps 8 significant bits: A = 1 - 2**-8 is exact, A * A = 0.99220276 (16 bits) is not.
A = 1 - 2**-8


def test_bfloat16_boxes_are_matched_in_float32() -> None:
    # Box areas rounded to bfloat16 would change both answers (IoU computed in float32 here).
    # Anchor [2**-8, 0, 1, A] against box [0, 0, A, A]: both areas A * A, intersection
    # (A - 2**-8) * A, union 2 A * A - (A - 2**-8) * A = A, IoU = A - 2**-8 = 127 / 128 =
    # 0.9921875, below a threshold of 0.99219. With either area rounded to 0.9921875 the IoU
    # would be 0.98831 / 0.99608 = 0.99220, above it.
    anchors = torch.tensor([[2**-8, 0.0, 1.0, A]])
    boxes = torch.tensor([[[0.0, 0.0, A, A]]])
    valid = torch.ones(1, 1, dtype=torch.bool)
    for dtype in (torch.float32, torch.bfloat16):
        matched = match_anchors(
            anchors.to(dtype), boxes.to(dtype), valid, iou_threshold=0.99219, force_best=False
        )
        assert matched.tolist() == [[-1]], dtype
    # Anchor [0, 0, 1, 1] against box 0 [0, 0, 1, 1 - 2**-7] (IoU 0.9921875) and box 1
    # [0, 0, A, A] (IoU A * A = 0.99220276): box 1. In bfloat16, A * A rounds to 0.9921875: a tie,
    # which box 0 would win.
    anchors = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1 - 2**-7], [0.0, 0.0, A, A]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    for dtype in (torch.float32, torch.bfloat16):
        matched = match_anchors(anchors.to(dtype), boxes.to(dtype), valid, force_best=False)
        assert matched.tolist() == [[1]], dtype


def test_targets_are_the_matched_box_whose_offsets_use_the_given_variances() -> None:
    # box [0, 6] takes anchor [0, 4] (IoU 4 / 6). Centres 3 and 2, widths 6 and 4, heights 1:
    # with variances (1, 1) the offsets are (3 - 2) / 4 = 0.25, 0, log(6 / 4 + 1e-6),
    # log(1 + 1e-6); the default (0.1, 0.2) would give x10 and x5 of these.
    boxes = strips((0, 6))[None]
    targets = assign(ANCHORS_X3, boxes, torch.tensor([[0]]), 1)
    assert targets.positive.tolist() == [[True, False, False]]
    assert torch.equal(targets.box_targets[0, 0], boxes[0, 0])
    assert targets.target_scores.tolist() == [[[1.0], [0.0], [0.0]]]
    offsets = encode_offsets(targets.box_targets[0, 0], ANCHORS_X3[0], (1.0, 1.0))
    expected = torch.tensor([0.25, 0.0, math.log(1.5 + 1e-6), math.log(1 + 1e-6)])
    torch.testing.assert_close(offsets, expected)


ANCHORS = torch.from_numpy(cell_anchors(AnchorLevel(sizes=(0.3, 0.5), ratios=(1.0, 2.0)), 4, 4))


@st.composite
def batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """(4, 5, 4) boxes on a coarse grid (so IoUs tie often) and (4, 5) class ids, -1 = padding."""
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    corners = torch.randint(0, 11, (4, 5, 2, 2), generator=generator).float() / 10
    boxes = torch.cat((corners.min(dim=2).values, corners.max(dim=2).values + 0.1), dim=-1)
    class_ids = torch.randint(0, 3, (4, 5), generator=generator)
    padding = torch.rand(4, 5, generator=generator) < draw(st.sampled_from([0.0, 0.3, 1.0]))
    return boxes, class_ids.masked_fill(padding, -1)


@settings(deadline=None, max_examples=50)
@given(batches(), st.sampled_from([0.4, 0.5]))
def test_batched_matching_equals_the_per_image_seed_rule(
    batch: tuple[torch.Tensor, torch.Tensor], threshold: float
) -> None:
    boxes, class_ids = batch
    valid = class_ids >= 0
    matched = match_anchors(ANCHORS, boxes, valid, iou_threshold=threshold)
    for image in range(boxes.shape[0]):
        slots = valid[image].nonzero()[:, 0]
        expected = reference_match(ANCHORS, boxes[image, slots], threshold)
        expected = [int(slots[j]) if j >= 0 else -1 for j in expected]
        assert matched[image].tolist() == expected
        solo = match_anchors(ANCHORS, boxes[image : image + 1], valid[image : image + 1], threshold)
        assert solo[0].tolist() == expected


@settings(deadline=None, max_examples=50)
@given(batches())
def test_targets_follow_the_matches(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    boxes, class_ids = batch
    targets = assign(ANCHORS, boxes, class_ids, num_classes=3)
    assert targets.matched_gt.tolist() == match_anchors(ANCHORS, boxes, class_ids >= 0).tolist()
    assert targets.positive.tolist() == (targets.matched_gt >= 0).tolist()
    for image, anchor in targets.positive.nonzero().tolist():
        slot = int(targets.matched_gt[image, anchor])
        assert targets.class_targets[image, anchor] == class_ids[image, slot] >= 0
        assert torch.equal(targets.box_targets[image, anchor], boxes[image, slot])
        expected = encode_offsets(boxes[image, slot], ANCHORS[anchor])
        offsets = encode_offsets(targets.box_targets[image, anchor], ANCHORS[anchor])
        torch.testing.assert_close(offsets, expected)
    background = ~targets.positive
    assert (targets.class_targets[background] == 3).all()
    assert not targets.box_targets[background].any()


def test_targets_with_the_seeds_background_index() -> None:
    boxes = torch.stack((strips((0, 6), (0, 5)), torch.zeros(2, 4)))  # image 1: no objects
    class_ids = torch.tensor([[7, 2], [-1, -1]])
    targets = assign(ANCHORS_X3, boxes, class_ids, num_classes=15)
    assert targets.class_targets.tolist() == [[2, 7, 15], [15, 15, 15]]
    assert targets.box_targets.dtype == torch.float32
    half = assign(ANCHORS_X3.bfloat16(), boxes, class_ids, num_classes=15)
    assert half.box_targets.dtype == torch.bfloat16
    assert half.class_targets.tolist() == targets.class_targets.tolist()


def test_anchors_matched_to_an_ignored_object_are_neither_positive_nor_negative():
    # a0 and a1 overlap the ignored box (class -2) above the threshold, a2 the real box,
    # a3 nothing. The ignored box is never forced, so a1 (IoU 0.45 with it) is not taken.
    anchors = strips((0.0, 0.2), (0.02, 0.2), (0.6, 0.8), (0.9, 1.0))
    boxes = strips((0.0, 0.2), (0.6, 0.8))[None]  # (1, 2, 4)
    targets = assign(anchors, boxes, torch.tensor([[-2, 1]]), num_classes=3)
    assert targets.positive.tolist() == [[False, False, True, False]]
    assert targets.ignored.tolist() == [[True, True, False, False]]
    assert targets.class_targets.tolist() == [[3, 3, 1, 3]]
    assert targets.box_targets[0, :2].abs().sum() == 0


def test_an_ignored_object_is_matched_by_threshold_only_and_never_forced():
    anchors = strips((0.0, 0.3), (0.5, 0.7))
    boxes = strips((0.0, 0.1))[None]  # IoU 1/3 with a0: below the threshold
    ignored = assign(anchors, boxes, torch.tensor([[-2]]), num_classes=3)
    assert not ignored.positive.any() and not ignored.ignored.any()  # plain background
    real = assign(anchors, boxes, torch.tensor([[0]]), num_classes=3)
    assert real.positive.tolist() == [[True, False]]  # the real box is forced onto a0


def test_a_real_object_wins_its_forced_anchor_over_an_ignored_one():
    anchors = strips((0.0, 0.2), (0.5, 0.7))
    boxes = strips((0.0, 0.2), (0.0, 0.18))[None]  # ignored (IoU 1), real (IoU 0.9)
    targets = assign(anchors, boxes, torch.tensor([[-2, 0]]), num_classes=3)
    assert targets.positive.tolist() == [[True, False]]
    assert targets.ignored.tolist() == [[False, False]]
    assert targets.matched_gt.tolist() == [[1, -1]]
