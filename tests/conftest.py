"""Shared fixtures: small data made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw


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
