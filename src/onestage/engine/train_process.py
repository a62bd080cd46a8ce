"""This process's part in a training run: its device, its place among torchrun's processes
(`engine.distributed`), its share of the batch and the precision it trains in."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from onestage.config import TrainConfig
from onestage.engine import distributed
from onestage.engine.device import resolve_device, training_precision
from onestage.errors import OnestageError


@dataclass(frozen=True)
class TrainProcess:
    """Where this process trains and on how many of each batch's images.

    precision: what `--amp` resolves to here (`device.training_precision`); precision_note: a
    line saying why it differs from what was asked, or None.
    """

    device: torch.device
    context: distributed.DistContext
    per_rank_batch: int
    precision: str
    precision_note: str | None


def join_training(config: TrainConfig) -> TrainProcess:
    """Resolve the device, join torchrun's process group (if any), set the CPU threads, split
    the batch over the processes (evenly, or an error) and choose the precision."""
    device = resolve_device(config.device)
    context = distributed.init_distributed(device.type)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.batch % context.world_size:
        raise OnestageError(
            f"batch {config.batch} does not split evenly over {context.world_size} processes"
        )
    per_rank_batch = config.batch // context.world_size
    precision, note = training_precision(config.amp, device, per_rank_batch)
    return TrainProcess(device, context, per_rank_batch, precision, note)
