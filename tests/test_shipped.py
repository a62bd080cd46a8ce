"""The shipped weights: `animals` (the default of `onestage predict`), the faithful
`seed_animals` and the pretrained `base`, each loadable by name, small, and detecting on fresh
synthetic images; `base` never saw the held-out emoji."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import run_onestage
from onestage.checkpoint import load_weights
from onestage.data.emoji_catalog import HELD_OUT_EMOJI, base_emoji, is_held_out
from onestage.engine.evaluator import evaluate_detector, synthetic_eval_set
from onestage.engine.predictor import WEIGHTS_DIR, Detector

MAX_SHIPPED_BYTES = 8 * 2**20
MAX_BASE_BYTES = 10 * 2**20


@pytest.mark.parametrize(
    ("name", "architecture", "classes"),
    [("animals", "csp-n", 15), ("seed_animals", "seed", 15), ("base", "csp-t", 1398)],
)
def test_shipped_weights_are_fp16_small_and_rebuild_their_architecture(name, architecture, classes):
    path = WEIGHTS_DIR / f"{name}.safetensors"
    assert path.stat().st_size <= (MAX_BASE_BYTES if name == "base" else MAX_SHIPPED_BYTES)
    tensors, metadata = load_weights(path)
    floats = [t for t in tensors.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    assert metadata["model"] == architecture and len(metadata["class_names"]) == classes
    assert Detector.load(name, "cpu").model.training is False


def test_base_trained_on_every_catalogue_emoji_but_the_held_out_ones():
    _, metadata = load_weights(WEIGHTS_DIR / "base.safetensors")
    assert sorted(metadata["class_names"]) == sorted(emoji.name for emoji in base_emoji())
    assert metadata["held_out"] == list(HELD_OUT_EMOJI)
    assert not any(is_held_out(name) for name in metadata["class_names"])


def test_animals_detects_both_icon_sets_kinds_of_images():
    detector = Detector.load("animals", "cpu")
    # OpenMoji icons on procedural backgrounds, 1-8 objects: half of the mixed training data
    eval_set = synthetic_eval_set(detector.class_names, 12, objects=(1, 8), seed=3)
    scores = evaluate_detector(detector, eval_set)
    assert scores.voc.map > 0.9 and scores.coco.ap > 0.75


def test_predict_uses_animals_by_default(tmp_path: Path):
    image = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 96, 3), 127, np.uint8)).save(image)
    done = run_onestage("predict", str(image), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "weights: animals (csp-n" in done.stdout
    assert "backend: onnxruntime" in done.stdout  # the fastest accurate runtime installed
    assert (tmp_path / "out" / "predictions.json").is_file()


def test_animals_finds_nothing_on_empty_backgrounds():
    # seed_animals fires on flat blue (100 detections on (0, 0, 255) at conf 0.25); animals not
    detector = Detector.load("animals", "cpu")
    for colour in [(0, 0, 255), (40, 90, 200), (135, 206, 235), (255, 255, 255), (30, 160, 90)]:
        image = np.full((320, 320, 3), colour, np.uint8)
        assert detector.predict(image) == [], colour
