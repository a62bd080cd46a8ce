"""Precision choices and the machine description of the benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from onestage.config import make_config
from onestage.engine import device as device_module
from onestage.engine.device import machine_description, training_precision
from onestage.engine.progress import SilentProgress
from onestage.engine.trainer import Trainer
from onestage.errors import OnestageError

CPU = torch.device("cpu")


class Messages(SilentProgress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def cpu_with(monkeypatch, native_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(device_module, "has_fast_bf16", lambda: native_bf16)
    monkeypatch.setattr(device_module, "has_amx", lambda: amx)


@pytest.mark.parametrize("asked", ["auto", "bf16"])
def test_a_cpu_without_native_bf16_trains_in_fp32_and_says_so(monkeypatch, asked):
    cpu_with(monkeypatch, native_bf16=False, amx=False)
    precision, line = training_precision(asked, CPU, batch=32)
    assert precision == "none"
    assert (
        line == f"amp {asked}: this CPU has no native bf16 (AVX-512-bf16 or AMX); training in fp32"
    )


@pytest.mark.parametrize(
    ("amx", "batch", "expected"),
    [
        (True, 4, "bf16"),
        (True, 32, "bf16"),
        (False, 32, "bf16"),
        (False, 16, "bf16"),
        (False, 8, "none"),
    ],
)
def test_auto_is_bf16_with_amx_and_from_batch_16_without(monkeypatch, amx, batch, expected):
    cpu_with(monkeypatch, native_bf16=True, amx=amx)
    assert training_precision("auto", CPU, batch) == (expected, None)
    assert training_precision("bf16", CPU, batch) == ("bf16", None)  # asked for: honoured
    assert training_precision("none", CPU, batch) == ("none", None)


def test_bad_precisions_are_one_line_errors():
    with pytest.raises(OnestageError, match="fp16 needs CUDA"):
        training_precision("fp16", CPU, 4)
    with pytest.raises(OnestageError, match="unknown amp 'half'; valid: auto, none, bf16, fp16"):
        training_precision("half", CPU, 4)


def test_the_trainer_says_when_it_falls_back_to_fp32(tmp_path: Path, monkeypatch):
    cpu_with(monkeypatch, native_bf16=False, amx=False)
    progress = Messages()
    config = make_config("seed", overrides={"steps": 1, "val_every": 0, "project": str(tmp_path)})
    trainer = Trainer(config, progress)
    assert trainer.amp_dtype is None
    assert progress.lines == [
        "amp auto: this CPU has no native bf16 (AVX-512-bf16 or AMX); training in fp32"
    ]


def test_machine_description_names_the_cpu_and_its_bf16_units(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_model", lambda: "Some CPU")
    monkeypatch.setattr(device_module, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 2)
    assert machine_description() == "Some CPU, 2 cores, AMX no, AVX-512-bf16 yes"


@pytest.mark.parametrize(("bf16_supported", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_is_bf16_where_the_gpu_has_it_else_fp16(monkeypatch, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16_supported)
    assert training_precision("auto", torch.device("cuda"), 4) == (expected, None)
    assert training_precision("fp16", torch.device("cuda"), 4) == ("fp16", None)
