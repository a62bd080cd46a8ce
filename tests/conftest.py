"""Shared fixtures: small data made by the tests themselves, and isolation between tests.

Hypothesis: the "ci" profile (derandomised: the same examples on every run, so a red build is
reproducible, and no example database) is loaded when the CI environment variable is set;
locally the "dev" profile keeps random exploration, which finds new counterexamples over time.
Both drop the per-example deadline, which on two shared cores flags only load, not bugs.
HYPOTHESIS_PROFILE=<name> picks a profile explicitly.

Global state a test may change (the numpy and `random` RNGs; torch's thread count, RNG,
default dtype and grad mode, and Inductor's config, which `Detector.accelerate()` changes) is
put back after every test, so no test depends on which tests ran before it. torch is not
imported here, so tests that do not use it do not pay for it: its state is saved once a test
module has imported it (they do at the top, as they are collected).
"""

from __future__ import annotations

import importlib
import inspect
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image, ImageDraw

pytest_plugins = ("pytester",)  # test_conftest.py runs this conftest in a pytest of its own

settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def torch_state(torch: Any) -> dict[str, Any]:
    inductor = importlib.import_module("torch._inductor.config")
    return {
        "threads": torch.get_num_threads(),
        "rng": torch.get_rng_state(),
        "dtype": torch.get_default_dtype(),
        "grad": torch.is_grad_enabled(),
        "inductor": inductor.get_config_copy(),
    }


def restore_torch_state(torch: Any, saved: dict[str, Any]) -> None:
    if torch.get_num_threads() != saved["threads"]:
        torch.set_num_threads(saved["threads"])
    torch.set_rng_state(saved["rng"])
    torch.set_default_dtype(saved["dtype"])
    torch.set_grad_enabled(saved["grad"])
    inductor = importlib.import_module("torch._inductor.config")
    for name, value in inductor.get_config_copy().items():
        if value != saved["inductor"][name]:
            setattr(inductor, name, saved["inductor"][name])


@pytest.fixture(autouse=True)
def restore_global_state():
    """Put back, after the test, the process-wide settings the code under test may change."""
    numpy_rng = np.random.get_state()
    python_rng = random.getstate()
    torch = sys.modules.get("torch")
    saved = torch_state(torch) if torch is not None else None
    yield
    np.random.set_state(numpy_rng)
    random.setstate(python_rng)
    if saved is not None:
        restore_torch_state(torch, saved)


@pytest.fixture
def icon_folder(tmp_path: Path) -> Path:
    """Three 40x40 RGBA icons with known tight boxes (class = file stem)."""
    folder = tmp_path / "icons"
    folder.mkdir()
    shapes = {"circle": (5, 5, 35, 35), "bar": (0, 10, 40, 20), "block": (10, 0, 30, 40)}
    for name, box in shapes.items():
        icon = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
        draw = ImageDraw.Draw(icon)
        colour = tuple(int(c) for c in np.random.default_rng(len(name)).integers(0, 255, 3))
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(*colour, 255))
        icon.save(folder / f"{name}.png")
    return folder


@pytest.fixture
def background_folder(tmp_path: Path) -> Path:
    """Two RGB photos of different sizes."""
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (100, 150, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / "b.jpg")
    return folder


@pytest.fixture
def restore_blocks() -> Iterator[None]:
    """Put the spec block registry back as it was after the test (for tests that register
    blocks of their own)."""
    from onestage.models.blocks import BLOCKS

    saved = dict(BLOCKS.classes)
    yield
    BLOCKS.classes.clear()
    BLOCKS.classes.update(saved)


@pytest.fixture
def nms_thresholds(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The IoU threshold of every NMS a `Detector` runs during the test, in call order: its
    `postprocess` is wrapped to note `iou_threshold` (its default where not passed), then run."""
    from onestage.engine import predictor

    real = predictor.postprocess
    thresholds: list[float] = []

    def noting(*args: Any, **kwargs: Any) -> Any:
        call = inspect.signature(real).bind(*args, **kwargs)
        call.apply_defaults()
        thresholds.append(call.arguments["iou_threshold"])
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor, "postprocess", noting)
    return thresholds
