"""SSD anchor offsets: a ground-truth box written relative to an anchor (`encode_offsets`), and
back (`decode_offsets`), with the seed's centre form and variances."""

from __future__ import annotations

import torch
from torch import Tensor

from onestage.boxes import xyxy_to_cxcywh

# The variances (centre offsets x10, log size ratios x5) and the clamp before exp (a box at most
# 1000 / 16 = 62.5 times its anchor) are shared with inference's numpy decode.
from onestage.priors.numpy_codings import DEFAULT_VARIANCES, MAX_LOG_SIZE_RATIO


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
