"""Per-element loss terms for quality-aware, anchor-free detectors: no reduction.

- classification: `varifocal_loss` (VFL) and `quality_focal_loss` (QFL), sigmoid logits against
  soft targets q in [0, 1] (an IoU-aware score on positives, 0 on negatives), (..., C) -> (..., C);
- boxes: `ciou_loss` = 1 - CIoU (`onestage.boxes.complete_box_iou`), xyxy (..., 4) -> (...,);
- box distributions: `distribution_focal_loss` (DFL); its decode and the ltrb code between points
  and boxes are the box code's (`onestage.priors.distances`).

None of them knows about heads or assigners: the losses in `losses.quality` combine them
with an assigner's targets, mask and normalise. All compute and return float32, whatever dtype
they are given, and keep values and gradients finite for every allowed input (confident logits,
targets 0 or 1, fractional exponents, zero-size boxes). Targets (scores, distances) are constants:
no gradient flows into them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from onestage.boxes import complete_box_iou
from onestage.priors.distances import check_bins


def varifocal_loss(
    logits: Tensor, target_scores: Tensor, alpha: float = 0.75, gamma: float = 2.0
) -> Tensor:
    """Varifocal loss per element (Zhang et al. 2021, VarifocalNet): (..., C) -> (..., C).

    With p = sigmoid(logit) and BCE(p, q) = -(q log p + (1 - q) log(1 - p)):
    VFL = q * BCE(p, q) where q > 0 (positives, weighted by their target score) and
    alpha * p ** gamma * BCE(p, 0) where q = 0 (negatives, down-weighted like focal loss).
    `logits` and `target_scores` have the same shape. p ** gamma is computed as
    exp(gamma * logsigmoid(logit)), as `losses.anchor._focal_modulator` does, so its gradient stays
    finite for gamma in (0, 1) and confident logits; like focal's modulator it is differentiated.
    """
    if gamma < 0:
        raise ValueError(f"varifocal loss needs gamma >= 0, got {gamma}")
    logits = logits.float()
    target_scores = target_scores.detach().float()
    bce = F.binary_cross_entropy_with_logits(logits, target_scores, reduction="none")
    negative_weight = alpha * torch.exp(gamma * F.logsigmoid(logits))  # alpha * p ** gamma
    return torch.where(target_scores > 0, target_scores, negative_weight) * bce


def quality_focal_loss(logits: Tensor, target_scores: Tensor, beta: float = 2.0) -> Tensor:
    """Quality focal loss per element (Li et al. 2020, Generalized Focal Loss):
    (..., C) -> (..., C).

    QFL = BCE(p, q) * |q - p| ** beta, p = sigmoid(logit), q the soft target (same shape).
    |q - p| is computed as |q * sigmoid(-logit) - (1 - q) * sigmoid(logit)| (the same number, but
    exact for q in {0, 1} at confident logits, where 1 - p rounds to 0), and its power as
    exp(beta * log|q - p|). Where p = q exactly the power is 0 (1 for beta = 0) with gradient 0:
    for beta < 1 the true slope there is infinite (a cusp at the minimum, where the loss is 0).
    """
    if beta < 0:
        raise ValueError(f"quality focal loss needs beta >= 0, got {beta}")
    logits = logits.float()
    target_scores = target_scores.detach().float()
    bce = F.binary_cross_entropy_with_logits(logits, target_scores, reduction="none")
    distance = (
        target_scores * torch.sigmoid(-logits) - (1 - target_scores) * torch.sigmoid(logits)
    ).abs()  # |q - p|
    nonzero = distance > 0
    log_distance = torch.log(torch.where(nonzero, distance, 1.0))
    modulator = torch.where(nonzero, torch.exp(beta * log_distance), 0.0**beta)
    return modulator * bce


def ciou_loss(a: Tensor, b: Tensor) -> Tensor:
    """1 - CIoU of matching pairs (see `complete_box_iou`): (..., 4) xyxy -> (...,) in [0, 2.5]."""
    return 1 - complete_box_iou(a, b)


def distribution_focal_loss(
    distribution_logits: Tensor, target_distances: Tensor, reg_max: int
) -> Tensor:
    """Distribution focal loss per distance (Li et al. 2020, Generalized Focal Loss):
    (..., reg_max + 1) logits over the bins 0..reg_max and (...,) targets -> (...,).

    DFL = -((y_r - y) * log p[y_l] + (y - y_l) * log p[y_r]), p = softmax(logits), y the
    continuous target, y_l = floor(y), y_r = y_l + 1: the cross-entropy against the two bins
    around y, weighted so that their expectation is y. Targets are clamped to [0, reg_max], and
    y_l to at most reg_max - 1, so y = reg_max puts weight 1 on bin reg_max: exact, where
    YOLOv8 clamps y to reg_max - 0.01 (leaving 0.01 on bin reg_max - 1). A target on a bin is
    plain cross-entropy of that bin.
    """
    check_bins(distribution_logits, reg_max)
    log_p = F.log_softmax(distribution_logits.float(), dim=-1)  # (..., reg_max + 1)
    target = target_distances.detach().float().clamp(0, reg_max)  # (...,)
    left = target.floor().clamp(max=reg_max - 1)  # (...,) y_l
    bins = torch.stack((left, left + 1), dim=-1).long()  # (..., 2) y_l, y_r
    weights = torch.stack((left + 1 - target, target - left), dim=-1)  # (..., 2)
    return -(weights * log_p.gather(-1, bins)).sum(-1)
