"""Exponential moving average of model weights (evaluated and shipped instead of the raw ones)."""

from __future__ import annotations

import copy
import math

import torch


class ModelEMA:
    """Keeps `module`, a running average of a model's weights and buffers.

    After update n: ema = d * ema + (1 - d) * weights with d = decay * (1 - exp(-n / tau)), so
    early updates follow the fast-moving weights closely (Ultralytics' ramp). Integer buffers
    (BatchNorm's batch counter) are copied.
    """

    def __init__(self, model: torch.nn.Module, decay: float, tau: float, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights into the average."""
        self.updates += 1
        decay = self.decay * (1 - math.exp(-self.updates / self.tau))
        averaged = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = averaged[name]
            if target.dtype.is_floating_point:
                target.lerp_(value.detach(), 1 - decay)
            else:
                target.copy_(value)
