"""The anchor-free quality loss by hand, and the criterion that joins each head to its assigner."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch

from onestage.assign import build_targets
from onestage.assigners import TaskAlignedAssigner
from onestage.assigners.common import PriorTargets
from onestage.box_coding import AnchorCoding, PointCoding, cell_points
from onestage.boxes import encode_offsets
from onestage.config import TrainConfig
from onestage.criterion import build_criterion, criterion_for
from onestage.errors import OnestageError
from onestage.losses import build_loss
from onestage.quality_loss import QualityLoss


def one_point(reg_max: int) -> PointCoding:
    """One 1x1 level: the point (0.5, 0.5), stride 1."""
    points, strides = cell_points(((1, 1),))
    return PointCoding(points, strides, (1,), reg_max)


def targets(score: float, box: list[float], positive: bool = True) -> PriorTargets:
    """One image, one prior, two classes; the prior takes class 0 with `score`."""
    return PriorTargets(
        class_targets=torch.tensor([[0 if positive else 2]]),
        box_targets=torch.tensor([[box if positive else [0.0] * 4]]),
        target_scores=torch.tensor([[[score if positive else 0.0, 0.0]]]),
        positive=torch.tensor([[positive]]),
        ignored=torch.tensor([[False]]),
        matched_gt=torch.tensor([[0 if positive else -1]]),
    )


def test_quality_loss_by_hand():
    # Uniform bins over 0..2: every distance decodes to 1 stride, the box (-0.5, -0.5, 1.5, 1.5).
    # Target box (0, 0, 1, 1), same centre and shape: IoU 1/4, CIoU 1/4, box term 3/4. Its
    # distances are 0.5: DFL = -(0.5 log 1/3 + 0.5 log 1/3) = log 3 per side. Logits 0 against
    # targets (0.8, 0): BCE log 2 each. The prior's weight is its score 0.8; the normaliser
    # S = max(sum of target scores, 1) = 1.
    loss = QualityLoss()
    box_part = torch.zeros(1, 1, 4 * 3)
    logits = torch.zeros(1, 1, 2)
    parts = loss(box_part, logits, one_point(reg_max=2), targets(0.8, [0.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(parts["cls"], torch.tensor(2 * math.log(2)))
    torch.testing.assert_close(parts["box"], torch.tensor(0.8 * 0.75))
    torch.testing.assert_close(parts["dfl"], torch.tensor(0.8 * math.log(3)))
    expected = 0.5 * 2 * math.log(2) + 7.5 * 0.8 * 0.75 + 1.5 * 0.8 * math.log(3)
    torch.testing.assert_close(parts["loss"], torch.tensor(expected))
    # Two such images: S = 1.6 > 1, so every term is the per-image value again.
    one = targets(0.8, [0.0, 0.0, 1.0, 1.0])
    two = PriorTargets(*(torch.cat([getattr(one, f.name)] * 2) for f in fields(one)))
    double = loss(box_part.expand(2, -1, -1), logits.expand(2, -1, -1), one_point(2), two)
    torch.testing.assert_close(double["cls"], torch.tensor(4 * math.log(2) / 1.6))
    torch.testing.assert_close(double["box"], torch.tensor(0.75))
    torch.testing.assert_close(double["dfl"], torch.tensor(math.log(3)))


def test_quality_loss_terms_and_a_background_prior():
    coding = one_point(reg_max=0)  # plain distances: no DFL
    box_part = torch.zeros(1, 1, 4)
    logits = torch.tensor([[[1.0, -1.0]]])
    # background: only the classification term, over S clamped to 1
    parts = QualityLoss()(box_part, logits, coding, targets(0.0, [0.0] * 4, positive=False))
    bce_zero = torch.nn.functional.softplus(torch.tensor([1.0, -1.0])).sum()  # -log(1 - p)
    torch.testing.assert_close(parts["cls"], bce_zero)
    assert parts["box"] == 0 and parts["dfl"] == 0
    # GIoU instead of CIoU: softplus(0) = log 2 each side, box +-log 2 around (0.5, 0.5) contains
    # the target (0.25, 0.25, 0.75, 0.75), so GIoU = IoU = 0.25 / (2 log 2)^2
    giou = QualityLoss(box_loss="giou")(
        box_part, logits, coding, targets(1.0, [0.25, 0.25, 0.75, 0.75])
    )
    torch.testing.assert_close(giou["box"], torch.tensor(1 - 0.25 / (2 * math.log(2)) ** 2))


# At logit 0 (p = 1/2) BCE(p, q) = -(q log p + (1 - q) log(1 - p)) = log 2 whatever q. Against
# the targets q = (0.8, 0) of one prior (a positive at class 0, a negative at class 1), S = 1:
# bce: log 2 + log 2;
# vfl (q BCE where q > 0, alpha p**gamma BCE where q = 0; alpha 0.75, gamma 2):
#     0.8 log 2 + 0.75 / 4 log 2 = 0.9875 log 2;
# qfl (|q - p|**beta BCE, beta 2): 0.3**2 log 2 + 0.5**2 log 2 = 0.34 log 2.
CLASS_TERMS_AT_LOGIT_0 = {"bce": 2.0, "vfl": 0.9875, "qfl": 0.34}


@pytest.mark.parametrize(("name", "times_log_2"), CLASS_TERMS_AT_LOGIT_0.items())
def test_quality_loss_class_terms_by_hand(name: str, times_log_2: float) -> None:
    parts = QualityLoss(cls_loss=name)(
        torch.zeros(1, 1, 4), torch.zeros(1, 1, 2), one_point(0), targets(0.8, [0.0, 0.0, 1.0, 1.0])
    )
    torch.testing.assert_close(parts["cls"], torch.tensor(times_log_2 * math.log(2)))


def test_quality_loss_leaves_ignored_priors_out():
    coding = one_point(reg_max=0)
    ignored = PriorTargets(
        class_targets=torch.tensor([[2]]),
        box_targets=torch.zeros(1, 1, 4),
        target_scores=torch.zeros(1, 1, 2),
        positive=torch.tensor([[False]]),
        ignored=torch.tensor([[True]]),
        matched_gt=torch.tensor([[0]]),
    )
    parts = QualityLoss()(torch.zeros(1, 1, 4), torch.tensor([[[5.0, 5.0]]]), coding, ignored)
    assert parts["loss"] == 0


def test_unknown_loss_terms_are_refused():
    with pytest.raises(OnestageError, match="classification loss 'focal'"):
        QualityLoss(cls_loss="focal")
    with pytest.raises(OnestageError, match="box loss 'smooth_l1'"):
        QualityLoss(box_loss="smooth_l1")


ANCHORS = torch.tensor(
    [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]]
)


def test_the_max_iou_criterion_is_the_seed_targets_into_the_loss():
    coding = AnchorCoding(ANCHORS, (4,))
    criterion = build_criterion(coding, num_classes=2, loss="ssd", iou_threshold=0.5)
    gt_boxes = torch.tensor([[[0.05, 0.0, 0.5, 0.45]]])
    gt_ids = torch.tensor([[1]])
    pred = torch.randn(1, 4, 4 + 3, generator=torch.Generator().manual_seed(0))
    direct = build_targets(ANCHORS, gt_boxes, gt_ids, num_classes=2, iou_threshold=0.5)
    expected = build_loss("ssd")(
        pred, direct.class_targets, direct.box_targets, direct.positive, ANCHORS, direct.ignored
    )
    got = criterion(pred, gt_boxes, gt_ids)
    for name in ("loss", "cls", "box"):
        torch.testing.assert_close(got[name], expected[name])


def test_an_anchor_head_trains_with_atss_on_encoded_offsets():
    coding = AnchorCoding(ANCHORS, (4,))
    criterion = build_criterion(coding, num_classes=2, loss="seed", assigner="atss")
    gt_boxes = torch.tensor([[[0.05, 0.0, 0.5, 0.45]]])  # centre (0.275, 0.225): in anchor 0 only
    pred = torch.zeros(1, 4, 4 + 3)
    got = criterion(pred, gt_boxes, torch.tensor([[1]]))
    # seed loss: cls = mean CE over the 4 anchors, all logits 0 -> log 3; box = mean over the
    # 16 offset values of their squares, only anchor 0's four are non-zero.
    offsets = encode_offsets(gt_boxes[0, 0], ANCHORS[0])
    torch.testing.assert_close(got["cls"], torch.tensor(math.log(3)))
    torch.testing.assert_close(got["box"], offsets.square().sum() / 16)


def test_criterion_for_a_default_config_gives_each_head_its_own_assigner() -> None:
    points = criterion_for(TrainConfig(), one_point(reg_max=2), num_classes=2)
    assert isinstance(points.assigner, TaskAlignedAssigner)
    assert (points.assigner.topk, points.assigner.alpha, points.assigner.beta) == (10, 0.5, 6.0)
    assert points.loss == QualityLoss()  # bce, ciou, weights 0.5, 7.5, 1.5
    anchor_coding = AnchorCoding(ANCHORS, (4,))
    anchors = criterion_for(TrainConfig(iou_threshold=0.6), anchor_coding, num_classes=2)
    assert anchors.assigner is None and anchors.iou_threshold == 0.6  # the seed's max-IoU rule
    assert anchors.loss_name == "seed"
    # TAL asked for by an anchor head: YOLOv8's settings too, not the assigner's (TOOD's)
    tal = criterion_for(TrainConfig(assigner="tal"), anchor_coding, num_classes=2).assigner
    assert tal == TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)


@pytest.mark.parametrize("cls_loss", [None, "vfl", "qfl"])
def test_criterion_for_runs_the_class_term_the_config_names(cls_loss: str | None) -> None:
    # One point (0.5, 0.5), box part 0: softplus(0) = log 2 strides each side, a square of side
    # 2 log 2 around the point. The box [0, 0, 1, 1] lies inside it: IoU u = 1 / (2 log 2)**2 =
    # 0.5203. TAL (one candidate, the only positive) gives it target score t / max t * max u = u
    # at class 0, q = (u, 0); logits 0. As in CLASS_TERMS_AT_LOGIT_0 (S = max(u, 1) = 1):
    # bce 2 log 2, vfl (u + 0.75 / 4) log 2, qfl ((u - 0.5)**2 + 0.5**2) log 2.
    u = 1 / (2 * math.log(2)) ** 2
    expected = {None: 2.0, "vfl": u + 0.1875, "qfl": (u - 0.5) ** 2 + 0.25}[cls_loss]
    criterion = criterion_for(TrainConfig(cls_loss=cls_loss), one_point(reg_max=0), 2)
    parts = criterion(
        torch.zeros(1, 1, 4 + 2), torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]), torch.tensor([[0]])
    )
    torch.testing.assert_close(parts["cls"], torch.tensor(expected * math.log(2)))


def test_the_anchor_free_criterion_uses_tal_by_default():
    points, strides = cell_points(((2, 2),))
    coding = PointCoding(points, strides, (4,), reg_max=0)
    criterion = build_criterion(coding, num_classes=2)
    assert criterion.loss_name == "quality" and criterion.assigner.uses_predictions
    pred = torch.zeros(1, 4, 4 + 2, requires_grad=True)
    parts = criterion(pred, torch.tensor([[[0.0, 0.0, 0.5, 0.5]]]), torch.tensor([[0]]))
    parts["loss"].backward()
    assert parts["box"] > 0 and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize(
    ("points", "loss", "assigner", "message"),
    [
        (True, None, "maxiou", "max-IoU assigner needs anchors"),
        (True, "ssd", None, "loss 'ssd' does not fit an anchor-free head; valid: quality"),
        (False, "quality", None, "loss 'quality' does not fit an anchor-based head"),
        (False, None, "hungarian", "unknown assigner 'hungarian'"),
    ],
)
def test_a_criterion_that_does_not_fit_its_head_is_one_line(points, loss, assigner, message):
    coding = (
        PointCoding(*cell_points(((1, 1),)), (1,), 0) if points else AnchorCoding(ANCHORS, (4,))
    )
    with pytest.raises(OnestageError, match=message):
        build_criterion(coding, num_classes=2, loss=loss, assigner=assigner)
