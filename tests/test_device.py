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


@pytest.mark.parametrize("native", [True, False])
def test_auto_and_bf16_train_in_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(device_module, "has_fast_bf16", lambda: native)
    for asked in ("auto", "bf16"):
        precision, line = training_precision(asked, CPU)
        if native:
            assert (precision, line) == ("bf16", None)
        else:
            assert precision == "none"
            expected = "this CPU has no native bf16 (AVX-512-bf16 or AMX); training in fp32"
            assert line == f"amp {asked}: {expected}"
    assert training_precision("none", CPU) == ("none", None)


def test_bad_precisions_are_one_line_errors():
    with pytest.raises(OnestageError, match="fp16 needs CUDA"):
        training_precision("fp16", CPU)
    with pytest.raises(OnestageError, match="unknown amp 'half'; valid: auto, none, bf16, fp16"):
        training_precision("half", CPU)


def test_the_trainer_says_when_it_falls_back_to_fp32(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(device_module, "has_fast_bf16", lambda: False)
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
