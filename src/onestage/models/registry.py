"""The model registry: architectures register themselves by name."""

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
