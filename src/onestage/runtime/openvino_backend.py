"""OpenVINO as a detector's forward: the ONNX graph (`export.onnx_graph`) or an OpenVINO IR file
(.xml + .bin) on the CPU, in f32, bf16 (CPUs with AVX-512 bf16 or AMX) or int8.

onestage's metadata travels in the IR's runtime info under RT_INFO_PATH. f32 is asked for
explicitly: OpenVINO's own default on a bf16-capable CPU is bf16.
"""

from __future__ import annotations

import errno
import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from onestage.errors import OnestageError
from onestage.export.onnx_file import (
    BOXES_NAME,
    INPUT_NAME,
    METADATA_KEY,
    SCORES_NAME,
    SELECTED_NAME,
    metadata_from_map,
    read_onnx_metadata,
)
from onestage.export.seal import files_of, seal
from onestage.fileio import WriteError
from onestage.runtime import Shape, nms_feeds, unit_float
from onestage.runtime.signal_stack import kept_signal_stack

PRECISIONS = ("f32", "bf16", "int8")
RT_INFO_PATH = ["onestage", "metadata"]
_HINTS = {"f32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: what is not quantised runs f32


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO can run bf16 on this CPU."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def check_precision(precision: str, source: str | Path) -> None:
    """One-line errors for an unknown precision, or bf16 on a CPU without bf16."""
    if precision not in PRECISIONS:
        raise OnestageError(
            f"{source}: unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}"
        )
    if precision == "bf16" and not cpu_supports_bf16():
        raise OnestageError(
            f"{source}: this CPU cannot run bf16 (it needs AVX-512 bf16 or AMX); use f32 or int8"
        )


def model_from_onnx(model_bytes: bytes) -> Any:
    """An `openvino.Model` converted from a serialised ONNX model."""
    import openvino

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(model_bytes)
        return openvino.convert_model(str(path))


def save_ir(model: Any, metadata: dict[str, Any], path: Path) -> None:
    """Write `model` as OpenVINO IR (`path` .xml and its .bin), f32 weights, `metadata` in its
    runtime info. Both files are written to temporary names and then renamed."""
    with staged_ir(path) as staged:
        write_ir(model, json.dumps(metadata), staged)


def write_ir(model: Any, metadata_json: str, path: Path) -> None:
    """Save `model` with `metadata_json` in its runtime info as IR at `path`, f32 weights."""
    import openvino

    model.set_rt_info(metadata_json, RT_INFO_PATH)
    try:
        openvino.save_model(model, str(path), compress_to_fp16=False)
    except RuntimeError as error:  # OpenVINO's C++ error for a file it could not write
        reason = f"OpenVINO could not save the model ({_message(error)})"
        raise OSError(errno.EIO, reason, str(path)) from None


@contextmanager
def staged_ir(path: Path) -> Iterator[Path]:
    """A temporary IR path beside `path`; once the block has written it without error, it is
    sealed (`seal.seal`: the metadata's content hash placeholder becomes the digest of both
    files), then its .bin and its .xml are renamed to `path`. A write that fails (a full disk,
    a read-only folder) is a `WriteError` naming `path`, and nothing staged is left."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.") as folder:
            staged = Path(folder) / path.name
            yield staged
            seal(files_of(staged))
            staged.with_suffix(".bin").replace(path.with_suffix(".bin"))
            staged.replace(path)
    except WriteError:
        raise
    except OSError as error:
        raise WriteError(path, error) from None


def read_ir(path: Path) -> tuple[Any, dict[str, Any]]:
    """(openvino.Model, onestage metadata) of an existing .xml/.bin pair (`seal.check_seal`
    has seen both) or .onnx file, with one-line errors for a foreign or damaged file."""
    import openvino

    onnx_metadata = read_onnx_metadata(path) if path.suffix == ".onnx" else None  # checked first
    try:
        model = openvino.Core().read_model(str(path))
    except RuntimeError as error:
        raise OnestageError(f"{path}: OpenVINO cannot read it ({_message(error)})") from None
    if onnx_metadata is not None:
        return model, onnx_metadata
    props = {}
    if model.has_rt_info(RT_INFO_PATH):
        props[METADATA_KEY] = model.get_rt_info(RT_INFO_PATH).astype(str)
    return model, metadata_from_map(props, path)


class OpenVinoForward:
    """Runs an `openvino.Model` compiled for the CPU at `precision`, `threads` inference
    threads (default: OpenVINO's, one per physical core), latency-oriented (one stream)."""

    backend = "openvino"

    def __init__(
        self, model: Any, precision: str, source: str | Path, threads: int | None = None
    ) -> None:
        import openvino

        check_precision(precision, source)
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            with kept_signal_stack():  # see onestage.runtime.signal_stack
                self.compiled = openvino.Core().compile_model(model, "CPU", config)
                self.request = self.compiled.create_infer_request()
        except RuntimeError as error:
            raise OnestageError(
                f"{source}: OpenVINO cannot compile it ({_message(error)})"
            ) from None
        self.precision = precision
        self._lock = threading.Lock()  # an infer request serves one call at a time

    def shapes(self) -> tuple[Shape, Shape]:
        """The compiled graph's input and output shapes (None: dynamic); compiling has
        inferred what an .onnx file leaves symbolic."""
        return _dims(self.compiled.inputs[0]), _dims(self.compiled.outputs[0])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) images, uint8 pixels or float32 in [0, 1] -> (B, A, values) float32 raw
        outputs; calls from several threads take turns."""
        array = unit_float(images)
        with self._lock:
            output = self.request.infer({0: array})[0]  # a view of the request's output buffer
            return np.array(output, dtype=np.float32, copy=True)

    def whole_graph(
        self, images: np.ndarray, max_det: int, iou: float, conf: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A whole-graph file's run (`export.whole_graph`): images as `__call__` takes them ->
        boxes (B, A, 4), scores (B, C, A), selected (N, 3)."""
        feeds = {INPUT_NAME: unit_float(images), **nms_feeds(max_det, iou, conf)}
        with self._lock:
            outputs = self.request.infer(feeds)
            return tuple(  # copies: the outputs are views of the request's buffers
                np.array(outputs[self.compiled.output(name)], copy=True)
                for name in (BOXES_NAME, SCORES_NAME, SELECTED_NAME)
            )


def _dims(port: Any) -> Shape:
    """An OpenVINO port's partial shape as a `Shape`."""
    return tuple(None if dim.is_dynamic else dim.get_length() for dim in port.get_partial_shape())


def _message(error: Exception) -> str:
    """The last meaningful line of OpenVINO's multi-line C++ error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Check ", "Exception from"))]
    return (useful or lines or [type(error).__name__])[-1]
