"""Detector architectures by name: `build_model("seed", num_classes=15)`.

Every model maps images (B, 3, H, W), float in [0, 1], to (B, A, 4 + num_classes + 1): per
anchor 4 box offsets, then num_classes + 1 class logits with background LAST. Anchors are ordered
level by level (largest feature map first), pixel by pixel (row-major), then anchor within the
pixel, and each model exposes `feature_sizes` and `anchors_per_cell` so the anchor generator can
follow the same order.
"""

from __future__ import annotations

from onestage.models.registry import (
    MODELS,
    build_model,
    model_class,
    model_names,
    register_model,
)
from onestage.models.seed import SeedModel  # registers "seed"

__all__ = ["MODELS", "SeedModel", "build_model", "model_class", "model_names", "register_model"]
