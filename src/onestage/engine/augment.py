"""Augmentation of a whole batch on the training device (after the data loader)."""

from __future__ import annotations

import torch


def random_hflip(
    images: torch.Tensor, boxes_xyxy: torch.Tensor, probability: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each image of a batch left-right with `probability`; boxes are normalised xyxy.

    Padding boxes (all zeros) stay all-zero-width and are ignored by matching anyway.
    """
    flip = torch.rand(images.shape[0], device=images.device) < probability  # (B,)
    if not flip.any():
        return images, boxes_xyxy
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    mirrored = torch.stack(
        [1 - boxes_xyxy[..., 2], boxes_xyxy[..., 1], 1 - boxes_xyxy[..., 0], boxes_xyxy[..., 3]],
        dim=-1,
    )
    boxes_xyxy = torch.where(flip[:, None, None], mirrored, boxes_xyxy)
    return images, boxes_xyxy
