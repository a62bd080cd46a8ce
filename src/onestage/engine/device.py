"""Device and precision choices shared by the trainer and the predictor, and the CPU's name."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch

from onestage.errors import OnestageError
from onestage.train_choices import AMP_MODES, DEVICES


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; an unavailable cuda is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OnestageError("--device cuda: no CUDA device is available here")
    if name not in DEVICES:
        raise OnestageError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    return torch.device(name)


NO_NATIVE_BF16 = "this CPU has no native bf16 (AVX-512-bf16 or AMX)"
# Without AMX, bf16 autocast paid only for large batches (BENCHMARKS.md, issue 12: on an
# AVX-512-bf16 CPU, channels_last training steps at batch 4 ran 1.2x faster in fp32, at batch 32
# 1.2x faster in bf16).
BF16_WITHOUT_AMX_MIN_BATCH = 16


def training_precision(amp: str, device: torch.device, batch: int) -> tuple[str, str | None]:
    """The precision --amp trains in on `device` at `batch` images per process, and a line
    saying why it differs from what was asked (None when it does not).

    "auto": bf16 on CUDA devices that have it (else fp16), on CPUs with AMX, and on CPUs with
    AVX-512-bf16 alone from `BF16_WITHOUT_AMX_MIN_BATCH` images per process; fp32 otherwise.
    bf16 on a CPU without native bf16 would be emulated, slower than fp32: it falls back to
    fp32, and only then is there a line."""
    if amp not in AMP_MODES:
        raise OnestageError(f"unknown amp {amp!r}; valid: {', '.join(AMP_MODES)}")
    if amp == "fp16" and device.type != "cuda":
        raise OnestageError("--amp fp16 needs CUDA; use bf16 on CPU")
    if device.type == "cuda":
        if amp == "auto":
            return ("bf16" if torch.cuda.is_bf16_supported() else "fp16"), None
        return amp, None
    if amp in ("auto", "bf16") and not has_fast_bf16():
        return "none", f"amp {amp}: {NO_NATIVE_BF16}; training in fp32"
    if amp == "auto" and not has_amx() and batch < BF16_WITHOUT_AMX_MIN_BATCH:
        return "none", None  # the faster choice there, not a fallback
    return ("bf16" if amp == "auto" else amp), None


def autocast_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of a precision that `training_precision` gave (None = fp32)."""
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def cpu_model() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else the platform's word for it."""
    return _cpuinfo_value(("model name",)) or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The processor's feature flags (Linux /proc/cpuinfo "flags", or "Features" on Arm);
    empty where unknown."""
    return set(_cpuinfo_value(("flags", "Features")).split())


@functools.cache
def _cpuinfo_value(keys: tuple[str, ...]) -> str:
    """The value of the first /proc/cpuinfo line that starts with one of `keys` ("" if none
    or no such file); read once per process, since the processor does not change."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(keys):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def has_amx() -> bool:
    """Whether the CPU has AMX tiles for bf16 matrix products (Intel Sapphire Rapids on)."""
    return "amx_bf16" in cpu_flags()


def has_fast_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX-512-bf16, AMX, or Arm's bf16); without it
    bf16 autocast is emulated and slower than fp32."""
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & cpu_flags())


def machine_description() -> str:
    """The machine a benchmark ran on, for its rows: CPU model, cores, AMX and AVX-512-bf16,
    and the GPU when torch sees one."""
    flags = cpu_flags()

    def said(present: bool) -> str:
        return "yes" if present else "no"

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, AMX {said('amx_bf16' in flags)}, "
        f"AVX-512-bf16 {said('avx512_bf16' in flags)}{gpu}"
    )
