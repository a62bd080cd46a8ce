"""Process-group setup for `torchrun` (DistributedDataParallel): gloo on CPU, nccl on CUDA, on
one machine or several (c10d rendezvous), restarts included (`engine.elastic`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE_PROCESS = DistContext()


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes in the environment (no-op without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        store = _attempt_store(world_size)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, store=store)
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def _attempt_store(world_size: int) -> dist.Store | None:
    """torchrun's agent store under a prefix of this attempt's own (None: env:// as usual).
    The agent's store outlives a restart of the workers (`--max-restarts`), and the addresses
    the dead attempt's workers left in it would send the new ones to peers that are gone."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    agent_store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=False,
        timeout=default_pg_timeout,
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"/onestage/attempt_{attempt}", agent_store)


def all_reduce_mean(value: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Mean of a tensor over all processes (the tensor itself when single-process)."""
    if not context.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / context.world_size


def broadcast_buffers(module: torch.nn.Module, context: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if context.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_to_main(value: Any, context: DistContext) -> list[Any] | None:
    """Every rank's `value`, in rank order, on rank 0 (None on the others). The values travel
    pickled between the job's own processes (`torch.distributed.gather_object`)."""
    if not context.enabled:
        return [value]
    gathered: list[Any] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_flag(flag: bool, context: DistContext) -> bool:
    """Rank 0's value of `flag` on every rank (so all ranks stop together)."""
    if not context.enabled:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def wrap_model(
    model: torch.nn.Module, device: torch.device, context: DistContext
) -> torch.nn.Module:
    """`model` in DistributedDataParallel when the job has several processes, else `model`."""
    if not context.enabled:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )
