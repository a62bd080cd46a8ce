"""The anchor-free box code: left/top/right/bottom distances from a point to a box's sides, in
stride units (`distances_to_boxes`, `boxes_to_distances`), and a distance read from a distribution
over the bins 0..reg_max (DFL's decode, `distribution_to_distance`)."""

from __future__ import annotations

import torch
from torch import Tensor


def check_bins(distribution_logits: Tensor, reg_max: int) -> None:
    """Raise ValueError unless the logits' last dimension holds the reg_max + 1 bins 0..reg_max."""
    if reg_max < 1 or distribution_logits.shape[-1] != reg_max + 1:
        raise ValueError(
            f"distribution logits need reg_max + 1 = {reg_max + 1} bins (reg_max >= 1) in their "
            f"last dimension, got shape {tuple(distribution_logits.shape)}"
        )


def distribution_to_distance(distribution_logits: Tensor, reg_max: int) -> Tensor:
    """The decode of a bin distribution: (..., reg_max + 1) logits -> (...,) distances.

    distance = sum_i i * softmax(logits)_i over the bins i = 0..reg_max (GFL's integral), in
    [0, reg_max], in stride units (see `distances_to_boxes`).
    """
    check_bins(distribution_logits, reg_max)
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
