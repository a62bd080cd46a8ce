"""Detection losses against hand-computed values on tiny tensors (K = 3: two classes + bg)."""

from __future__ import annotations

import math

import pytest
import torch

from onestage.assign import PriorTargets
from onestage.errors import OnestageError
from onestage.losses import (
    LOSSES,
    FocalLoss,
    SSDLoss,
    build_loss,
    loss_names,
    loss_score_mode,
)
from onestage.priors.codings import AnchorCoding
from onestage.priors.offsets import encode_offsets

BACKGROUND = 2


def make_pred(offsets: list, logits: list) -> torch.Tensor:
    """(B, A, 4 + K) from nested lists of offsets (B, A, 4) and logits (B, A, K)."""
    return torch.cat((torch.tensor(offsets), torch.tensor(logits)), dim=-1)


def reference_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target], per anchor, written out."""
    picked = logits.gather(-1, targets[..., None]).squeeze(-1)
    return torch.logsumexp(logits, dim=-1) - picked


def test_registry_and_options() -> None:
    assert loss_names() == ["focal", "quality", "seed", "ssd"]
    fits = {name: LOSSES.get(name).box_coding for name in loss_names()}
    assert fits == {"focal": "anchors", "quality": "points", "seed": "anchors", "ssd": "anchors"}
    assert build_loss("ssd", neg_pos_ratio=2.0).neg_pos_ratio == 2.0
    with pytest.raises(OnestageError, match="valid names: focal, quality, seed, ssd"):
        build_loss("yolo")
    with pytest.raises(OnestageError, match="min_negatives"):
        build_loss("ssd", min_negative=4)
    with pytest.raises(OnestageError, match="valid options: none"):
        build_loss("seed", beta=1.0)
    with pytest.raises(OnestageError, match="giou"):
        build_loss("focal", box_loss="l2")


def test_each_loss_says_how_the_head_it_trains_scores() -> None:
    modes = {name: loss_score_mode(name) for name in loss_names()}
    assert modes == {"focal": "sigmoid", "quality": "sigmoid", "seed": "softmax", "ssd": "softmax"}
    with pytest.raises(OnestageError, match="valid names: focal, quality, seed, ssd"):
        loss_score_mode("yolo")


@pytest.mark.parametrize(
    ("name", "options"),
    [("seed", {}), ("ssd", {"box_loss": "giou", "variances": (0.2, 0.4)}), ("focal", {})],
)
def test_a_loss_encodes_the_matched_boxes_against_the_codings_anchors(
    name: str, options: dict
) -> None:
    # The call of every loss: the assigner's matched boxes become offsets against the coding's
    # anchors with its variances, 0 off the positives; the terms take them with the anchors and
    # the ignored mask. Anchor 0 is positive, 1 background, 2 ignored.
    anchors = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.8], [0.0, 0.2, 0.6, 0.4]])
    coding = AnchorCoding(anchors, (3,), variances=(0.2, 0.4))
    box = torch.tensor([0.12, 0.08, 0.35, 0.3])
    targets = PriorTargets(
        class_targets=torch.tensor([[0, BACKGROUND, BACKGROUND]]),
        box_targets=torch.stack((box, torch.zeros(4), torch.zeros(4)))[None],
        target_scores=torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]]),
        positive=torch.tensor([[True, False, False]]),
        ignored=torch.tensor([[False, False, True]]),
        matched_gt=torch.tensor([[0, -1, 1]]),
    )
    pred = torch.randn(1, 3, 4 + 3, generator=torch.Generator().manual_seed(0))
    offsets = torch.zeros(1, 3, 4)
    offsets[0, 0] = encode_offsets(box, anchors[0], (0.2, 0.4))
    loss = build_loss(name, **options)
    expected = loss.terms(
        pred, targets.class_targets, offsets, targets.positive, anchors, targets.ignored
    )
    got = loss(pred, targets, coding)
    assert got.keys() == expected.keys()
    for part in got:
        assert torch.equal(got[part], expected[part]), part


def test_seed_loss_matches_a_manual_computation() -> None:
    # CE: ln 3 (uniform), ln 2 (p = 2/4), ln(5/3) (p = 3/5): mean = ln(10) / 3.
    logits = [[[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0], [0.0, 0.0, math.log(3)]]]
    offsets = [[[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]]]
    class_targets = torch.tensor([[0, 0, BACKGROUND]])
    positive = class_targets != BACKGROUND
    parts = build_loss("seed").terms(
        make_pred(offsets, logits), class_targets, torch.zeros(1, 3, 4), positive
    )
    assert parts["cls"].item() == pytest.approx(math.log(10) / 3, rel=1e-6)
    # Squared errors 1 and 4 on the positives; the background's 5s are masked; 12 values.
    assert parts["box"].item() == pytest.approx(5 / 12, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(math.log(10) / 3 + 5 / 12, rel=1e-6)


def test_ssd_picks_the_highest_loss_negatives() -> None:
    cross_entropy = torch.tensor(
        [
            [0.5, 0.9, 0.1, 0.7, 0.3, 0.8],  # 1 positive (anchor 1) -> 3 negatives
            [0.2, 0.6, 0.4, 0.1, 0.9, 0.3],  # no positive -> min_negatives = 2
            [0.2, 0.6, 0.4, 0.1, 0.9, 0.3],  # 2 positives -> 6, capped at the 4 backgrounds
        ]
    )
    positive = torch.zeros(3, 6, dtype=torch.bool)
    positive[0, 1] = True
    positive[2, [1, 4]] = True
    negatives = SSDLoss(neg_pos_ratio=3.0, min_negatives=2).hard_negatives(cross_entropy, positive)
    expected = torch.tensor(
        [
            [True, False, False, True, False, True],
            [False, True, False, False, True, False],
            [True, False, True, True, False, True],
        ]
    )
    assert torch.equal(negatives, expected)


def test_ssd_loss_normalises_by_the_positives_of_the_batch() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 3)
    offsets = torch.zeros(2, 6, 4)
    offsets[0, 1] = torch.tensor([0.5, 2.0, 0.0, 0.0])  # smooth-L1: 0.125 + 1.5
    offsets[1, 0] = torch.tensor([0.0, 0.0, -1.0, 0.0])  # smooth-L1: 0.5
    offsets[1, 3] = 7.0  # a background anchor: no box loss
    class_targets = torch.full((2, 6), BACKGROUND)
    class_targets[0, 1] = 0
    class_targets[1, 0] = 1
    positive = class_targets != BACKGROUND
    loss = SSDLoss(neg_pos_ratio=3.0, min_negatives=0)
    parts = loss.terms(
        torch.cat((offsets, logits), -1), class_targets, torch.zeros(2, 6, 4), positive
    )

    cross_entropy = reference_cross_entropy(logits, class_targets)
    kept = positive.clone()
    for image in range(2):
        background = torch.where(~positive[image])[0]
        top = cross_entropy[image, background].topk(3).indices
        kept[image, background[top]] = True
    assert kept.sum() == 8
    expected_cls = cross_entropy[kept].sum() / 2
    torch.testing.assert_close(parts["cls"], expected_cls)
    assert parts["box"].item() == pytest.approx((0.125 + 1.5 + 0.5) / 2)
    torch.testing.assert_close(parts["loss"], parts["cls"] + parts["box"])


def test_empty_images_still_give_classification_loss() -> None:
    pred = torch.zeros(1, 6, 4 + 3)
    class_targets = torch.full((1, 6), BACKGROUND)
    positive = torch.zeros(1, 6, dtype=torch.bool)
    boxes = torch.zeros(1, 6, 4)
    ssd = SSDLoss(min_negatives=4).terms(pred, class_targets, boxes, positive)
    # Four negatives, each -log(1/3), normalised by max(0 positives, 1).
    assert ssd["cls"].item() == pytest.approx(4 * math.log(3), rel=1e-6)
    assert ssd["box"].item() == 0.0
    focal = build_loss("focal").terms(pred, class_targets, boxes, positive)
    # 6 anchors x 2 classes, logit 0: (1 - alpha) * 0.5 ** 2 * ln 2 each.
    assert focal["cls"].item() == pytest.approx(12 * 0.75 * 0.25 * math.log(2), rel=1e-6)


def test_focal_loss_matches_the_formula() -> None:
    logits = [[[0.0, 0.0, 9.0], [math.log(3), -math.log(3), -4.0]]]
    class_targets = torch.tensor([[0, BACKGROUND]])
    positive = class_targets != BACKGROUND
    pred = make_pred([[[0.0] * 4, [0.0] * 4]], logits).requires_grad_(True)
    parts = FocalLoss(alpha=0.25, gamma=2.0).terms(
        pred, class_targets, torch.zeros(1, 2, 4), positive
    )
    expected = (
        0.25 * 0.5**2 * math.log(2)  # target 1, p = 0.5
        + 0.75 * 0.5**2 * math.log(2)  # target 0, p = 0.5
        + 0.75 * 0.75**2 * math.log(4)  # target 0, p = 0.75
        + 0.75 * 0.25**2 * math.log(4 / 3)  # target 0, p = 0.25
    )
    assert parts["cls"].item() == pytest.approx(expected, rel=1e-6)
    parts["loss"].backward()
    assert torch.count_nonzero(pred.grad[..., 4 + BACKGROUND]) == 0  # the background logit


def test_giou_box_loss_is_zero_for_perfect_predictions() -> None:
    anchors = torch.tensor(
        [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.8], [0.0, 0.2, 0.6, 0.4], [0.2, 0.0, 0.4, 1.0]]
    )
    gt = torch.tensor([[0.12, 0.08, 0.35, 0.3], [0.4, 0.55, 0.85, 0.9]])
    box_targets = torch.zeros(1, 4, 4)
    box_targets[0, :2] = encode_offsets(gt, anchors[:2])
    class_targets = torch.tensor([[0, 1, BACKGROUND, BACKGROUND]])
    positive = class_targets != BACKGROUND
    logits = torch.zeros(1, 4, 3)
    offsets = box_targets.clone()
    offsets[0, 2:] = 3.0  # wrong, but background
    loss = build_loss("focal", box_loss="giou")
    perfect = loss.terms(
        torch.cat((offsets, logits), -1), class_targets, box_targets, positive, anchors
    )
    assert perfect["box"].item() == pytest.approx(0.0, abs=1e-6)
    offsets[0, 0, 0] += 1.0  # shift the first box by 0.1 anchor widths
    shifted = loss.terms(
        torch.cat((offsets, logits), -1), class_targets, box_targets, positive, anchors
    )
    assert shifted["box"].item() > 0.01
    with pytest.raises(ValueError, match="anchors_xyxy"):
        loss.terms(torch.cat((offsets, logits), -1), class_targets, box_targets, positive)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("seed", {}),
        ("ssd", {}),
        ("ssd", {"box_loss": "giou"}),
        ("focal", {}),
        ("focal", {"box_loss": "giou"}),
    ],
)
def test_gradients_are_finite(name: str, options: dict) -> None:
    torch.manual_seed(1)
    anchors = torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.3, 0.2, 0.9, 0.6], [0.0, 0.0, 1.0, 1.0]])
    anchors = anchors.repeat(2, 1)  # (6, 4)
    class_targets = torch.tensor([[0, BACKGROUND, 1, 2, 2, 2], [2, 2, 2, 2, 2, 2]])
    positive = class_targets != BACKGROUND
    box_targets = torch.where(positive[..., None], torch.randn(2, 6, 4), 0.0)
    pred = (10 * torch.randn(2, 6, 7)).bfloat16().requires_grad_(True)
    parts = build_loss(name, **options).terms(pred, class_targets, box_targets, positive, anchors)
    assert set(parts) == {"loss", "cls", "box"}
    assert parts["loss"].dtype == torch.float32
    parts["loss"].backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["seed", "ssd", "focal"])
def test_ignored_anchors_count_in_no_term(name: str) -> None:
    # Anchor 2 is ignored. Whatever its logits, the loss and the other anchors' gradients are
    # those of the same batch where anchor 2 is a perfectly confident background anchor.
    logits = [[[3.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.0], [0.2, 0.1, 0.3]]]
    offsets = [[[0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0] * 4, [0.0] * 4]]
    class_targets = torch.tensor([[0, BACKGROUND, BACKGROUND, BACKGROUND]])
    positive = class_targets != BACKGROUND
    ignored = torch.tensor([[False, False, True, False]])
    loss = build_loss(name, min_negatives=1) if name == "ssd" else build_loss(name)
    loud = make_pred(offsets, logits)
    loud.data[0, 2, 4:] = torch.tensor([9.0, 9.0, -9.0])  # a huge loss if it counted
    loud.requires_grad_(True)
    quiet = make_pred(offsets, logits)
    quiet.data[0, 2, 4:] = torch.tensor([-30.0, -30.0, 30.0])  # confident background: ~0 loss
    quiet.requires_grad_(True)
    ignored_parts = loss.terms(loud, class_targets, torch.zeros(1, 4, 4), positive, ignored=ignored)
    quiet_parts = loss.terms(quiet, class_targets, torch.zeros(1, 4, 4), positive)
    assert ignored_parts["cls"].item() == pytest.approx(quiet_parts["cls"].item(), abs=1e-6)
    ignored_parts["loss"].backward()
    quiet_parts["loss"].backward()
    assert loud.grad[0, 2].abs().sum() == 0
    keep = [0, 1, 3]
    torch.testing.assert_close(loud.grad[0, keep], quiet.grad[0, keep], atol=1e-6, rtol=0)


def test_ssd_never_mines_an_ignored_anchor_as_a_hard_negative() -> None:
    cross_entropy = torch.tensor([[0.5, 0.9, 0.1, 0.7, 0.3, 0.8]])
    positive = torch.tensor([[False, True, False, False, False, False]])
    ignored = torch.tensor([[False, False, False, False, False, True]])  # the hardest negative
    mined = SSDLoss(neg_pos_ratio=3.0, min_negatives=0).hard_negatives(
        cross_entropy, positive, ignored
    )
    assert mined.tolist() == [[True, False, False, True, True, False]]


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 0.9, 1.0, 1.5, 2.0, 5.0])
def test_focal_gradients_stay_finite_for_confident_logits(gamma: float) -> None:
    # logit 20 on the right class (p_t rounds to 1 in float32) and -20 / 100 on the others:
    # with gamma < 1, d/dx (1 - p_t) ** gamma is infinite at 1 - p_t = 0.
    logits = [[[20.0, -20.0, 0.0], [100.0, -100.0, 0.0], [-20.0, 20.0, 0.0]]]
    pred = make_pred([[[0.0] * 4] * 3], logits).requires_grad_(True)
    class_targets = torch.tensor([[0, 0, BACKGROUND]])
    parts = FocalLoss(gamma=gamma).terms(
        pred, class_targets, torch.zeros(1, 3, 4), class_targets < 2
    )
    parts["loss"].backward()
    assert torch.isfinite(parts["loss"]) and torch.isfinite(pred.grad).all()
    # anchor 2 is background with a confident wrong logit 20: its class-1 term is by hand
    # (1 - alpha) * p ** gamma * BCE = 0.75 * sigmoid(20) ** gamma * softplus(20)
    expected = 0.75 * torch.sigmoid(torch.tensor(20.0)) ** gamma * math.log1p(math.exp(20))
    assert parts["cls"].item() == pytest.approx(expected.item() / 2, rel=1e-4)


def test_focal_loss_values_equal_the_direct_formula_where_it_is_finite() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 50, 4, generator=generator) * 3
    class_targets = torch.randint(0, 4, (2, 50), generator=generator)
    pred = torch.cat((torch.zeros(2, 50, 4), logits), dim=-1)
    for gamma in (0.5, 2.0):
        parts = FocalLoss(gamma=gamma).terms(
            pred, class_targets, torch.zeros(2, 50, 4), class_targets < 3
        )
        targets = torch.nn.functional.one_hot(class_targets, 4)[..., :3].float()
        p = logits[..., :3].sigmoid()
        p_t = p * targets + (1 - p) * (1 - targets)
        alpha_t = 0.25 * targets + 0.75 * (1 - targets)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[..., :3], targets, reduction="none"
        )
        direct = (alpha_t * (1 - p_t) ** gamma * bce).sum() / (class_targets < 3).sum()
        assert parts["cls"].item() == pytest.approx(direct.item(), rel=1e-5)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("ssd", {"neg_pos_ratio": -1.0}, "neg_pos_ratio and min_negatives must not be negative"),
        ("ssd", {"min_negatives": -1}, "neg_pos_ratio and min_negatives must not be negative"),
        ("focal", {"alpha": -0.1}, "focal loss needs 0 <= alpha <= 1 and gamma >= 0"),
        ("focal", {"alpha": 1.5}, "focal loss needs 0 <= alpha <= 1 and gamma >= 0"),
        ("focal", {"gamma": -0.5}, "focal loss needs 0 <= alpha <= 1 and gamma >= 0"),
        ("focal", {"box_loss": "l2"}, "unknown box loss 'l2'; valid: smooth_l1, giou"),
        ("ssd", {"box_loss": "iou"}, "unknown box loss 'iou'; valid: smooth_l1, giou"),
    ],
)
def test_out_of_range_options_are_refused_in_one_line(
    name: str, options: dict, message: str
) -> None:
    with pytest.raises(OnestageError) as raised:
        build_loss(name, **options)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("options", "times_log_2"),
    [
        # One positive anchor (class 0 of K = 3), logits 0: p = 1/2, (1 - p_t)^2 = 1/4 and
        # BCE = log 2 for both object logits (targets 1 and 0). Per logit alpha_t / 4 log 2:
        ({"alpha": 1.0}, 0.25),  # 1 / 4 (target 1) + 0 (target 0)
        ({"alpha": 0.0}, 0.25),  # 0 (target 1) + 1 / 4 (target 0)
        ({"gamma": 0.0}, 1.0),  # no modulator: 0.25 + 0.75, alpha-weighted BCE
    ],
)
def test_focal_accepts_the_ends_of_its_ranges(options: dict, times_log_2: float) -> None:
    pred = torch.zeros(1, 1, 4 + 3)
    class_targets = torch.tensor([[0]])
    parts = FocalLoss(**options).terms(pred, class_targets, torch.zeros(1, 1, 4), class_targets < 2)
    assert parts["cls"].item() == pytest.approx(times_log_2 * math.log(2), rel=1e-6)


def test_ssd_mines_by_a_fractional_or_zero_ratio() -> None:
    # 2 positives (anchors 0, 1) and 4 backgrounds of losses 0.4, 0.1, 0.3, 0.2:
    # ratio 0.5 -> int(2 x 0.5) = 1 negative (the 0.4); ratio 0 with a floor of 2 -> 2 of them.
    cross_entropy = torch.tensor([[0.9, 0.9, 0.4, 0.1, 0.3, 0.2]])
    positive = torch.tensor([[True, True, False, False, False, False]])
    half = SSDLoss(neg_pos_ratio=0.5, min_negatives=0).hard_negatives(cross_entropy, positive)
    assert half.tolist() == [[False, False, True, False, False, False]]
    floor = SSDLoss(neg_pos_ratio=0.0, min_negatives=2).hard_negatives(cross_entropy, positive)
    assert floor.tolist() == [[False, False, True, False, True, False]]


def test_ssd_breaks_ties_between_negatives_by_anchor_index() -> None:
    # 20 background anchors of equal loss, 3 to mine: the first three, on every run.
    mined = SSDLoss(min_negatives=3).hard_negatives(
        torch.ones(1, 20), torch.zeros(1, 20, dtype=torch.bool)
    )
    assert mined[0].nonzero().flatten().tolist() == [0, 1, 2]


def test_focal_box_term_is_smooth_l1_with_beta_over_the_positives() -> None:
    # Two positive anchors (classes 0 and 1 of K = 3), beta 0.5. Smooth-L1 with beta b is
    # 0.5 d^2 / b for |d| < b, else |d| - b / 2: anchor 0 misses by 0.25 -> 0.0625, anchor 1
    # by 2 -> 1.75 (targets are not zero: the error is offset - target). box = 1.8125 / 2.
    # cls at logits 0: per anchor 0.25 (1 / 4) log 2 + 0.75 (1 / 4) log 2 = log 2 / 4, / 2.
    offsets = torch.tensor([[[1.25, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, -1.0]]])
    box_targets = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0]]])
    pred = torch.cat((offsets, torch.zeros(1, 2, 3)), dim=-1)
    class_targets = torch.tensor([[0, 1]])
    parts = FocalLoss(beta=0.5).terms(pred, class_targets, box_targets, class_targets < 2)
    assert parts["box"].item() == pytest.approx(1.8125 / 2, rel=1e-6)
    assert parts["cls"].item() == pytest.approx(math.log(2) / 4, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(1.8125 / 2 + math.log(2) / 4, rel=1e-6)


def test_seed_box_term_is_the_squared_error_against_the_targets() -> None:
    # One positive anchor, offsets (1, 0, 0, 0) against targets (0.5, 0, 0, -1): squared errors
    # 0.25 + 1 over the 4 values; the background anchor's 4 values count as zero: 1.25 / 8.
    offsets = [[[1.0, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 3.0]]]
    pred = make_pred(offsets, [[[0.0] * 3] * 2])
    box_targets = torch.tensor([[[0.5, 0.0, 0.0, -1.0], [0.0] * 4]])
    class_targets = torch.tensor([[0, BACKGROUND]])
    parts = build_loss("seed").terms(pred, class_targets, box_targets, class_targets != BACKGROUND)
    assert parts["box"].item() == pytest.approx(1.25 / 8, rel=1e-6)


def test_giou_box_term_decodes_with_the_loss_variances_in_float32() -> None:
    # Anchor (0.25, 0.25, 0.75, 0.75), target offsets 0: the target box is the anchor. The
    # prediction's width offset log(2) / 0.5 doubles the width with size variance 0.5:
    # (0, 0.25, 1, 0.75), which contains the target: GIoU = IoU = 0.25 / 0.5, loss 1 / 2.
    # Anchors in float64 still give a float32 loss.
    anchors = torch.tensor([[0.25, 0.25, 0.75, 0.75]], dtype=torch.float64)
    offsets = torch.tensor([[[0.0, 0.0, math.log(2) / 0.5, 0.0]]])
    pred = torch.cat((offsets, torch.zeros(1, 1, 3)), dim=-1)
    class_targets = torch.tensor([[0]])
    loss = SSDLoss(box_loss="giou", variances=(0.1, 0.5))
    parts = loss.terms(pred, class_targets, torch.zeros(1, 1, 4), class_targets < 2, anchors)
    assert parts["box"].item() == pytest.approx(0.5, rel=1e-6)
    assert parts["box"].dtype == torch.float32
    # offsets = targets (non-zero): perfect only if both sides decode with the same variances
    box_targets = offsets.clone()
    perfect = loss.terms(pred, class_targets, box_targets, class_targets < 2, anchors)
    assert perfect["box"].item() == pytest.approx(0.0, abs=1e-6)


def test_giou_without_anchors_says_what_it_needs() -> None:
    pred = torch.zeros(1, 1, 4 + 3)
    with pytest.raises(ValueError) as raised:
        build_loss("ssd", box_loss="giou").terms(
            pred, torch.tensor([[0]]), torch.zeros(1, 1, 4), torch.tensor([[True]])
        )
    assert str(raised.value) == "the GIoU box loss needs anchors_xyxy to decode the offsets"
