"""The optimiser of a training run: Adam, AdamW or SGD (Nesterov)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from onestage.errors import OnestageError
from onestage.train_choices import OPTIMIZERS


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
    *,
    name: str,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """The optimiser `name` (adam, adamw or sgd) over `parameters` (or parameter groups, whose
    own "lr" wins); `momentum` is Adam's beta1.
    Adam and AdamW run fused (one kernel over all parameters): on the CPU the `seed` model's
    AdamW step takes 1.8 ms instead of 19 ms (BENCHMARKS.md, issue 12)."""
    if name in ("adam", "adamw"):
        adam = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return adam(
            parameters,
            lr=lr,
            betas=(momentum, 0.999),
            weight_decay=weight_decay,
            fused=True,
        )
    if name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=True,
            foreach=True,
        )
    raise OnestageError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
