"""`onestage export`: weights to an ONNX file or an OpenVINO IR that predicts on its own.

The file holds the graph up to the head's raw output (`onestage.export.onnx_graph`) and the
export metadata (`onestage.export.in_memory.export_metadata`); post-processing stays onestage's,
the same for every backend. Every export is written to a temporary name first, then loaded
back from its final name and run against torch on a few images: the largest raw-output
difference is reported (`ExportResult.max_abs_diff`), not judged (int8 differs by design). Each
file carries a SHA-256 of all its bytes in its metadata (`onestage.export.seal`), checked
whenever it is loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onestage.data.icons import SEED_CLASS_NAMES
from onestage.engine.evaluator import EvalSet, dataset_eval_set, synthetic_eval_set
from onestage.engine.predictor import WEIGHTS_DIR, Detector, resolve_weights
from onestage.errors import OnestageError
from onestage.export.in_memory import export_metadata
from onestage.export.onnx_file import WHOLE_GRAPH_KEY, with_metadata
from onestage.export.onnx_graph import onnx_model_bytes
from onestage.export.quantize import (
    DEFAULT_CALIBRATION_IMAGES,
    calibration_inputs,
    quantize_onnx_int8,
    write_openvino_int8,
)
from onestage.export.seal import HASH_KEY, PLACEHOLDER, seal_bytes
from onestage.export.whole_graph import whole_graph_bytes
from onestage.fileio import atomic_write_bytes

FORMAT_PRECISIONS = {"onnx": ("f32", "int8"), "openvino": ("f32", "bf16", "int8")}
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}
PARITY_IMAGES = 4
UNSEALED = {HASH_KEY: PLACEHOLDER}  # the metadata's content hash until the files are sealed


@dataclass(frozen=True)
class ExportResult:
    """What `export_weights` wrote and how close its raw outputs are to torch's."""

    path: Path
    format: str
    precision: str
    seconds: float
    max_abs_diff: float  # raw outputs (whole graph: boxes and scores) against torch fp32
    parity_images: int


def default_export_path(weights: Path, fmt: str, precision: str, nms: bool = False) -> Path:
    """Beside the weights (shipped weights: the current folder), named after them:
    best.onnx, best_int8.onnx, best.xml (+ best.bin), best_bf16.xml, best_nms.onnx..."""
    folder = Path.cwd() if weights.parent == WEIGHTS_DIR else weights.parent
    tag = ("" if precision == "f32" else f"_{precision}") + ("_nms" if nms else "")
    return folder / f"{weights.stem}{tag}{SUFFIXES[fmt]}"


def default_target(fmt: str | None = None, precision: str | None = None) -> tuple[str, str]:
    """(format, precision) of an export where either is left out: the fastest accurate variant
    on this CPU in the inference-latency runs (BENCHMARKS.md). A CPU that runs bf16 (AVX-512
    bf16 or AMX) gets OpenVINO bf16; another gets ONNX Runtime f32 (OpenVINO f32 measured
    slower); a format given without a precision gets bf16 only from OpenVINO on such a CPU."""
    from onestage.runtime.openvino_backend import cpu_supports_bf16

    bf16 = cpu_supports_bf16()
    fmt = fmt or ("openvino" if bf16 else "onnx")
    return fmt, precision or ("bf16" if fmt == "openvino" and bf16 else "f32")


def export_weights(
    weights: str | Path,
    fmt: str | None = None,
    precision: str | None = None,
    out: Path | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    calibration_data: Path | None = None,
    calibration_split: str | None = None,
    nms: bool = False,
) -> ExportResult:
    """Export `weights` to `fmt` ("onnx" or "openvino"; left out: the one `out`'s suffix names,
    else `default_target`'s) at `precision` (see FORMAT_PRECISIONS; left out: `default_target`'s);
    int8 is calibrated on `calibration_images` synthetic images, or on the images of a dataset
    split (`calibration_data`, default split train); `nms` puts decoding, scoring and NMS in
    the graph (`export.whole_graph`; f32 and bf16). The export is run once before it is
    returned, so bf16 needs a CPU that runs bf16."""
    if fmt is None and out is not None:  # the output's name tells the format
        fmt = next((name for name, suffix in SUFFIXES.items() if suffix == out.suffix), None)
    fmt, precision = default_target(fmt, precision)
    if fmt not in FORMAT_PRECISIONS:
        raise OnestageError(f"unknown format {fmt!r}; valid: {', '.join(FORMAT_PRECISIONS)}")
    if precision not in FORMAT_PRECISIONS[fmt]:
        raise OnestageError(
            f"format {fmt} exports {', '.join(FORMAT_PRECISIONS[fmt])}, not {precision!r}"
        )
    if nms and precision == "int8":
        raise OnestageError("a whole-graph export (--nms) is f32 or bf16, not int8")
    began = time.perf_counter()
    path = resolve_weights(weights)
    if fmt == "openvino":
        from onestage.runtime.openvino_backend import check_precision

        check_precision(precision, path)
    detector = Detector.load(path, device="cpu")
    if nms and detector.coding.one_to_one:
        raise OnestageError(f"{path}: an NMS-free head needs no --nms; export it without")
    out = out or default_export_path(path, fmt, precision, nms)
    if out.suffix != SUFFIXES[fmt]:
        raise OnestageError(f"{out}: a {fmt} export is named *{SUFFIXES[fmt]}")
    make_graph = whole_graph_bytes if nms else onnx_model_bytes
    graph = make_graph(detector.model, detector.input_size)
    count = calibration_images if precision == "int8" else PARITY_IMAGES
    samples = _sample_set(detector, count, calibration_data, calibration_split)
    inputs = calibration_inputs(detector, samples, count)
    metadata = {**export_metadata(detector.model, detector.metadata, precision), **UNSEALED}
    if nms:
        metadata[WHOLE_GRAPH_KEY] = True
    if fmt == "onnx":
        if precision == "int8":
            graph = quantize_onnx_int8(graph, inputs)
        atomic_write_bytes(out, seal_bytes(with_metadata(graph, metadata), out))
    else:
        from onestage.runtime.openvino_backend import model_from_onnx, save_ir

        if precision == "int8":
            write_openvino_int8(graph, inputs, metadata, out)
        else:
            save_ir(model_from_onnx(graph), metadata, out)
    exported = Detector.load(out)
    checked = inputs[:PARITY_IMAGES]
    difference = _decoded_difference if nms else _raw_difference
    diff = max(difference(exported, detector, x) for x in checked)
    return ExportResult(out, fmt, precision, time.perf_counter() - began, diff, len(checked))


def _raw_difference(exported: Detector, reference: Detector, images: np.ndarray) -> float:
    """The largest raw-output difference of two detectors on `images`."""
    return float(np.abs(exported.raw_outputs(images) - reference.raw_outputs(images)).max())


def _decoded_difference(exported: Detector, reference: Detector, images: np.ndarray) -> float:
    """The largest difference between a whole-graph export's boxes and scores on `images` and
    those decoded on the host from the reference's raw outputs (`export.whole_graph`)."""
    boxes, scores, _ = exported.forward.whole_graph(images, 1, 0.5, 1.0)
    box_part, logits = reference.coding.split(reference.raw_outputs(images))
    expected_boxes = np.clip(reference.coding.decode(box_part), 0.0, 1.0)
    drawn = (expected_boxes[..., 2:] > expected_boxes[..., :2]).all(axis=-1, keepdims=True)
    expected_scores = (reference.coding.class_scores(logits) * drawn).transpose(0, 2, 1)
    return float(max(np.abs(boxes - expected_boxes).max(), np.abs(scores - expected_scores).max()))


def _sample_set(detector: Detector, count: int, data: Path | None, split: str | None) -> EvalSet:
    """The images that calibrate int8 and check parity: a dataset split's (default train), or
    synthetic images (the seed's animals on procedural backgrounds, whatever the weights'
    classes: only the pixels matter here)."""
    if count < 1:
        raise OnestageError(f"--calib must be at least 1, got {count}")
    if data is not None:
        return dataset_eval_set(data, detector.class_names, split or "train")
    return synthetic_eval_set(
        SEED_CLASS_NAMES, count, size=detector.input_size, stream_name="calibration"
    )
