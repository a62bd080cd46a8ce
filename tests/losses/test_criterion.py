"""The anchor-free quality loss by hand, and the criterion that joins each head to its assigner."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import pytest
import torch

from onestage.assign import (
    MaxIoUAssigner,
    Priors,
    PriorTargets,
    TaskAlignedAssigner,
    build_assigner,
)
from onestage.config import TrainConfig
from onestage.engine.train_settings import criterion_for
from onestage.errors import OnestageError
from onestage.losses import QualityLoss, SeedLoss, build_loss
from onestage.losses.criterion import Criterion, build_criterion
from onestage.priors.codings import AnchorCoding, PointCoding
from onestage.priors.numpy_codings import cell_points
from onestage.priors.offsets import encode_offsets


def one_point(reg_max: int) -> PointCoding:
    """One 1x1 level: the point (0.5, 0.5), stride 1."""
    points, strides = (torch.from_numpy(a) for a in cell_points(((1, 1),)))
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


def run_quality(
    loss: QualityLoss,
    box_part: torch.Tensor,
    logits: torch.Tensor,
    coding: PointCoding,
    targets: PriorTargets,
) -> dict[str, torch.Tensor]:
    """The loss called as the criterion calls it, on the head output of box_part and logits."""
    return loss(torch.cat((box_part, logits), dim=-1), targets, coding)


def test_quality_loss_by_hand():
    # Uniform bins over 0..2: every distance decodes to 1 stride, the box (-0.5, -0.5, 1.5, 1.5).
    # Target box (0, 0, 1, 1), same centre and shape: IoU 1/4, CIoU 1/4, box term 3/4. Its
    # distances are 0.5: DFL = -(0.5 log 1/3 + 0.5 log 1/3) = log 3 per side. Logits 0 against
    # targets (0.8, 0): BCE log 2 each. The prior's weight is its score 0.8; the normaliser
    # S = max(sum of target scores, 1) = 1.
    loss = QualityLoss()
    box_part = torch.zeros(1, 1, 4 * 3)
    logits = torch.zeros(1, 1, 2)
    parts = run_quality(
        loss, box_part, logits, one_point(reg_max=2), targets(0.8, [0.0, 0.0, 1.0, 1.0])
    )
    torch.testing.assert_close(parts["cls"], torch.tensor(2 * math.log(2)))
    torch.testing.assert_close(parts["box"], torch.tensor(0.8 * 0.75))
    torch.testing.assert_close(parts["dfl"], torch.tensor(0.8 * math.log(3)))
    expected = 0.5 * 2 * math.log(2) + 7.5 * 0.8 * 0.75 + 1.5 * 0.8 * math.log(3)
    torch.testing.assert_close(parts["loss"], torch.tensor(expected))
    # Two such images: S = 1.6 > 1, so every term is the per-image value again.
    one = targets(0.8, [0.0, 0.0, 1.0, 1.0])
    two = PriorTargets(*(torch.cat([getattr(one, f.name)] * 2) for f in fields(one)))
    double = run_quality(
        loss, box_part.expand(2, -1, -1), logits.expand(2, -1, -1), one_point(2), two
    )
    torch.testing.assert_close(double["cls"], torch.tensor(4 * math.log(2) / 1.6))
    torch.testing.assert_close(double["box"], torch.tensor(0.75))
    torch.testing.assert_close(double["dfl"], torch.tensor(math.log(3)))


def test_quality_loss_terms_and_a_background_prior():
    coding = one_point(reg_max=0)  # plain distances: no DFL
    box_part = torch.zeros(1, 1, 4)
    logits = torch.tensor([[[1.0, -1.0]]])
    # background: only the classification term, over S clamped to 1
    background = targets(0.0, [0.0] * 4, positive=False)
    parts = run_quality(QualityLoss(), box_part, logits, coding, background)
    bce_zero = torch.nn.functional.softplus(torch.tensor([1.0, -1.0])).sum()  # -log(1 - p)
    torch.testing.assert_close(parts["cls"], bce_zero)
    assert parts["box"] == 0 and parts["dfl"] == 0
    # GIoU instead of CIoU: softplus(0) = log 2 each side, box +-log 2 around (0.5, 0.5) contains
    # the target (0.25, 0.25, 0.75, 0.75), so GIoU = IoU = 0.25 / (2 log 2)^2
    giou = run_quality(
        QualityLoss(box_loss="giou"),
        box_part,
        logits,
        coding,
        targets(1.0, [0.25, 0.25, 0.75, 0.75]),
    )
    torch.testing.assert_close(giou["box"], torch.tensor(1 - 0.25 / (2 * math.log(2)) ** 2))


@pytest.mark.parametrize("box_loss", ["ciou", "giou"])
def test_quality_loss_box_terms_differ_off_centre(box_loss: str) -> None:
    # Box part 0 (reg_max 0): softplus(0) = log 2 strides each side of (0.5, 0.5), a square of
    # side s = 2 log 2 that contains the target (0, 0, 0.5, 0.5): IoU = 0.25 / s^2, and
    # GIoU = IoU (the enclosing box is the prediction). CIoU also takes rho^2 / c^2: centres
    # (0.5, 0.5) and (0.25, 0.25), rho^2 = 0.125, c^2 = 2 s^2; v = 0 (two squares). Score 1.
    side_sq = (2 * math.log(2)) ** 2
    giou_loss = 1 - 0.25 / side_sq
    expected = {"giou": giou_loss, "ciou": giou_loss + 0.125 / (2 * side_sq)}[box_loss]
    parts = run_quality(
        QualityLoss(box_loss=box_loss),
        torch.zeros(1, 1, 4),
        torch.zeros(1, 1, 2),
        one_point(0),
        targets(1.0, [0, 0, 0.5, 0.5]),
    )
    torch.testing.assert_close(parts["box"], torch.tensor(expected))


def test_quality_loss_dfl_with_two_bins() -> None:
    # reg_max 1, bin logits 0: p = (1/2, 1/2), every side decodes to 0.5 stride: the box
    # (0, 0, 1, 1) is the target's, box term 0. Target distances 0.5 each side:
    # DFL = -(0.5 log 1/2 + 0.5 log 1/2) = log 2 per side; weight 0.8, S = 1.
    parts = run_quality(
        QualityLoss(),
        torch.zeros(1, 1, 4 * 2),
        torch.zeros(1, 1, 2),
        one_point(1),
        targets(0.8, [0, 0, 1, 1]),
    )
    torch.testing.assert_close(parts["box"], torch.tensor(0.0))
    torch.testing.assert_close(parts["dfl"], torch.tensor(0.8 * math.log(2)))


def test_quality_loss_dfl_counts_each_positive_by_its_own_sides() -> None:
    # Two images of the one point, bin logits (0, log 2, log 3) on every side: p = (1, 2, 3) / 6.
    # Image 0: a positive (score 0.8), target (-0.5, -0.5, 1.5, 1.5) at distance 1 each side:
    # DFL = -log p1 = log 3 per side. Image 1: a background prior, no DFL at all (its dummy
    # distances 0.5, 0.5, 0, 0 would give other values). S = max(0.8, 1) = 1: dfl = 0.8 log 3.
    box_part = torch.tensor([0.0, math.log(2), math.log(3)] * 4).expand(2, 1, 12)
    one = targets(0.8, [-0.5, -0.5, 1.5, 1.5])
    background = targets(0.0, [0.0] * 4, positive=False)
    both = PriorTargets(
        *(torch.cat((getattr(one, f.name), getattr(background, f.name))) for f in fields(one))
    )
    parts = run_quality(QualityLoss(), box_part, torch.zeros(2, 1, 2), one_point(2), both)
    torch.testing.assert_close(parts["dfl"], torch.tensor(0.8 * math.log(3)))


# At logit 0 (p = 1/2) BCE(p, q) = -(q log p + (1 - q) log(1 - p)) = log 2 whatever q. Against
# the targets q = (0.8, 0) of one prior (a positive at class 0, a negative at class 1), S = 1:
# bce: log 2 + log 2;
# vfl (q BCE where q > 0, alpha p**gamma BCE where q = 0; alpha 0.75, gamma 2):
#     0.8 log 2 + 0.75 / 4 log 2 = 0.9875 log 2;
# qfl (|q - p|**beta BCE, beta 2): 0.3**2 log 2 + 0.5**2 log 2 = 0.34 log 2.
CLASS_TERMS_AT_LOGIT_0 = {"bce": 2.0, "vfl": 0.9875, "qfl": 0.34}


@pytest.mark.parametrize(("name", "times_log_2"), CLASS_TERMS_AT_LOGIT_0.items())
def test_quality_loss_class_terms_by_hand(name: str, times_log_2: float) -> None:
    parts = run_quality(
        QualityLoss(cls_loss=name),
        torch.zeros(1, 1, 4),
        torch.zeros(1, 1, 2),
        one_point(0),
        targets(0.8, [0.0, 0.0, 1.0, 1.0]),
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
    logits = torch.tensor([[[5.0, 5.0]]])
    parts = run_quality(QualityLoss(), torch.zeros(1, 1, 4), logits, coding, ignored)
    assert parts["loss"] == 0


def test_unknown_loss_terms_are_refused():
    with pytest.raises(OnestageError) as raised:
        QualityLoss(cls_loss="focal")
    assert str(raised.value) == (
        "unknown classification loss 'focal' for an anchor-free head; valid: bce, vfl, qfl"
    )
    with pytest.raises(OnestageError) as raised:
        QualityLoss(box_loss="smooth_l1")
    assert str(raised.value) == (
        "unknown box loss 'smooth_l1' for an anchor-free head; valid: ciou, giou"
    )


ANCHORS = torch.tensor(
    [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]]
)


def test_the_max_iou_criterion_is_the_seed_targets_into_the_loss():
    coding = AnchorCoding(ANCHORS, (4,))
    criterion = build_criterion(coding, num_classes=2, loss="ssd", iou_threshold=0.5)
    gt_boxes = torch.tensor([[[0.05, 0.0, 0.5, 0.45]]])
    gt_ids = torch.tensor([[1]])
    pred = torch.randn(1, 4, 4 + 3, generator=torch.Generator().manual_seed(0))
    direct = MaxIoUAssigner(iou_threshold=0.5)(Priors(ANCHORS, (4,)), gt_boxes, gt_ids, 2)
    encoded = encode_offsets(direct.box_targets, ANCHORS)
    offsets = torch.where(direct.positive[..., None], encoded, 0.0)
    expected = build_loss("ssd").terms(
        pred, direct.class_targets, offsets, direct.positive, ANCHORS, direct.ignored
    )
    got = criterion(pred, gt_boxes, gt_ids)
    for name in ("loss", "cls", "box"):
        torch.testing.assert_close(got[name], expected[name])


@dataclass(frozen=True)
class RecordingLoss(SeedLoss):
    """The seed loss, keeping the per-anchor targets it computes its terms from."""

    seen: dict[str, torch.Tensor | None] = field(default_factory=dict, compare=False)

    def terms(
        self,
        pred: torch.Tensor,
        class_targets: torch.Tensor,
        box_targets: torch.Tensor,
        positive: torch.Tensor,
        anchors_xyxy: torch.Tensor | None = None,
        ignored: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        self.seen.update(
            class_targets=class_targets,
            box_targets=box_targets,
            positive=positive,
            anchors_xyxy=anchors_xyxy,
            ignored=ignored,
        )
        return super().terms(pred, class_targets, box_targets, positive, anchors_xyxy, ignored)


# An object over anchors 0 and 1 (IoU 0.5 each) and an ignored one on anchor 2 (IoU 1).
GT_BOXES = torch.tensor([[[0.0, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0]]])
GT_IDS = torch.tensor([[1, -2]])


def test_max_iou_targets_use_the_threshold_variances_and_ignored_anchors() -> None:
    # At the threshold 0.6, anchor 1 (IoU 0.5) is background, and anchor 0 positive only as
    # the object's best anchor; the offsets are encoded with the coding's variances, the ones
    # it decodes with. The default threshold 0.4 takes both anchors.
    coding = AnchorCoding(ANCHORS, (4,), variances=(0.2, 0.4))
    loss = RecordingLoss()
    criterion = Criterion(coding, 2, "seed", loss, MaxIoUAssigner(iou_threshold=0.6))
    criterion(torch.zeros(1, 4, 4 + 3), GT_BOXES, GT_IDS)
    assert loss.seen["positive"].tolist() == [[True, False, False, False]]
    assert loss.seen["ignored"].tolist() == [[False, False, True, False]]
    assert loss.seen["class_targets"].tolist() == [[1, 2, 2, 2]]
    offsets = encode_offsets(GT_BOXES[0, 0], ANCHORS[0], (0.2, 0.4))
    torch.testing.assert_close(loss.seen["box_targets"][0, 0], offsets)
    assert torch.equal(loss.seen["anchors_xyxy"], ANCHORS)
    default = build_criterion(AnchorCoding(ANCHORS, (4,)), num_classes=2)
    default.loss = loss
    default(torch.zeros(1, 4, 4 + 3), GT_BOXES, GT_IDS)
    assert loss.seen["positive"].tolist() == [[True, True, False, False]]


def test_an_assigner_criterion_hands_the_loss_offsets_zero_on_background() -> None:
    # ATSS on an anchor head: positive offsets encoded with the coding's variances, zeros on
    # every other anchor (the loss contract), the anchors, and the ignored anchors.
    # The object (0.05, 0, 0.5, 0.45) has its centre in anchor 0 only.
    gt_boxes = torch.tensor([[[0.05, 0.0, 0.5, 0.45], [0.0, 0.5, 0.5, 1.0]]])
    coding = AnchorCoding(ANCHORS, (4,), variances=(0.2, 0.4))
    assigner = build_assigner("atss")
    loss = RecordingLoss()
    Criterion(coding, 2, "seed", loss, assigner)(torch.zeros(1, 4, 4 + 3), gt_boxes, GT_IDS)
    direct = assigner(coding.priors(), gt_boxes, GT_IDS, 2)
    positive = direct.positive
    assert positive.tolist() == [[True, False, False, False]]
    assert direct.ignored.tolist() == [[False, False, True, False]]
    assert torch.equal(loss.seen["positive"], positive)
    assert torch.equal(loss.seen["ignored"], direct.ignored)
    encoded = encode_offsets(direct.box_targets, ANCHORS, (0.2, 0.4))
    expected = torch.where(positive[..., None], encoded, 0.0)
    torch.testing.assert_close(loss.seen["box_targets"], expected)
    assert torch.equal(loss.seen["anchors_xyxy"], ANCHORS)


def test_loss_options_reach_an_anchor_loss() -> None:
    coding = AnchorCoding(ANCHORS, (4,))
    built = build_criterion(coding, 2, loss="ssd", loss_options={"box_loss": "giou", "beta": 0.5})
    assert built.loss == build_loss("ssd", box_loss="giou", beta=0.5)
    config = TrainConfig(loss="focal", box_loss="giou")
    from_config = criterion_for(config, AnchorCoding(ANCHORS, (4,), "sigmoid"), num_classes=2)
    assert from_config.loss_name == "focal"
    assert from_config.loss == build_loss("focal", box_loss="giou")


def test_a_giou_box_term_decodes_with_the_variances_of_its_head() -> None:
    for loss, score_mode in (("ssd", "softmax"), ("focal", "sigmoid")):
        coding = AnchorCoding(ANCHORS, (4,), score_mode, variances=(0.2, 0.4))
        built = build_criterion(coding, 2, loss=loss, loss_options={"box_loss": "giou"})
        assert built.loss.variances == (0.2, 0.4)
    coding = AnchorCoding(ANCHORS, (4,), variances=(0.2, 0.4))
    chosen = build_criterion(coding, 2, loss="ssd", loss_options={"variances": (0.3, 0.3)})
    assert chosen.loss.variances == (0.3, 0.3)  # an explicit option wins
    assert not hasattr(build_criterion(coding, 2, loss="seed").loss, "variances")


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
    assert anchors.assigner == MaxIoUAssigner(iou_threshold=0.6)  # the seed's max-IoU rule
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
    points, strides = (torch.from_numpy(a) for a in cell_points(((2, 2),)))
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
        (
            True,
            None,
            "maxiou",
            "the max-IoU assigner needs anchors; an anchor-free head takes atss or tal",
        ),
        (True, "ssd", None, "loss 'ssd' does not fit an anchor-free head; valid: quality"),
        (
            False,
            "quality",
            None,
            "loss 'quality' does not fit an anchor-based head; valid: focal, seed, ssd",
        ),
        (False, None, "hungarian", "unknown assigner 'hungarian'; valid: maxiou, atss, tal"),
        (False, "yolo", None, "unknown loss 'yolo'; valid names: focal, quality, seed, ssd"),
    ],
)
def test_a_criterion_that_does_not_fit_its_head_is_one_line(points, loss, assigner, message):
    coding = (
        PointCoding(*map(torch.from_numpy, cell_points(((1, 1),))), (1,), 0)
        if points
        else AnchorCoding(ANCHORS, (4,))
    )
    with pytest.raises(OnestageError) as raised:
        build_criterion(coding, num_classes=2, loss=loss, assigner=assigner)
    assert str(raised.value) == message


@pytest.mark.parametrize(("loss", "score_mode"), [("focal", "softmax"), ("seed", "sigmoid")])
def test_a_loss_trains_only_a_head_built_for_its_score_mode(loss: str, score_mode: str) -> None:
    with pytest.raises(OnestageError) as error:
        build_criterion(AnchorCoding(ANCHORS, (4,), score_mode), 2, loss=loss)
    trains = "sigmoid" if loss == "focal" else "softmax"
    assert str(error.value) == (
        f"loss {loss!r} trains a head that scores by {trains}, but this head was built to "
        f"score by {score_mode}"
    )
