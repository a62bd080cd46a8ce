"""int8 calibration wiring: `onestage export --precision int8` hands NNCF exactly the images
that `--calib N` or `--calib-data DIR` (with `--calib-split`) name.

NNCF is replaced by a recorder: `nncf_int8` runs the quantisation in a child process, whose
function runs here in this process instead, against the recorder, which returns the graph as
it was given (so the export completes as an f32 graph labelled int8).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from helpers import run_in_process
from onestage.checkpoint import save_weights
from onestage.data.formats import write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.export import nncf_int8
from onestage.export.onnx_file import INPUT_NAME
from onestage.models import build_model

CLASSES = ("cat", "dog")
SIZE = 64  # the weights' input side: a small graph that exports in a fraction of a second
# Solid-colour dataset images: a fitted solid image is that colour everywhere.
TRAIN_COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
VAL_COLOURS = [(250, 250, 0), (0, 250, 250)]


@dataclass
class QuantizeCall:
    """What one `nncf.quantize` call was given."""

    samples: list[Any] = field(repr=False)
    subset_size: int


@dataclass
class RecordingNncf:
    """Stands for the `nncf` module: records each `quantize` call, quantises nothing."""

    calls: list[QuantizeCall] = field(default_factory=list)

    def module(self) -> ModuleType:
        fake = ModuleType("nncf")
        fake.set_log_level = lambda level: None
        fake.Dataset = list
        fake.quantize = self.quantize
        return fake

    def quantize(self, model: Any, dataset: list[Any], subset_size: int) -> Any:
        self.calls.append(QuantizeCall(list(dataset), subset_size))
        return model


@pytest.fixture
def nncf_calls(monkeypatch: pytest.MonkeyPatch) -> list[QuantizeCall]:
    """The `nncf.quantize` calls of the test, NNCF and its child process replaced."""
    recorder = RecordingNncf()
    monkeypatch.setitem(sys.modules, "nncf", recorder.module())
    monkeypatch.setattr(nncf_int8, "_in_child", lambda function, *arguments: function(*arguments))
    return recorder.calls


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model("csp-t", num_classes=len(CLASSES), input_size=SIZE).eval()
    metadata = {
        "model": "csp-t",
        "spec": model.spec.to_dict(),
        "class_names": list(CLASSES),
        "anchors": "seed",
        "input_size": SIZE,
        "loss": "quality",
    }
    path = tmp_path_factory.mktemp("calibration") / "tiny.safetensors"
    save_weights(path, model, metadata)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLO dataset of solid-colour 40x30 images: TRAIN_COLOURS in train, VAL_COLOURS in val."""
    folder = tmp_path_factory.mktemp("calibration_data")
    splits: dict[str, list[ImageRecord]] = {}
    for split, colours in (("train", TRAIN_COLOURS), ("val", VAL_COLOURS)):
        splits[split] = []
        for index, colour in enumerate(colours):
            path = folder / "src" / f"{split}{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 30), colour).save(path)
            splits[split].append(ImageRecord(path, 40, 30, [[2, 2, 20, 20]], [0], CLASSES))
    root = folder / "yolo"
    write_dataset(DetectionDataset(CLASSES, splits), root, "yolo")
    return root


def calibration_images(call: QuantizeCall, fmt: str) -> list[np.ndarray]:
    """The images of a call: ONNX samples are feeds {input name: image}, OpenVINO's images."""
    if fmt == "onnx":
        assert all(list(sample) == [INPUT_NAME] for sample in call.samples)
        return [sample[INPUT_NAME] for sample in call.samples]
    return call.samples


def check_inputs(images: list[np.ndarray]) -> None:
    """Each image as the graph takes it: (1, 3, S, S) float32 in [0, 1]."""
    for image in images:
        assert image.shape == (1, 3, SIZE, SIZE) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0


def colours(images: list[np.ndarray]) -> list[tuple[int, ...]]:
    """The colour of each solid calibration image (as 0-255 RGB)."""
    check_inputs(images)
    found = []
    for image in images:
        pixel = image[0, :, 0, 0]
        assert np.array_equal(image[0], np.broadcast_to(pixel[:, None, None], image[0].shape))
        found.append(tuple(int(value) for value in np.rint(pixel * 255)))
    return found


def export_int8(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    weights: Path,
    out: Path,
    *options: str,
) -> None:
    """`onestage export --precision int8` of `weights` to `out` in this process; it succeeds."""
    arguments = ("--weights", str(weights), "--precision", "int8", "--out", str(out), *options)
    done = run_in_process(monkeypatch, capsys, "export", *arguments)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", ".onnx"), ("openvino", ".xml")])
def test_calib_n_calibrates_on_n_different_images(
    nncf_calls, weights, tmp_path, monkeypatch, capsys, fmt, suffix
):
    out = tmp_path / f"int8{suffix}"
    export_int8(monkeypatch, capsys, weights, out, "--format", fmt, "--calib", "3")

    (call,) = nncf_calls
    assert (len(call.samples), call.subset_size) == (3, 3)
    images = calibration_images(call, fmt)
    check_inputs(images)
    assert len({image.tobytes() for image in images}) == 3


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ((), TRAIN_COLOURS),
        (("--calib-split", "val"), VAL_COLOURS),
        (("--calib", "2"), TRAIN_COLOURS[:2]),
    ],
)
def test_calib_data_calibrates_on_the_images_of_that_split(
    nncf_calls, weights, dataset, tmp_path, monkeypatch, capsys, options, expected
):
    out = tmp_path / "int8.onnx"
    export_int8(monkeypatch, capsys, weights, out, "--calib-data", str(dataset), *options)

    (call,) = nncf_calls
    assert (len(call.samples), call.subset_size) == (len(expected), len(expected))
    assert sorted(colours(calibration_images(call, "onnx"))) == sorted(expected)
