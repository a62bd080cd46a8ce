"""The optimiser a training config names: Adam, AdamW or SGD (Nesterov)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from onestage.config import TrainConfig
from onestage.errors import OnestageError


def build_optimizer(
    config: TrainConfig, parameters: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """`config.optimizer` over `parameters` with the config's lr, momentum (Adam: beta1) and
    weight decay. Adam and AdamW run fused (one kernel over all parameters): on the CPU the
    `seed` model's AdamW step takes 1.8 ms instead of 19 ms (BENCHMARKS.md, issue 12)."""
    if config.optimizer in ("adam", "adamw"):
        adam = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        return adam(
            parameters,
            lr=config.lr,
            betas=(config.momentum, 0.999),
            weight_decay=config.weight_decay,
            fused=True,
        )
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=True,
            foreach=True,
        )
    raise OnestageError(f"unknown optimizer {config.optimizer!r}; valid: adam, adamw, sgd")
