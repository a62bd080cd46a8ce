"""Wall time per phase of training (data, forward, loss, ...), for the profile benchmark.

The trainer wraps each phase of a step in `with phases("forward"): ...`. By default it holds
`NO_PHASES`, which times nothing and costs a few hundred nanoseconds per phase;
`PhaseTimer` adds up the seconds of each phase (synchronising CUDA first, so that a GPU's
asynchronous work is charged to the phase that queued it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

import torch

# The phases of one training step, in order (the trainer's names).
STEP_PHASES = ("data", "input", "forward", "loss", "backward", "optimizer", "readout", "logging")
T = TypeVar("T")
_END: Any = object()


class NoPhases:
    """Times nothing."""

    def __call__(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()


NO_PHASES = NoPhases()


class PhaseTimer:
    """Seconds per phase name, added up over every `with timer(name)` block."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.synchronize = device is not None and device.type == "cuda"

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.synchronize:
            torch.cuda.synchronize()
        began = time.perf_counter()
        try:
            yield
        finally:
            if self.synchronize:
                torch.cuda.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began

    def reset(self) -> None:
        """Forget what was timed."""
        self.seconds.clear()


Phases = NoPhases | PhaseTimer


def timed_iteration(items: Iterable[T], phases: Phases, name: str) -> Iterator[T]:
    """The items of `items`, the time spent waiting for each charged to phase `name`."""
    iterator = iter(items)
    while True:
        with phases(name):
            item = next(iterator, _END)
        if item is _END:
            return
        yield item
