"""Per-element loss terms for quality-aware, anchor-free detectors (issue 9): no reduction.

- classification: `varifocal_loss` (VFL) and `quality_focal_loss` (QFL), sigmoid logits against
  soft targets q in [0, 1] (an IoU-aware score on positives, 0 on negatives), (..., C) -> (..., C);
- boxes: `complete_box_iou` (CIoU) and `ciou_loss` = 1 - CIoU, xyxy boxes (..., 4) -> (...,);
- box distributions: `distribution_focal_loss` (DFL), `distribution_to_distance` (its decode),
  and the ltrb code between points and boxes, `distances_to_boxes` / `boxes_to_distances`.

None of them knows about heads or assigners: the registered losses in `losses.py` combine them
with an assigner's targets, mask and normalise. All compute and return float32, whatever dtype
they are given, and keep values and gradients finite for every allowed input (confident logits,
targets 0 or 1, fractional exponents, zero-size boxes). Targets (scores, distances) are constants:
no gradient flows into them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from onestage.boxes import elementwise_box_iou

# Squared lengths at or below this (lengths under 1e-12 of the box unit, normalised or pixels)
# count as zero in CIoU's distance and aspect terms, whose gradients divide by them.
_TINY_SQUARED = 1e-24


def varifocal_loss(
    logits: Tensor, target_scores: Tensor, alpha: float = 0.75, gamma: float = 2.0
) -> Tensor:
    """Varifocal loss per element (Zhang et al. 2021, VarifocalNet): (..., C) -> (..., C).

    With p = sigmoid(logit) and BCE(p, q) = -(q log p + (1 - q) log(1 - p)):
    VFL = q * BCE(p, q) where q > 0 (positives, weighted by their target score) and
    alpha * p ** gamma * BCE(p, 0) where q = 0 (negatives, down-weighted like focal loss).
    `logits` and `target_scores` have the same shape. p ** gamma is computed as
    exp(gamma * logsigmoid(logit)), as `losses._focal_modulator` does, so its gradient stays
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


def _ratio_or_zero(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, and 0 where the denominator is at most `_TINY_SQUARED`.

    Dividing by 1 there keeps the gradient finite (it is 1 / denominator, and beyond).
    """
    small = denominator <= _TINY_SQUARED
    return torch.where(small, 0.0, numerator / torch.where(small, 1.0, denominator))


def _aspect_angle(widths: Tensor, heights: Tensor) -> Tensor:
    """atan(w / h) of non-negative (...,) widths and heights -> (...,) in [0, pi / 2].

    Computed as atan2(w, h), so a flat box (h = 0) gets pi / 2. A point (w^2 + h^2 at most
    `_TINY_SQUARED`) gets 0, as YOLO's atan(w / (h + eps)) gives, with gradient 0: atan2's
    gradient divides by w^2 + h^2.
    """
    point = widths.square() + heights.square() <= _TINY_SQUARED
    return torch.atan2(torch.where(point, 0.0, widths), torch.where(point, 1.0, heights))


def complete_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Complete IoU of matching pairs: broadcastable (..., 4) xyxy boxes -> (...,) float32.

    CIoU = IoU - rho^2 / c^2 - alpha * v (Zheng et al. 2020, Distance-IoU Loss), with
    rho the distance between the box centres, c the diagonal of the smallest box enclosing
    both, v = 4 / pi^2 * (atan(w_b / h_b) - atan(w_a / h_a))^2 and
    alpha = v / (1 - IoU + v). Symmetric in a and b; any unit (normalised or pixels, the same
    for both). As in the authors' code and the YOLO implementations, alpha is a constant for the
    gradient (detached), and v keeps its exact gradient (the paper's replacement of
    1 / (w^2 + h^2) by 1 is not applied). In [-1.5, 1] for valid boxes (x0 <= x1, y0 <= y1).

    Degenerate cases, all finite with finite gradients: IoU of an empty box is 0 (`boxes`);
    widths and heights are clamped at 0; a flat box has aspect angle pi / 2, a point 0; boxes
    whose enclosing diagonal is under 1e-12 (coincident points) have no distance penalty, and
    alpha = 0 where 1 - IoU + v is (nearly) 0, i.e. identical boxes.
    """
    a, b = a.float(), b.float()
    iou = elementwise_box_iou(a, b)  # (...,)
    ax0, ay0, ax1, ay1 = a.unbind(-1)
    bx0, by0, bx1, by1 = b.unbind(-1)
    # rho^2: twice the centres are x0 + x1 and y0 + y1, hence the / 2.
    centre_distance_sq = ((bx0 + bx1 - ax0 - ax1) / 2).square() + (
        (by0 + by1 - ay0 - ay1) / 2
    ).square()  # (...,)
    diagonal_sq = (torch.maximum(ax1, bx1) - torch.minimum(ax0, bx0)).square() + (
        torch.maximum(ay1, by1) - torch.minimum(ay0, by0)
    ).square()  # (...,) c^2
    distance_penalty = _ratio_or_zero(centre_distance_sq, diagonal_sq)
    angle_a = _aspect_angle((ax1 - ax0).clamp(min=0), (ay1 - ay0).clamp(min=0))
    angle_b = _aspect_angle((bx1 - bx0).clamp(min=0), (by1 - by0).clamp(min=0))
    v = (4 / math.pi**2) * (angle_b - angle_a).square()  # (...,) in [0, 1]
    alpha = _ratio_or_zero(v, 1 - iou + v).detach()
    return iou - distance_penalty - alpha * v


def ciou_loss(a: Tensor, b: Tensor) -> Tensor:
    """1 - CIoU of matching pairs (see `complete_box_iou`): (..., 4) xyxy -> (...,) in [0, 2.5]."""
    return 1 - complete_box_iou(a, b)


def _check_bins(distribution_logits: Tensor, reg_max: int) -> None:
    """Raise ValueError unless the logits' last dimension holds the reg_max + 1 bins 0..reg_max."""
    if reg_max < 1 or distribution_logits.shape[-1] != reg_max + 1:
        raise ValueError(
            f"distribution logits need reg_max + 1 = {reg_max + 1} bins (reg_max >= 1) in their "
            f"last dimension, got shape {tuple(distribution_logits.shape)}"
        )


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
    _check_bins(distribution_logits, reg_max)
    log_p = F.log_softmax(distribution_logits.float(), dim=-1)  # (..., reg_max + 1)
    target = target_distances.detach().float().clamp(0, reg_max)  # (...,)
    left = target.floor().clamp(max=reg_max - 1)  # (...,) y_l
    bins = torch.stack((left, left + 1), dim=-1).long()  # (..., 2) y_l, y_r
    weights = torch.stack((left + 1 - target, target - left), dim=-1)  # (..., 2)
    return -(weights * log_p.gather(-1, bins)).sum(-1)


def distribution_to_distance(distribution_logits: Tensor, reg_max: int) -> Tensor:
    """The decode of a bin distribution: (..., reg_max + 1) logits -> (...,) distances.

    distance = sum_i i * softmax(logits)_i over the bins i = 0..reg_max (GFL's integral), in
    [0, reg_max], in stride units (see `distances_to_boxes`).
    """
    _check_bins(distribution_logits, reg_max)
    probabilities = distribution_logits.float().softmax(dim=-1)  # (..., reg_max + 1)
    bins = torch.arange(reg_max + 1, dtype=torch.float32, device=probabilities.device)
    return probabilities @ bins  # (...,)


def distances_to_boxes(
    points_xy: Tensor, distances_ltrb: Tensor, strides: Tensor | float
) -> Tensor:
    """Anchor-free decode: (..., 2) points and (..., 4) ltrb distances -> (..., 4) xyxy boxes.

    box = (x - l * s_x, y - t * s_y, x + r * s_x, y + b * s_y). Points and boxes share one unit
    (normalised coordinates in onestage); distances are in stride units; `strides` is the cell
    size in the points' unit, broadcastable to (..., 2) as (s_x, s_y): e.g. (A, 1) for square
    cells or (A, 2) for a non-square image (stride / width, stride / height). All broadcast.
    """
    points = points_xy.float()
    distances = distances_ltrb.float()
    strides = torch.as_tensor(strides, dtype=torch.float32, device=points.device)
    return torch.cat(
        (points - distances[..., :2] * strides, points + distances[..., 2:] * strides), dim=-1
    )


def boxes_to_distances(points_xy: Tensor, boxes_xyxy: Tensor, strides: Tensor | float) -> Tensor:
    """Anchor-free encode, the inverse of `distances_to_boxes`: (..., 2) points and (..., 4)
    xyxy boxes -> (..., 4) ltrb distances in stride units.

    (l, t, r, b) = ((x - x0) / s_x, (y - y0) / s_y, (x1 - x) / s_x, (y1 - y) / s_y), same units
    and `strides` as `distances_to_boxes`. Not clamped: a point outside its box gets negative
    distances (`distribution_focal_loss` clamps its targets to [0, reg_max]).
    """
    points = points_xy.float()
    boxes = boxes_xyxy.float()
    strides = torch.as_tensor(strides, dtype=torch.float32, device=points.device)
    return torch.cat(((points - boxes[..., :2]) / strides, (boxes[..., 2:] - points) / strides), -1)
