"""Learning-rate schedules as pure functions of the step, so resuming needs only the counters."""

from __future__ import annotations

import math

from onestage.config import TrainConfig
from onestage.errors import OnestageError

SCHEDULERS = ("step", "cosine", "constant")


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate for global optimiser step `step` (0-based).

    step: lr x gamma^(epoch // every) (the seed: x0.8 every 5 epochs); cosine: from lr down to
    min_lr over all epochs; constant: lr. All floored at min_lr, after a linear warm-up.
    """
    if config.scheduler not in SCHEDULERS:
        raise OnestageError(
            f"unknown scheduler {config.scheduler!r}; valid: {', '.join(SCHEDULERS)}"
        )
    epoch = step // steps_per_epoch
    if config.scheduler == "step":
        rate = config.lr * config.step_gamma ** (epoch // config.step_every)
    elif config.scheduler == "cosine":
        total = max(1, config.epochs * steps_per_epoch)
        progress = min(1.0, step / total)
        rate = config.min_lr + (config.lr - config.min_lr) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )
    else:
        rate = config.lr
    if config.warmup_steps and step < config.warmup_steps:
        rate *= (step + 1) / config.warmup_steps
    return max(rate, config.min_lr) if config.scheduler != "constant" else rate
