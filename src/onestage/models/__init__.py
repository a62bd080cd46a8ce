"""Detector architectures by name: `build_model("seed", num_classes=15)`.

Every model maps images (B, 3, H, W), float in [0, 1], to (B, A, 4 + num_classes + 1): per
anchor 4 box offsets, then num_classes + 1 class logits with background LAST. Anchors are ordered
level by level (largest feature map first), pixel by pixel (row-major), then anchor within the
pixel, and each model exposes `feature_sizes` and `anchors_per_cell` so the anchor generator can
follow the same order.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from onestage.errors import OnestageError
from onestage.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")
register_model = MODELS.register
model_names = MODELS.names
model_class = MODELS.get


def build_model(name: str, num_classes: int, **options: Any) -> nn.Module:
    """A fresh model `name` for `num_classes` object classes (background not counted).

    `options` go to the model's constructor (e.g. `input_size` for `seed`).
    """
    cls = model_class(name)
    if num_classes < 1:
        raise OnestageError(f"num_classes must be at least 1, got {num_classes}")
    return cls(num_classes=num_classes, **options)


# Imported last: the architectures register themselves with the functions above.
from onestage.models.seed import SeedModel  # noqa: E402

__all__ = ["MODELS", "SeedModel", "build_model", "model_class", "model_names", "register_model"]
