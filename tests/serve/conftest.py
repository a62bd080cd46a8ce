"""The detector and the image the serve tests share."""

from __future__ import annotations

import pytest

from helpers import encode, scene
from onestage.engine.predictor import Detector


@pytest.fixture(scope="session")
def detector() -> Detector:
    return Detector.load("animals", "cpu")


@pytest.fixture(scope="session")
def png(detector: Detector) -> bytes:
    """Scene 3, 320 x 320, as PNG bytes."""
    return encode(scene(detector.class_names, index=3))
