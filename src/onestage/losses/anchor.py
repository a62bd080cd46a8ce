"""Losses of anchor-based heads: "seed", "ssd" and "focal" in `losses.LOSSES`.

Each is called like every loss (`losses.common`): `loss(pred, targets, coding)`. It encodes the
assigner's matched boxes as SSD offsets against the coding's anchors with the coding's variances
(`priors.offsets.encode_offsets`), 0 off the positive anchors, and computes `terms` from
per-anchor targets:

- `pred` (B, A, 4 + K): 4 box offsets, then K = num_classes + 1 class logits, background LAST;
- `class_targets` (B, A) int64 in [0, K), background = K - 1;
- `box_targets` (B, A, 4) encoded offsets, zeros on background;
- `positive` (B, A) bool, the anchors matched to an object;
- `anchors_xyxy` (A, 4) normalised xyxy anchors, needed only by losses that decode boxes (GIoU);
- `ignored` (B, A) bool or None, anchors matched to an ignored object (VOC difficult, COCO
  crowd): left out of every term, as neither positive nor negative;

and returns a dict of scalar tensors: "loss" (what to minimise) = "cls" + "box", so a trainer
can log the parts. All losses compute in float32, whatever dtype the model ran in; none uses
boolean indexing, so they run without host synchronisation and with static shapes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from onestage.assign.common import PriorTargets
from onestage.boxes import elementwise_generalized_box_iou
from onestage.errors import OnestageError
from onestage.losses.common import register_loss
from onestage.priors.codings import AnchorCoding
from onestage.priors.offsets import DEFAULT_VARIANCES, decode_offsets, encode_offsets
from onestage.train_choices import BOX_LOSSES


def _split(pred: Tensor) -> tuple[Tensor, Tensor]:
    """(B, A, 4 + K) -> float32 offsets (B, A, 4) and logits (B, A, K)."""
    pred = pred.float()
    return pred[..., :4], pred[..., 4:]


def _counted(ignored: Tensor | None, positive: Tensor) -> Tensor:
    """(B, A) bool: the anchors that count in the classification term (all but the ignored);
    `positive` (B, A) bool gives the shape."""
    if ignored is None:
        return torch.ones_like(positive)
    return ~ignored


def _focal_modulator(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """(1 - p_t) ** gamma for sigmoid `logits` and 0/1 `targets` of the same shape.

    1 - p_t = sigmoid(-logit) for target 1 and sigmoid(logit) for target 0, so the power is
    computed as exp(gamma * logsigmoid(+-logit)): finite, with finite gradients, for every
    gamma >= 0 and every logit. The direct form rounds 1 - p_t to 0 for a confident logit
    (20 in float32), where x ** gamma with gamma < 1 has an infinite slope: NaN gradients.
    """
    return torch.exp(gamma * F.logsigmoid(logits * (1 - 2 * targets)))


def _per_anchor_cross_entropy(logits: Tensor, class_targets: Tensor) -> Tensor:
    """Softmax cross-entropy per anchor: (B, A, K) logits, (B, A) targets -> (B, A)."""
    return F.cross_entropy(logits.transpose(1, 2), class_targets, reduction="none")


@dataclass(frozen=True)
class AnchorLoss(ABC):
    """The call every anchor loss shares (see the module docstring); subclasses give `terms`."""

    box_coding: ClassVar[str] = "anchors"
    score_mode: ClassVar[str] = "softmax"  # how the head it trains scores (background last)

    def __call__(
        self, pred: Tensor, targets: PriorTargets, coding: AnchorCoding
    ) -> dict[str, Tensor]:
        """pred (B, A, 4 + K), an assigner's targets (matched boxes) -> named scalar parts."""
        anchors = coding.priors().boxes  # (A, 4) normalised xyxy
        offsets = encode_offsets(targets.box_targets, anchors, coding.variances)  # (B, A, 4)
        return self.terms(
            pred,
            targets.class_targets,
            offsets.masked_fill(~targets.positive[..., None], 0.0),
            targets.positive,
            anchors_xyxy=anchors,
            ignored=targets.ignored,
        )

    @abstractmethod
    def terms(
        self,
        pred: Tensor,
        class_targets: Tensor,
        box_targets: Tensor,
        positive: Tensor,
        anchors_xyxy: Tensor | None = None,
        ignored: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The loss from per-anchor targets, box_targets encoded (see the module docstring)."""


@dataclass(frozen=True)
class _BoxTerm(AnchorLoss):
    """Options shared by the losses that offer two box terms, and that term.

    "smooth_l1": smooth-L1 (`beta`) of the offsets, summed over the 4 values of each anchor.
    "giou": 1 - GIoU of the boxes decoded (with `variances`) from prediction and target.
    """

    beta: float = 1.0
    box_loss: str = "smooth_l1"
    variances: tuple[float, float] = DEFAULT_VARIANCES

    def __post_init__(self) -> None:
        if self.box_loss not in BOX_LOSSES:
            raise OnestageError(
                f"unknown box loss {self.box_loss!r}; valid: {', '.join(BOX_LOSSES)}"
            )

    def box_sum(
        self, offsets: Tensor, box_targets: Tensor, positive: Tensor, anchors_xyxy: Tensor | None
    ) -> Tensor:
        """Box loss summed over the positive anchors: offsets, targets (B, A, 4) -> scalar."""
        box_targets = box_targets.float()
        if self.box_loss == "smooth_l1":
            per_anchor = F.smooth_l1_loss(offsets, box_targets, beta=self.beta, reduction="none")
            per_anchor = per_anchor.sum(-1)  # (B, A)
        else:
            if anchors_xyxy is None:
                raise ValueError("the GIoU box loss needs anchors_xyxy to decode the offsets")
            anchors = anchors_xyxy.to(offsets)  # (A, 4), broadcast over the batch
            predicted = decode_offsets(offsets, anchors, self.variances)  # (B, A, 4) xyxy
            target = decode_offsets(box_targets, anchors, self.variances)  # (B, A, 4) xyxy
            per_anchor = 1.0 - elementwise_generalized_box_iou(predicted, target)  # (B, A)
        return torch.where(positive, per_anchor, 0.0).sum()


@register_loss("seed")
@dataclass(frozen=True)
class SeedLoss(AnchorLoss):
    """The seed's loss, exactly: no mining, no normalisation by the number of positives.

    cls = softmax cross-entropy averaged over all B * A anchors, background included (ignored
    anchors count as zero).
    box = squared offset error on positive anchors, averaged over all B * A * 4 values
    (background entries count as zero error, as in the seed's masked Keras MSE).
    """

    def terms(
        self,
        pred: Tensor,
        class_targets: Tensor,
        box_targets: Tensor,
        positive: Tensor,
        anchors_xyxy: Tensor | None = None,
        ignored: Tensor | None = None,
    ) -> dict[str, Tensor]:
        offsets, logits = _split(pred)
        cross_entropy = _per_anchor_cross_entropy(logits, class_targets)  # (B, A)
        cls = torch.where(_counted(ignored, positive), cross_entropy, 0.0).mean()
        squared = (offsets - box_targets.float()).square()  # (B, A, 4)
        box = torch.where(positive[..., None], squared, 0.0).mean()
        return {"loss": cls + box, "cls": cls, "box": box}


@register_loss("ssd")
@dataclass(frozen=True)
class SSDLoss(_BoxTerm):
    """SSD's MultiBox loss: softmax cross-entropy with hard-negative mining, plus a box loss.

    Per image the classification term takes all positive anchors and the background anchors
    with the highest cross-entropy, `neg_pos_ratio` times as many as the positives but at least
    `min_negatives` (and at most all of them). The floor matters for images without objects:
    with 3 x 0 negatives (torchvision's choice) they would never teach "background"; 8 is about
    what an image with a single small object (2-3 positive anchors) gets. Both terms are summed
    and divided by the number of positive anchors in the batch (at least 1). The box term is
    smooth-L1 on the offsets (`beta`) or, with `box_loss="giou"`, 1 - GIoU of decoded boxes.
    """

    neg_pos_ratio: float = 3.0
    min_negatives: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.neg_pos_ratio < 0 or self.min_negatives < 0:
            raise OnestageError("neg_pos_ratio and min_negatives must not be negative")

    def hard_negatives(
        self, cross_entropy: Tensor, positive: Tensor, ignored: Tensor | None = None
    ) -> Tensor:
        """(B, A) bool: the background anchors kept for classification, per image (never an
        ignored anchor)."""
        not_negative = positive if ignored is None else positive | ignored  # (B, A)
        num_positive = positive.sum(dim=1)  # (B,)
        num_negative = (num_positive * self.neg_pos_ratio).long().clamp(min=self.min_negatives)
        num_negative = torch.minimum(num_negative, positive.shape[1] - not_negative.sum(dim=1))
        # Rank the background anchors by loss, highest first; positives and ignored rank last.
        candidates = cross_entropy.detach().masked_fill(not_negative, float("-inf"))
        order = candidates.argsort(dim=1, descending=True, stable=True)
        rank = order.argsort(dim=1)  # (B, A): each anchor's place in `order`
        return rank < num_negative[:, None]

    def terms(
        self,
        pred: Tensor,
        class_targets: Tensor,
        box_targets: Tensor,
        positive: Tensor,
        anchors_xyxy: Tensor | None = None,
        ignored: Tensor | None = None,
    ) -> dict[str, Tensor]:
        offsets, logits = _split(pred)
        normaliser = positive.sum().clamp(min=1)
        cross_entropy = _per_anchor_cross_entropy(logits, class_targets)  # (B, A)
        kept = positive | self.hard_negatives(cross_entropy, positive, ignored)
        cls = torch.where(kept, cross_entropy, 0.0).sum() / normaliser
        box = self.box_sum(offsets, box_targets, positive, anchors_xyxy) / normaliser
        return {"loss": cls + box, "cls": cls, "box": box}


@register_loss("focal")
@dataclass(frozen=True)
class FocalLoss(_BoxTerm):
    """RetinaNet's loss: sigmoid focal loss over the object classes, plus a box loss.

    Each of the first K - 1 logits is a separate sigmoid classifier with a one-hot target
    (background anchors: all zeros; the background logit is unused). Per logit:
    alpha_t * (1 - p_t) ** gamma * BCE, with p_t = p for target 1 and 1 - p for target 0, and
    alpha_t = alpha for target 1, 1 - alpha for 0. Summed over all anchors (but the ignored
    ones) and classes, so empty images still count, and divided by the number of positive
    anchors in the batch (at least 1), like the box term: smooth-L1 on the offsets (`beta`) or
    1 - GIoU of decoded boxes ("giou").
    """

    score_mode: ClassVar[str] = "sigmoid"

    alpha: float = 0.25
    gamma: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0 or self.gamma < 0:
            raise OnestageError("focal loss needs 0 <= alpha <= 1 and gamma >= 0")

    def terms(
        self,
        pred: Tensor,
        class_targets: Tensor,
        box_targets: Tensor,
        positive: Tensor,
        anchors_xyxy: Tensor | None = None,
        ignored: Tensor | None = None,
    ) -> dict[str, Tensor]:
        offsets, logits = _split(pred)
        normaliser = positive.sum().clamp(min=1)
        object_logits = logits[..., :-1]  # (B, A, K - 1)
        targets = F.one_hot(class_targets, logits.shape[-1])[..., :-1].float()  # (B, A, K - 1)
        bce = F.binary_cross_entropy_with_logits(object_logits, targets, reduction="none")
        alpha_t = self.alpha * targets + (1 - self.alpha) * (1 - targets)
        modulator = _focal_modulator(object_logits, targets, self.gamma)  # (1 - p_t) ** gamma
        per_logit = alpha_t * modulator * bce  # (B, A, K - 1)
        counted = _counted(ignored, positive)[..., None]  # (B, A, 1)
        cls = torch.where(counted, per_logit, 0.0).sum() / normaliser
        box = self.box_sum(offsets, box_targets, positive, anchors_xyxy) / normaliser
        return {"loss": cls + box, "cls": cls, "box": box}
