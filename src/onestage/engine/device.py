"""Device and precision choices shared by the trainer and the predictor, and the CPU's name."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from onestage.errors import OnestageError


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; an unavailable cuda is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OnestageError("--device cuda: no CUDA device is available here")
    if name not in ("cpu", "cuda"):
        raise OnestageError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for --amp (None = full fp32)."""
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise OnestageError("--amp fp16 needs CUDA; use bf16 on CPU")
        return torch.float16
    raise OnestageError(f"unknown amp {amp!r}; valid: none, bf16, fp16")


def cpu_model() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Torch's intra-op thread count for the calling thread set to `count` inside the block
    and restored after it (None: unchanged; OpenMP keeps the count per thread, so other
    threads are not affected). A detector on another runtime runs its small torch steps on
    one thread: torch's idle worker threads otherwise spin beside the runtime's own
    (BENCHMARKS.md, third inference run: ONNX Runtime's batch-1 forward 1.9x slower)."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
