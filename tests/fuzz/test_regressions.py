"""The defects the fuzzers found, each with its exact failing input: now one-line errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from fuzz.fuzzing import tiny_weights, with_document, write_valid_dataset
from helpers import TINY_ANCHOR_FREE_SPEC
from onestage.checkpoint import METADATA_KEY, load_training_state, save_training_state
from onestage.config import make_config, parse_override
from onestage.data.formats import read_dataset
from onestage.engine.predictor import Detector
from onestage.errors import DataError, OnestageError
from onestage.models.spec import load_spec


def _message(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("path: .\x7f\nnames: [a]\n", "character #x007f is not allowed"),  # yolo-yaml case 15
        ("names: " + "[" * 20_000, "nested deeper than 100 levels"),  # yolo-yaml case 273
        ("names: [a]\nnc: " + "9" * 5000 + "\n", "Exceeds the limit"),
    ],
)
def test_malformed_data_yaml_is_one_quick_line(tmp_path: Path, text: str, phrase: str) -> None:
    root = write_valid_dataset(tmp_path, "yolo")
    (root / "data.yaml").write_text(text, encoding="utf-8")
    began = time.perf_counter()
    with pytest.raises(DataError) as caught:
        read_dataset(root)
    assert time.perf_counter() - began < 0.5
    assert phrase in _message(caught) and str(root / "data.yaml") in _message(caught)


def test_split_folder_name_too_long_for_the_system(tmp_path: Path) -> None:
    root = write_valid_dataset(tmp_path, "yolo")  # yolo-yaml case 158
    (root / "data.yaml").write_text(f"train: '{'9' * 5000}'\nnames: [cat, dog]\n")
    with pytest.raises(DataError, match="not found"):
        read_dataset(root)


def test_deeply_nested_coco_json(tmp_path: Path) -> None:
    root = write_valid_dataset(tmp_path, "coco")
    (root / "annotations" / "instances_train.json").write_text("[" * 100_000)
    with pytest.raises(DataError) as caught:
        read_dataset(root)
    assert "malformed JSON: nested too deeply" in _message(caught)


def test_bad_config_values_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("imgsz: .inf\n")  # config case 16
    with pytest.raises(OnestageError) as caught:
        make_config("fast", path)
    assert _message(caught).startswith(f"{path}: config key 'imgsz' expects int")
    path.write_text(f"lr: {'9' * 400}\n")  # config case 34: OverflowError
    with pytest.raises(OnestageError, match="out of range"):
        make_config(None, path)
    path.write_bytes(b"lr: \xff\n")
    with pytest.raises(OnestageError, match="cannot read the config file"):
        make_config(None, path)
    with pytest.raises(OnestageError, match="malformed YAML"):
        parse_override("lr=[1")


def test_spec_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"name: tiny\xad\n")  # spec case 31
    with pytest.raises(OnestageError) as caught:
        load_spec(path)
    assert "cannot read the spec file" in _message(caught)


def _rewritten(path: Path, change) -> Path:
    """`path` with its onestage JSON document replaced by `change(document)` (its content hash
    recomputed, so that the checks behind it are reached)."""
    data = path.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    document = change(json.loads(header["__metadata__"][METADATA_KEY]))
    out = path.with_name(f"changed_{path.name}")
    out.write_bytes(with_document(data, document))
    return out


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda d: {**d, "spec": {**d["spec"], "neck": 5}}, "does not build"),  # weights case 24
        (lambda d: {**d, "plugins": [["x"]]}, "'plugins' must be"),  # weights case 64
        (lambda d: {**d, "class_names": 7}, "'class_names' must be"),
        (lambda d: {**d, "input_size": 10**9}, "'input_size' must be"),
    ],
)
def test_weights_with_bad_metadata(tmp_path: Path, change, phrase: str) -> None:
    path = _rewritten(tiny_weights(tmp_path), change)
    with pytest.raises(OnestageError) as caught:
        Detector.load(path, "cpu")
    assert phrase in _message(caught) and str(path) in _message(caught)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: {**d, "scalars": 7},  # state case 6: AttributeError
        lambda d: {**d, "scalars": {"9" * 5000: {}}},
        lambda d: {**d, "param_groups": [{"lr": 1}]},
        lambda d: [d],
    ],
)
def test_training_state_with_bad_document(tmp_path: Path, change) -> None:
    parameters = [torch.nn.Parameter(torch.ones(2))]
    optimizer = torch.optim.Adam(parameters)
    path = tmp_path / "last.state.safetensors"
    save_training_state(path, optimizer, {"epoch": 1})
    rng = torch.get_rng_state()
    with pytest.raises(OnestageError) as caught:
        load_training_state(_rewritten(path, change), optimizer)
    torch.set_rng_state(rng)
    assert str(tmp_path) in _message(caught)


def test_a_coco_coordinate_beyond_float_range(tmp_path: Path) -> None:
    root = write_valid_dataset(tmp_path, "coco")  # coco case 818: OverflowError
    path = root / "annotations" / "instances_train.json"
    document = json.loads(path.read_text())
    document["annotations"][0]["bbox"][2] = int("9" * 400)
    path.write_text(json.dumps(document))
    with pytest.raises(DataError) as caught:
        read_dataset(root)
    assert _message(caught) == f"{path}: annotations[0].bbox: a coordinate is too large"


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ("out: 8, k: 3, s: 2", f"out: {'9' * 30}, k: 3, s: 2"),  # spec cases: long long overflow
        ("out: 8, k: 3, s: 2", "out: -1, k: 3, s: 2"),  # spec case: negative dimension
        ("out: 8, k: 3, s: 2", "out: 8, k: 3, s: 2, 7: 1"),  # spec case 165: keyword not a str
        ("input_size: 32", f"input_size: {'9' * 30}"),  # spec case: meta tensor overflow
    ],
)
def test_mutated_spec_values_are_one_line_errors(tmp_path: Path, change: str, phrase: str) -> None:
    from onestage.models.spec_model import build_spec_model

    path = tmp_path / "spec.yaml"
    path.write_text(TINY_ANCHOR_FREE_SPEC.replace(change, phrase, 1))
    with pytest.raises(OnestageError) as caught:
        build_spec_model(load_spec(path), num_classes=2)
    assert str(path) in _message(caught)


def test_a_layer_too_large_to_allocate_is_refused_before_it_is(tmp_path: Path) -> None:
    from onestage.models.spec_model import build_spec_model

    path = tmp_path / "spec.yaml"
    path.write_text(TINY_ANCHOR_FREE_SPEC.replace("out: 8, k: 3, s: 2", "out: 8, k: 3000, s: 2", 1))
    with pytest.raises(OnestageError) as caught:
        build_spec_model(load_spec(path), num_classes=2)
    assert "216,000,016 parameters in one layer (at most 50,000,000" in _message(caught)


@pytest.mark.parametrize("value", ["null", "7", "[1]", '"text"'])
def test_exported_metadata_that_is_not_an_object(value: str) -> None:
    from onestage.export.onnx_file import metadata_from_map

    with pytest.raises(OnestageError) as caught:  # exported generated case: TypeError
        metadata_from_map({"onestage": value}, "m.onnx")
    assert _message(caught) == "m.onnx: onestage metadata is not a JSON object"


def test_a_split_name_with_a_line_break_is_still_one_line(tmp_path: Path) -> None:
    root = write_valid_dataset(tmp_path, "yolo")  # yolo generated case: {'train': '\n'}
    (root / "data.yaml").write_text('names: [cat, dog]\ntrain: "\\n"\n')
    with pytest.raises(DataError) as caught:
        read_dataset(root)
    assert _message(caught).endswith(f"train: split folder or image list {root}/\\n not found")


def test_a_coco_image_size_beyond_any_image(tmp_path: Path) -> None:
    root = write_valid_dataset(tmp_path, "coco")  # coco case 818: OverflowError
    path = root / "annotations" / "instances_train.json"
    document = json.loads(path.read_text())
    document["images"][0]["height"] = int("9" * 400)
    path.write_text(json.dumps(document))
    with pytest.raises(DataError) as caught:
        read_dataset(root)
    assert _message(caught) == (
        f"{path}: images[0].height: expected a positive size up to 64000000, got "
        "99999999999999999999"
    )
