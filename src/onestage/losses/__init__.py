"""Losses, one call and one registry (`common`): `build_loss(name)(pred, targets, coding)`.

`LOSSES` holds the anchor-head losses (`anchor`: seed, SSD, focal) and the anchor-free quality
loss (`quality`), each saying in `box_coding` which heads it fits; `terms` has the per-element
terms (VFL, QFL, CIoU, DFL). `criterion` joins a head's assigner and loss: assigner ->
`PriorTargets` -> loss.
"""

from onestage.losses.anchor import AnchorLoss, FocalLoss, SeedLoss, SSDLoss
from onestage.losses.common import (
    LOSSES,
    DetectionLoss,
    build_loss,
    loss_names,
    loss_score_mode,
    losses_for,
    register_loss,
)
from onestage.losses.quality import QualityLoss

__all__ = [
    "LOSSES",
    "AnchorLoss",
    "DetectionLoss",
    "FocalLoss",
    "QualityLoss",
    "SSDLoss",
    "SeedLoss",
    "build_loss",
    "loss_names",
    "loss_score_mode",
    "losses_for",
    "register_loss",
]
