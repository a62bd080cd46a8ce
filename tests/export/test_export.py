"""Export to ONNX and OpenVINO: parity with torch for every built-in, files that predict on their
own, and one-line errors for bad files and impossible precisions."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
from torch import nn

from helpers import run_in_process, run_onestage
from onestage.checkpoint import save_weights
from onestage.data.icons import SEED_CLASS_NAMES
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator, split_stream
from onestage.engine.evaluator import synthetic_eval_set
from onestage.engine.predictor import Detector
from onestage.errors import OnestageError
from onestage.export import exporter
from onestage.export.exporter import ExportResult, export_weights
from onestage.export.in_memory import export_metadata
from onestage.export.onnx_file import read_onnx_metadata
from onestage.export.onnx_graph import onnx_model_bytes
from onestage.export.quantize import calibration_inputs
from onestage.models import build_model, model_names
from onestage.runtime import openvino_backend
from onestage.runtime.onnxruntime_backend import OnnxRuntimeForward
from onestage.runtime.openvino_backend import OpenVinoForward, model_from_onnx
from onestage.runtime.postprocess import postprocess

PARITY_ATOL = 1e-4
INT8_AP_TOLERANCE = 0.015  # mAP@[.5:.95] on 8 images, int8 against f32 (3x what is measured)


def sensitive(model: nn.Module, seed: int = 0) -> nn.Module:
    """A freshly built model barely depends on its input (heads start at their prior biases):
    give every conv random weights and every BatchNorm random statistics, so that parity is
    tested on outputs that move with the image."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                noise = torch.randn(module.weight.shape, generator=generator)
                module.weight.copy_(noise * (2.0 / fan_in) ** 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
    return model.eval()


@pytest.mark.parametrize("name", [n for n in model_names() if n != "seed-reference"])
def test_every_built_in_exports_with_raw_outputs_within_1e_4_of_torch(name):
    model = sensitive(build_model(name, num_classes=4))
    size = model.input_size
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(images)
    graph = onnx_model_bytes(model, size)

    from_onnxruntime = torch.from_numpy(OnnxRuntimeForward(graph, name)(images.numpy()))
    from_openvino = torch.from_numpy(
        OpenVinoForward(model_from_onnx(graph), "f32", name)(images.numpy())
    )

    assert expected.std() > 0.1  # outputs that depend on the image
    torch.testing.assert_close(from_onnxruntime, expected, atol=PARITY_ATOL, rtol=0)
    torch.testing.assert_close(from_openvino, expected, atol=PARITY_ATOL, rtol=0)


@pytest.mark.parametrize("weights", ["animals", "seed_animals"])
def test_shipped_weights_give_the_same_detections_on_every_f32_backend(weights):
    detectors = [
        Detector.load(weights, "cpu", backend=backend)
        for backend in ("torch", "onnxruntime", "openvino")
    ]
    eval_set = synthetic_eval_set(detectors[0].class_names, 6, objects=(1, 8), seed=5)
    images = [eval_set.load_image(index) for index in range(len(eval_set))]
    reference, *others = [detector.detect(images) for detector in detectors]
    assert sum(len(found.scores) for found in reference) >= 6
    for detections in others:
        for mine, theirs in zip(detections, reference, strict=True):
            np.testing.assert_array_equal(mine.class_ids, theirs.class_ids)
            np.testing.assert_allclose(mine.scores, theirs.scores, atol=1e-4)
            np.testing.assert_allclose(mine.boxes_xyxy, theirs.boxes_xyxy, atol=1e-2)  # pixels


def _trained_like_weights(folder: Path, name: str = "csp-t", input_size: int = 320) -> Path:
    model = sensitive(build_model(name, num_classes=3, input_size=input_size), seed=2)
    metadata = {
        "model": name,
        "spec": model.spec.to_dict(),
        "class_names": ["cat", "dog", "fox"],
        "anchors": "seed",
        "input_size": model.input_size,
        "loss": "quality",
    }
    path = folder / "weights.safetensors"
    save_weights(path, model, metadata)
    return path


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", ".onnx"), ("openvino", ".xml")])
def test_an_exported_file_predicts_alone_as_the_weights_do(tmp_path, fmt, suffix):
    weights = _trained_like_weights(tmp_path)
    result = export_weights(weights, fmt, "f32")
    assert result.path == tmp_path / f"weights{suffix}" and result.max_abs_diff < PARITY_ATOL
    weights.unlink()  # the file alone

    exported = Detector.load(result.path)
    torch_detector = Detector.load(_trained_like_weights(tmp_path / "again"), "cpu")

    assert exported.model is None and exported.class_names == ("cat", "dog", "fox")
    assert exported.backend == ("onnxruntime" if fmt == "onnx" else "openvino")
    assert exported.metadata["parameters"] > 0 and exported.metadata["precision"] == "f32"
    images = np.random.default_rng(3).random((3, 3, 320, 320), dtype=np.float32)
    mine, theirs = exported.raw_outputs(images), torch_detector.raw_outputs(images)
    np.testing.assert_allclose(mine, theirs, atol=PARITY_ATOL, rtol=0)
    found = postprocess(mine, exported.coding, conf_threshold=0.01)
    expected = postprocess(theirs, torch_detector.coding, conf_threshold=0.01)
    assert [d.class_ids.tolist() for d in found] == [d.class_ids.tolist() for d in expected]


def test_the_reported_parity_is_the_exported_files_own_difference_from_torch(tmp_path, monkeypatch):
    """`max_abs_diff` is the largest raw-output difference between the file written and the
    torch weights on the images the exporter checked: the test recomputes it on those images,
    for a faithful export and for one whose graph was made from other (random) weights."""
    weights = _trained_like_weights(tmp_path, input_size=128)
    checked: list[list[np.ndarray]] = []

    def recording_inputs(*arguments) -> list[np.ndarray]:
        checked.append(calibration_inputs(*arguments))
        return checked[-1]

    def other_weights_graph(model: nn.Module, size: int) -> bytes:
        return onnx_model_bytes(sensitive(copy.deepcopy(model), seed=9), size)

    def own_difference(result: ExportResult) -> float:
        exported, reference = Detector.load(result.path), Detector.load(weights, "cpu")
        images = checked[-1][: result.parity_images]
        return max(
            float(np.abs(exported.raw_outputs(x) - reference.raw_outputs(x)).max()) for x in images
        )

    monkeypatch.setattr(exporter, "calibration_inputs", recording_inputs)
    faithful = export_weights(weights, "onnx", out=tmp_path / "faithful.onnx")
    assert faithful.parity_images == 4
    assert faithful.max_abs_diff == pytest.approx(own_difference(faithful), rel=1e-3)
    assert faithful.max_abs_diff < PARITY_ATOL

    monkeypatch.setattr(exporter, "onnx_model_bytes", other_weights_graph)
    unfaithful = export_weights(weights, "onnx", out=tmp_path / "unfaithful.onnx")
    assert unfaithful.max_abs_diff == pytest.approx(own_difference(unfaithful), rel=1e-3)
    assert unfaithful.max_abs_diff > 0.1


def test_exports_leave_out_postprocess_defaults_and_files_that_carry_them_still_load(
    tmp_path, monkeypatch
):
    """Files exported before this change carried `"postprocess": asdict(PredictOptions())`, which
    nothing reads: new ones leave it out, and an old one loads and runs as a new one."""
    weights = _trained_like_weights(tmp_path, input_size=128)
    new = Detector.load(export_weights(weights, "onnx", out=tmp_path / "new.onnx").path)
    assert "postprocess" not in new.metadata
    former = {"conf": 0.25, "iou": 0.5, "max_det": 100, "pre_nms_topk": 400, "candidates": "all"}

    def as_before(*arguments) -> dict:
        return {**export_metadata(*arguments), "postprocess": former}

    monkeypatch.setattr(exporter, "export_metadata", as_before)
    old = Detector.load(export_weights(weights, "onnx", out=tmp_path / "old.onnx").path)
    assert old.metadata["postprocess"] == former
    images = np.random.default_rng(4).random((2, 3, 128, 128), dtype=np.float32)
    np.testing.assert_array_equal(old.raw_outputs(images), new.raw_outputs(images))


def test_files_exported_before_the_layout_named_its_priors_decode_as_their_weights_say(
    tmp_path, monkeypatch
):
    """An anchor model trained with the focal loss scores by sigmoid: files exported before the
    coding layout recorded "anchor_config" and "score_mode" take them from the weights' anchors
    and loss, and decode exactly as a new export does."""
    model = sensitive(
        build_model("seed", num_classes=3, input_size=320, anchors="seed-intended",
                    score_mode="sigmoid"),
        seed=3,
    )  # fmt: skip
    metadata = {"model": "seed", "class_names": ["cat", "dog", "fox"], "anchors": "seed-intended",
                "input_size": 320, "loss": "focal"}  # fmt: skip
    weights = tmp_path / "focal.safetensors"
    save_weights(weights, model, metadata)
    new = Detector.load(export_weights(weights, "onnx", out=tmp_path / "new.onnx").path)
    assert {k: new.metadata["coding"][k] for k in ("anchor_config", "score_mode")} == {
        "anchor_config": "seed-intended",
        "score_mode": "sigmoid",
    }

    def as_before(*arguments) -> dict:
        exported = export_metadata(*arguments)
        coding = {
            k: v for k, v in exported["coding"].items() if k not in ("anchor_config", "score_mode")
        }
        return {**exported, "coding": coding}

    monkeypatch.setattr(exporter, "export_metadata", as_before)
    old = Detector.load(export_weights(weights, "onnx", out=tmp_path / "old.onnx").path)
    assert "score_mode" not in old.metadata["coding"]
    assert old.coding.score_mode == new.coding.score_mode == "sigmoid"
    np.testing.assert_array_equal(old.coding.anchors_xyxy, new.coding.anchors_xyxy)
    images = np.random.default_rng(5).random((2, 3, 320, 320), dtype=np.float32)
    raw = new.raw_outputs(images)
    np.testing.assert_array_equal(old.raw_outputs(images), raw)
    logits = new.coding.split(raw)[1]
    expected = torch.from_numpy(logits[..., :-1]).sigmoid().numpy()
    np.testing.assert_allclose(old.coding.class_scores(logits), expected, rtol=1e-6, atol=1e-7)


def _letterbox_weights(folder: Path) -> Path:
    """The shipped seed_animals weights saved again with `letterbox: true`: a detector that
    pads a non-square image to its square input instead of stretching it."""
    seed = Detector.load("seed_animals", "cpu")
    path = folder / "letterboxed.safetensors"
    save_weights(path, seed.model, {**seed.metadata, "letterbox": True})
    return path


def test_a_letterbox_export_predicts_the_weights_boxes_on_a_non_square_image(tmp_path):
    """The exported file pads a 320x200 image as the weights do (its metadata keeps
    `letterbox`), so it finds the same boxes."""
    weights = _letterbox_weights(tmp_path)
    exported = Detector.load(export_weights(weights, "onnx").path)
    letterboxed = Detector.load(weights, "cpu")
    stretched = Detector.load("seed_animals", "cpu")
    config = SyntheticConfig(width=320, height=200, objects=(3, 3), classes=SEED_CLASS_NAMES)
    image = SyntheticGenerator(config).sample(2, stream=split_stream("test")).image

    found, expected = exported.detect([image])[0], letterboxed.detect([image])[0]
    assert len(expected.scores) >= 2
    np.testing.assert_array_equal(found.class_ids, expected.class_ids)
    np.testing.assert_allclose(found.scores, expected.scores, atol=1e-4)
    np.testing.assert_allclose(found.boxes_xyxy, expected.boxes_xyxy, atol=1e-2)  # pixels
    assert exported.metadata.get("letterbox") is True
    # Stretching the same image moves the boxes far beyond that tolerance.
    unpadded = stretched.detect([image])[0]
    assert len(unpadded.scores) != len(expected.scores) or not np.allclose(
        unpadded.boxes_xyxy, expected.boxes_xyxy, atol=1.0
    )


# The int8 export and its evaluation run through the command line: an OpenVINO int8 model
# compiled inside the test process was followed, several tests later, by a segmentation fault
# of the interpreter in the full run. The f32 reference is the torch weights (every f32 export
# gives their detections: test_shipped_weights_give_the_same_detections_on_every_f32_backend).
@pytest.mark.parametrize(
    ("fmt", "suffix", "data_suffix"), [("onnx", ".onnx", ".onnx"), ("openvino", ".xml", ".bin")]
)
def test_int8_export_is_smaller_and_keeps_the_detections_of_a_trained_model(
    tmp_path, monkeypatch, capsys, fmt, suffix, data_suffix
):
    int8_file = tmp_path / f"seed_int8{suffix}"
    exported = run_onestage(
        "export", "--weights", "seed_animals", "--format", fmt, "--precision", "int8",
        "--calib", "16", "--out", str(int8_file),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr

    def mean_ap(weights: str, run: Callable[..., subprocess.CompletedProcess]) -> float:
        report = tmp_path / f"report_{Path(weights).stem}"
        evaluation = ("--weights", weights, "--synthetic", "8", "--seed", "4", "--out", str(report))
        done = run("evaluate", *evaluation)
        assert done.returncode == 0, done.stderr
        assert "precision" not in done.stderr
        return json.loads((report / "metrics.json").read_text())["coco"]["AP"]

    assert _file_metadata(int8_file)["precision"] == "int8"
    f32_parameter_bytes = sum(
        tensor.numel() * 4 for tensor in Detector.load("seed_animals").model.state_dict().values()
    )
    assert int8_file.with_suffix(data_suffix).stat().st_size < 0.4 * f32_parameter_bytes
    f32_ap = mean_ap(
        "seed_animals", lambda *arguments: run_in_process(monkeypatch, capsys, *arguments)
    )
    int8_ap = mean_ap(str(int8_file), run_onestage)
    assert f32_ap > 0.6
    # Measured: int8 within 0.005 of f32 (0.699) in both formats; calibrated on one image
    # instead of 16, 0.014 (openvino) and 0.019 (onnx) below it, so this tolerance does not
    # reliably see that: test_export_calibration.py checks the calibration images.
    assert abs(int8_ap - f32_ap) < INT8_AP_TOLERANCE


def _file_metadata(path: Path) -> dict:
    """onestage's metadata of an exported file, read without a runtime."""
    if path.suffix == ".onnx":
        return read_onnx_metadata(path)
    entry = ElementTree.parse(path).getroot().find("rt_info/onestage/metadata")
    return json.loads(entry.get("value"))


def test_export_and_predict_from_the_command_line(tmp_path):
    weights = _trained_like_weights(tmp_path)
    exported = run_onestage("export", "--weights", str(weights), "--format", "onnx")
    assert exported.returncode == 0, exported.stderr
    assert "weights.onnx" in exported.stdout and "of torch fp32" in exported.stdout
    image = tmp_path / "image.png"
    from PIL import Image

    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(image)
    predicted = run_onestage(
        "predict",
        str(image),
        "--weights",
        str(tmp_path / "weights.onnx"),
        "--out",
        str(tmp_path / "out"),
    )
    assert predicted.returncode == 0, predicted.stderr
    assert "backend: onnxruntime" in predicted.stdout
    assert (tmp_path / "out" / "predictions.json").is_file()


def _one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def test_bad_exported_files_are_one_line_errors(tmp_path, monkeypatch, capsys):
    weights = _trained_like_weights(tmp_path)
    good = export_weights(weights, "onnx").path
    xml = export_weights(weights, "openvino").path
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:5000])
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(onnx_model_bytes(sensitive(build_model("nano", num_classes=2)), 320))
    broken_xml = tmp_path / "broken.xml"
    broken_xml.write_text(xml.read_text()[:3000])
    broken_xml.with_suffix(".bin").write_bytes(xml.with_suffix(".bin").read_bytes())
    lonely_xml = tmp_path / "lonely.xml"
    lonely_xml.write_text(xml.read_text())
    image = tmp_path / "image.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)

    def predict(path: Path) -> subprocess.CompletedProcess:
        arguments = ("predict", str(image), "--weights", str(path), "--out", str(tmp_path))
        return run_in_process(monkeypatch, capsys, *arguments)

    _one_line_error(predict(truncated), "truncated.onnx", "not a valid ONNX model")
    _one_line_error(predict(text), "notes.onnx", "not a valid ONNX model")
    _one_line_error(predict(foreign), "foreign.onnx", "not a onestage export")
    _one_line_error(predict(broken_xml), "broken.xml", "OpenVINO cannot read it")
    _one_line_error(predict(lonely_xml), "lonely.xml", "lonely.bin is missing")
    bf16_onnx = ("export", "--weights", str(weights), "--format", "onnx", "--precision", "bf16")
    _one_line_error(
        run_in_process(monkeypatch, capsys, *bf16_onnx), "format onnx exports f32, int8, not 'bf16'"
    )


def test_bf16_on_a_cpu_without_it_is_refused(tmp_path, monkeypatch):
    weights = _trained_like_weights(tmp_path)
    monkeypatch.setattr(openvino_backend, "cpu_supports_bf16", lambda: False)
    with pytest.raises(OnestageError, match="this CPU cannot run bf16"):
        Detector.load(weights, backend="openvino", precision="bf16")
    with pytest.raises(OnestageError, match="this CPU cannot run bf16"):
        export_weights(weights, "openvino", "bf16")
    assert not (tmp_path / "weights_bf16.xml").exists()


@pytest.mark.parametrize("bf16", [True, False])
def test_the_default_export_is_the_fastest_accurate_variant_this_cpu_runs(
    tmp_path, monkeypatch, capsys, bf16
):
    weights = _trained_like_weights(tmp_path)
    monkeypatch.setattr(openvino_backend, "cpu_supports_bf16", lambda: bf16)
    assert exporter.default_target() == (("openvino", "bf16") if bf16 else ("onnx", "f32"))
    assert exporter.default_target("onnx") == ("onnx", "f32")
    assert exporter.default_target("openvino") == ("openvino", "bf16" if bf16 else "f32")
    assert exporter.default_target(None, "int8")[1] == "int8"
    done = run_in_process(monkeypatch, capsys, "export", "--weights", str(weights))
    assert done.returncode == 0, done.stderr
    expected = tmp_path / ("weights_bf16.xml" if bf16 else "weights.onnx")
    assert expected.is_file()
    assert f"({'openvino, bf16' if bf16 else 'onnx, f32'})" in done.stdout
    assert Detector.load(expected).runtime_description == (
        "openvino bf16" if bf16 else "onnxruntime"
    )
    named = export_weights(weights, out=tmp_path / "named.xml")  # the suffix names the format
    assert (named.format, named.precision) == ("openvino", "bf16" if bf16 else "f32")


def test_a_bf16_export_runs_in_f32_on_a_cpu_without_bf16(tmp_path, monkeypatch, caplog):
    weights = _trained_like_weights(tmp_path)
    monkeypatch.setattr(openvino_backend, "cpu_supports_bf16", lambda: True)
    exported = export_weights(weights, "openvino", "bf16").path
    monkeypatch.setattr(openvino_backend, "cpu_supports_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="onestage.runtimes"):
        detector = Detector.load(exported)
    assert detector.runtime_description == "openvino f32"
    assert "exported for bf16; this CPU has none, so it runs in f32" in caplog.text
    with pytest.raises(OnestageError, match="this CPU cannot run bf16"):
        Detector.load(exported, precision="bf16")  # asked for by name: refused
