"""Width and depth multiples (`width_multiple`, `depth_multiple`; `models.spec.scaled_spec`):
a spec's channels scale up to multiples of 8 and its repeats to whole numbers, a run trained with
them records the scaled spec, and its weights load again as that architecture."""

from __future__ import annotations

from pathlib import Path

import pytest

from onestage.config import make_config
from onestage.engine.predictor import Detector
from onestage.engine.trainer import train
from onestage.errors import OnestageError
from onestage.models import build_model
from onestage.models.spec import Layer, Spec, scaled_spec


def small_spec() -> Spec:
    return Spec(
        name="small",
        backbone=[
            Layer("stem", "conv_bn", out=16, k=3, s=2),
            Layer("c1", "csp", out=36, n=3),
            Layer("down", "conv_bn", out=64, k=3, s=2),
        ],
        head=[Layer("detect", "decoupled_head", ["c1", "down"], box_width=64, class_width=40)],
    )


def test_channels_round_to_multiples_of_8_and_repeats_to_whole_numbers():
    spec = scaled_spec(small_spec(), width=0.5, depth=0.34)
    assert spec.name == "small-w0.5-d0.34"
    assert [layer.args for layer in spec.backbone] == [
        {"out": 8, "k": 3, "s": 2},  # 16 x 0.5 = 8
        {"out": 24, "n": 1},  # 36 x 0.5 = 18 -> 24 (up); 3 x 0.34 = 1.02 -> 1
        {"out": 32, "k": 3, "s": 2},
    ]
    assert spec.head[0].args == {"box_width": 32, "class_width": 24}  # 20 -> 24
    assert spec.head[0].sources == ("c1", "down")
    wide = scaled_spec(small_spec(), width=2.0, depth=0.1)
    assert [layer.args.get("out") for layer in wide.backbone] == [32, 72, 128]
    assert wide.backbone[1].args["n"] == 1  # never fewer than one
    assert scaled_spec(small_spec(), width=0.1).backbone[0].args["out"] == 8  # at least 8
    assert scaled_spec(small_spec()) == small_spec()
    assert small_spec().backbone[1].args == {"out": 36, "n": 3}  # the original is untouched


def test_multiples_are_config_keys_above_zero_for_spec_models_only():
    with pytest.raises(OnestageError, match="width_multiple"):
        make_config(overrides={"width_multiple": 0})
    half = build_model("csp-t", num_classes=2, width=0.5)
    full = build_model("csp-t", num_classes=2)
    assert half.spec.name == "csp-t-w0.5"
    assert sum(p.numel() for p in half.parameters()) < sum(p.numel() for p in full.parameters()) / 3


def test_a_run_with_multiples_saves_weights_that_load_as_its_architecture(tmp_path: Path):
    overrides = {"model": "csp-t", "width_multiple": 0.25, "depth_multiple": 2.0, "epochs": 1,
                 "steps": 1, "batch": 2, "imgsz": 64, "val_every": 0, "threads": 1,
                 "amp": "none", "project": str(tmp_path), "name": "run"}  # fmt: skip
    result = train(make_config("csp-t", overrides=overrides))
    detector = Detector.load(result.run_dir / "weights" / "last.safetensors", "cpu")
    assert detector.metadata["spec"]["name"] == "csp-t-w0.25-d2"
    csp = [layer for layer in detector.metadata["spec"]["backbone"] if layer["block"] == "csp"]
    assert [layer["args"]["n"] for layer in csp] == [2, 2, 2]
    assert detector.metadata["spec"]["backbone"][0]["args"]["out"] == 8  # 16 x 0.25 = 4 -> 8
