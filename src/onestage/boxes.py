"""Box geometry: format conversion, areas, IoU and GIoU, and the anchor offset code.

Boxes are tensors whose last dimension holds 4 numbers: ``xyxy`` = (xmin, ymin, xmax, ymax) or
``cxcywh`` = (centre x, centre y, width, height). Every function here works in any unit, pixels
or coordinates normalised to [0, 1], as long as both arguments use the same one; the docstrings
say which unit a function assumes when it matters. All functions are vectorised over leading
dimensions and return the dtype they were given (float32 and bfloat16 both work).

A box with xmax < xmin or ymax < ymin counts as empty (area 0). IoU and GIoU of empty boxes are
0, never NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# SSD's "variances": centre offsets are divided by 0.1 (x10), log size ratios by 0.2 (x5).
DEFAULT_VARIANCES = (0.1, 0.2)

# Largest log size ratio that decode_offsets lets through exp (as torchvision's BoxCoder does):
# a predicted box is at most 1000 / 16 = 62.5 times its anchor in width and height.
MAX_LOG_SIZE_RATIO = math.log(1000.0 / 16)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (..., 4) cxcywh, in the same unit."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) cxcywh -> (..., 4) xyxy, in the same unit."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (...,) areas; empty (inverted) boxes have area 0."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)


def _safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, and 0 where the denominator is 0 (the numerator is 0 there too).

    Dividing by 1 instead of 0 keeps both the value and the gradient finite.
    """
    return numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def _intersection_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union areas of broadcastable (..., 4) xyxy boxes -> two (...,) tensors.

    Works coordinate by coordinate, so pairwise calls broadcast (N, 1) against (1, M) scalars
    instead of materialising (N, M, 2) corner tensors (about 5x faster at 400 x 400).
    """
    ax0, ay0, ax1, ay1 = a.unbind(-1)
    bx0, by0, bx1, by1 = b.unbind(-1)
    inter_w = (torch.minimum(ax1, bx1) - torch.maximum(ax0, bx0)).clamp(min=0)
    inter_h = (torch.minimum(ay1, by1) - torch.maximum(ay0, by0)).clamp(min=0)
    inter = inter_w * inter_h
    union = box_area(a) + box_area(b) - inter
    return inter, union


def elementwise_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of matching pairs: broadcastable (..., 4) xyxy boxes -> (...,) in [0, 1]."""
    inter, union = _intersection_union(a, b)
    return _safe_divide(inter, union)


def elementwise_generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU of matching pairs: broadcastable (..., 4) xyxy boxes -> (...,) in [-1, 1].

    GIoU = IoU - (C - U) / C, with U the union and C the area of the smallest box enclosing both
    (Rezatofighi et al., 2019). Two empty boxes at the same point give 0.
    """
    inter, union = _intersection_union(a, b)
    enclosing = box_area(
        torch.cat(
            (torch.minimum(a[..., :2], b[..., :2]), torch.maximum(a[..., 2:], b[..., 2:])), dim=-1
        )
    )
    return _safe_divide(inter, union) - _safe_divide(enclosing - union, enclosing)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair: (N, 4) and (M, 4) xyxy boxes -> (N, M) in [0, 1]."""
    return elementwise_box_iou(boxes1[:, None, :], boxes2[None, :, :])  # (N, M)


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair, per image: (B, N, 4) and (B, M, 4) xyxy boxes -> (B, N, M) in [0, 1]."""
    return elementwise_box_iou(boxes1[:, :, None, :], boxes2[:, None, :, :])  # (B, N, M)


def encode_offsets(
    gt_boxes: Tensor,
    anchors: Tensor,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
    eps: float = 1e-6,
) -> Tensor:
    """Regression targets of ground-truth boxes relative to anchors, the seed's centre form.

    Both are broadcastable (..., 4) xyxy boxes in the same unit (normalised in onestage); the
    result is (..., 4): ((c_gt - c_anchor) / wh_anchor / variances[0],
    log(wh_gt / wh_anchor + eps) / variances[1]). With the default variances this is x10 and x5;
    eps keeps the log finite for empty ground-truth boxes (e.g. padding).
    """
    gt = xyxy_to_cxcywh(gt_boxes)
    anchor = xyxy_to_cxcywh(anchors)
    centre = (gt[..., :2] - anchor[..., :2]) / anchor[..., 2:] / variances[0]
    size = torch.log(gt[..., 2:] / anchor[..., 2:] + eps) / variances[1]
    return torch.cat((centre, size), dim=-1)


def decode_offsets(
    offsets: Tensor,
    anchors: Tensor,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
    max_log_size_ratio: float = MAX_LOG_SIZE_RATIO,
) -> Tensor:
    """Boxes from (..., 4) offsets and broadcastable (..., 4) xyxy anchors: the inverse transform.

    Returns (..., 4) xyxy boxes in the anchors' unit. The inverse ignores encode_offsets' eps
    (its effect is below 1e-6 of the anchor size). Before exp, each log size ratio
    (offset * variances[1]) is clamped to at most `max_log_size_ratio` (default log(1000 / 16),
    like torchvision) so that a wild prediction cannot overflow to inf.
    """
    return decode_offsets_cxcywh(offsets, xyxy_to_cxcywh(anchors), variances, max_log_size_ratio)


def decode_offsets_cxcywh(
    offsets: Tensor,
    anchors_cxcywh: Tensor,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
    max_log_size_ratio: float = MAX_LOG_SIZE_RATIO,
) -> Tensor:
    """`decode_offsets` for anchors already in (..., 4) cxcywh form -> (..., 4) xyxy boxes in the
    anchors' unit (for callers that decode against the same anchors many times)."""
    anchor_centre, anchor_size = anchors_cxcywh[..., :2], anchors_cxcywh[..., 2:]
    centre = anchor_centre + offsets[..., :2] * variances[0] * anchor_size
    log_ratio = (offsets[..., 2:] * variances[1]).clamp(max=max_log_size_ratio)
    half_size = torch.exp(log_ratio) * (anchor_size * 0.5)
    return torch.cat((centre - half_size, centre + half_size), dim=-1)


def clip_boxes(boxes: Tensor, width: float = 1.0, height: float = 1.0) -> Tensor:
    """Clamp (..., 4) xyxy boxes to the image [0, width] x [0, height] (default: normalised)."""
    if width == height:
        return boxes.clamp(0, width)
    return boxes.clamp(min=0).minimum(boxes.new_tensor([width, height, width, height]))
