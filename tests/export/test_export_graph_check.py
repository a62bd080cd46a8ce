"""An exported file's metadata is checked against its graph at load: metadata edited after
export (and sealed again, so that the content hash holds) is refused in one line naming the
file and the field, on ONNX Runtime and on OpenVINO, for a point head and an anchor head."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from onestage.checkpoint import save_weights
from onestage.engine.predictor import Detector
from onestage.errors import OnestageError
from onestage.export.exporter import export_weights
from onestage.export.graph_check import check_graph
from onestage.export.onnx_file import read_onnx_metadata, with_metadata
from onestage.export.seal import HASH_KEY, PLACEHOLDER, seal_bytes
from onestage.models import build_model
from onestage.runtime.onnxruntime_backend import OnnxRuntimeForward
from onestage.runtime.openvino_backend import read_ir, save_ir

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(model, format) -> an export of tiny untrained weights: "csp-t" (points, levels 20 and
    10 at 320) and "nano" (anchors, 4 per cell); shared by the module, read only."""
    folder = tmp_path_factory.mktemp("graph_check")
    paths = {}
    for name in ("csp-t", "nano"):
        model = build_model(name, num_classes=2).eval()
        metadata = {
            "model": name,
            "spec": model.spec.to_dict(),
            "class_names": ["cat", "dog"],
            "anchors": "seed",
            "input_size": model.input_size,
        }
        weights = folder / f"{name}.safetensors"
        save_weights(weights, model, metadata)
        for fmt in ("onnx", "openvino"):
            paths[name, fmt] = export_weights(weights, fmt, "f32").path
    return paths


def edited_copy(path: Path, folder: Path, edit: Edit) -> Path:
    """A copy of the export at `path` in `folder` with its metadata changed by `edit` (in
    place), sealed again the way export seals it, so that a load passes the content hash check
    and reaches the graph check."""
    copy = folder / path.name
    if path.suffix == ".onnx":
        metadata = {**read_onnx_metadata(path), HASH_KEY: PLACEHOLDER}
        edit(metadata)
        copy.write_bytes(seal_bytes(with_metadata(path.read_bytes(), metadata), copy))
    else:
        model, metadata = read_ir(path)
        metadata[HASH_KEY] = PLACEHOLDER
        edit(metadata)
        save_ir(model, metadata, copy)
    return copy


def reverse_levels(metadata: dict[str, Any]) -> None:
    metadata["coding"]["feature_sizes"].reverse()


def double_reg_max(metadata: dict[str, Any]) -> None:
    metadata["coding"]["reg_max"] *= 2


def grow_input(metadata: dict[str, Any]) -> None:
    metadata["input_size"] += 32


def drop_a_class(metadata: dict[str, Any]) -> None:
    metadata["class_names"].pop()


def more_anchors_per_cell(metadata: dict[str, Any]) -> None:
    metadata["coding"]["anchors_per_cell"] += 2


EDITS = [
    pytest.param(name, edit, field, id=f"{name}-{edit.__name__}")
    for name, edit, field in [
        ("csp-t", reverse_levels, "coding.feature_sizes"),
        ("csp-t", double_reg_max, "coding.reg_max"),
        ("csp-t", grow_input, "input_size"),
        ("csp-t", drop_a_class, "class_names"),
        ("nano", reverse_levels, "coding.feature_sizes"),
        ("nano", drop_a_class, "class_names"),
        ("nano", more_anchors_per_cell, "coding.anchors_per_cell"),
    ]
]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize(("name", "edit", "field"), EDITS)
def test_metadata_that_disagrees_with_the_graph_is_refused_in_one_line(
    exports, tmp_path, fmt, name, edit, field
):
    path = edited_copy(exports[name, fmt], tmp_path, edit)
    with pytest.raises(OnestageError) as raised:
        Detector.load(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: metadata '{field}' ") and "\n" not in message


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("csp-t", grow_input, "metadata 'input_size' 352 does not match the graph's input 320"),
        (
            "csp-t",
            double_reg_max,
            "metadata 'coding.reg_max' 32 does not match the graph's output (70 values per "
            "prior: reg_max 16 with 2 classes)",
        ),
        (
            "nano",
            drop_a_class,
            "metadata 'class_names' (1 class) does not match the graph's output (7 values per "
            "prior: 2 classes)",
        ),
        (
            "nano",
            more_anchors_per_cell,
            "metadata 'coding.anchors_per_cell' 6 does not match the graph's output (2140 "
            "priors over 535 cells: 4 per cell)",
        ),
    ],
    ids=["input_size", "reg_max", "class_names", "anchors_per_cell"],
)
def test_the_messages_say_what_the_graph_has(exports, tmp_path, name, edit, message):
    path = edited_copy(exports[name, "onnx"], tmp_path, edit)
    with pytest.raises(OnestageError) as raised:
        Detector.load(path)
    assert str(raised.value) == f"{path}: {message}"


def test_an_onnx_file_on_openvino_is_checked_too(exports, tmp_path):
    path = edited_copy(exports["nano", "onnx"], tmp_path, more_anchors_per_cell)
    with pytest.raises(OnestageError, match=r"metadata 'coding.anchors_per_cell' 6 "):
        Detector.load(path, backend="openvino")


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_a_copy_sealed_again_without_a_change_loads(exports, tmp_path, fmt):
    path = edited_copy(exports["nano", fmt], tmp_path, lambda metadata: None)
    assert Detector.load(path).class_names == ("cat", "dog")


def test_metadata_of_the_wrong_kind_is_left_to_the_metadata_check(exports, tmp_path):
    def text_size(metadata: dict[str, Any]) -> None:
        metadata["input_size"] = "320"

    path = edited_copy(exports["csp-t", "onnx"], tmp_path, text_size)
    with pytest.raises(OnestageError, match=r"'input_size' must be an integer"):
        Detector.load(path)


def test_an_anchor_heads_symbolic_prior_count_is_read_from_one_forward(exports):
    images, preds = OnnxRuntimeForward(exports["nano", "onnx"], "nano").shapes()
    assert images == (None, 3, 320, 320) and preds == (None, 2140, 7)


# csp-t's layout at 320 with two classes: 500 priors of 70 values.
CSP_T = {
    "input_size": 320,
    "class_names": ["a", "b"],
    "coding": {"box_coding": "points", "feature_sizes": [[20, 20], [10, 10]], "reg_max": 16},
}


def test_dynamic_dimensions_are_accepted():
    check_graph(Path("m.onnx"), CSP_T, (None, 3, None, None), (None, None, None))
    check_graph(Path("m.onnx"), CSP_T, (None, 3, 320, 320), (None, 500, None))
    with pytest.raises(OnestageError, match=r"^m.onnx: metadata 'class_names' "):
        check_graph(Path("m.onnx"), CSP_T, (None, 3, 320, 320), (None, None, 71))


def test_levels_of_the_wrong_kind_are_left_to_the_metadata_check():
    coding = {"box_coding": "anchors", "feature_sizes": [[0, 0]], "anchors_per_cell": 4}
    check_graph(Path("m.onnx"), {**CSP_T, "coding": coding}, (None, 3, 320, 320), (None, 20, 7))


def test_a_graph_of_another_form_is_refused_in_one_line():
    with pytest.raises(OnestageError) as raised:
        check_graph(Path("m.onnx"), CSP_T, (None, 3, 320), (None, 500, 70))
    assert str(raised.value) == (
        "m.onnx: the graph maps (?, 3, 320) to (?, 500, 70), not (batch, 3, S, S) images to "
        "(batch, priors, values)"
    )


def test_a_graph_the_shape_probe_cannot_run_is_refused_in_one_line(tmp_path):
    """Integer images, and an output whose size depends on their values (so stays symbolic)."""
    images = helper.make_tensor_value_info("images", TensorProto.INT64, ["batch", 3, 4, 4])
    preds = helper.make_tensor_value_info("preds", TensorProto.INT64, [4, "found"])
    nonzero = helper.make_node("NonZero", ["images"], ["preds"])
    graph = helper.make_graph([nonzero], "g", [images], [preds])
    path = tmp_path / "ints.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(OnestageError, match=r"ints.onnx: ONNX Runtime cannot run it \("):
        OnnxRuntimeForward(path, path).shapes()


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_a_whole_graph_export_whose_classes_disagree_with_its_scores_is_refused(tmp_path, fmt):
    model = build_model("nano", num_classes=2).eval()
    metadata = {"model": "nano", "spec": model.spec.to_dict(), "class_names": ["cat", "dog"],
                "anchors": "seed", "input_size": model.input_size}  # fmt: skip
    weights = tmp_path / "nano.safetensors"
    save_weights(weights, model, metadata)
    exported = export_weights(weights, fmt, "f32", nms=True).path
    assert Detector.load(exported).nms_in_graph

    def drop_a_class(metadata: dict[str, Any]) -> None:
        metadata["class_names"] = metadata["class_names"][:-1]

    (tmp_path / "edited").mkdir()
    edited = edited_copy(exported, tmp_path / "edited", drop_a_class)
    message = rf"^{edited}: metadata 'class_names' \(1 class\) does not match the graph's scores"
    with pytest.raises(OnestageError, match=message):
        Detector.load(edited)
