"""An exported file (`onestage export`) as a detector's forward, without torch: an .onnx file
on ONNX Runtime (or OpenVINO), an .xml IR on OpenVINO.

Exported files carry `in_memory.export_metadata`'s metadata: the weights' metadata plus what
reading the graph's output needs without the torch model (`priors.codings.coding_layout`), its
size and compute and its precision. Post-processing defaults are not among them: they are
onestage's own (`onestage.predict_options`), the same for every backend. Files exported before
carry them under "postprocess"; nothing reads that key, so they load as any other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from onestage.errors import OnestageError, first_line
from onestage.export.graph_check import check_graph, check_whole_graph
from onestage.export.onnx_file import WHOLE_GRAPH_KEY, read_onnx_metadata
from onestage.export.seal import HASH_KEY, check_seal
from onestage.limits import MAX_INPUT_SIZE
from onestage.runtime import BACKENDS, EXPORTED_SUFFIXES

log = logging.getLogger("onestage.runtimes")


class Runtime(Protocol):
    """A forward on another runtime, on the CPU: (B, 3, S, S) images, uint8 pixels or float32
    in [0, 1] -> (B, A, values) float32 raw outputs, numpy arrays both (`runtime.unit_float`
    scales them). A whole-graph file's runtime gives detections through `whole_graph` instead."""

    backend: str

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def check_backend(backend: str, source: str | Path) -> None:
    """A one-line error for an unknown backend name."""
    if backend not in BACKENDS:
        raise OnestageError(f"{source}: unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")


def exported_runtime(
    path: Path, backend: str | None = None, precision: str | None = None
) -> tuple[Runtime, dict[str, Any]]:
    """(runtime, metadata) for an exported .onnx (ONNX Runtime by default, or OpenVINO) or .xml
    file (OpenVINO), its metadata checked against its graph (`graph_check`); `precision`
    (OpenVINO) defaults to the file's own (a bf16 file on a CPU without bf16: f32, with a
    warning, so a default export runs anywhere)."""
    backend = backend or EXPORTED_SUFFIXES[path.suffix]
    check_backend(backend, path)
    if not path.is_file():
        raise OnestageError(f"{path}: no such file")
    if backend == "torch" or (path.suffix == ".xml" and backend != "openvino"):
        raise OnestageError(
            f"{path}: an exported {path.suffix} file runs on "
            + ("onnxruntime or openvino" if path.suffix == ".onnx" else "openvino")
            + f", not {backend}"
        )
    sealed = check_seal(path)
    if backend == "onnxruntime":
        from onestage.runtime.onnxruntime_backend import OnnxRuntimeForward

        metadata = read_onnx_metadata(path)  # before ONNX Runtime reads the file
        runtime = OnnxRuntimeForward(path, path)
        _check_unsealed(path, sealed, metadata)
        _check_outputs(path, metadata, runtime)
        return runtime, metadata
    from onestage.runtime.openvino_backend import OpenVinoForward, cpu_supports_bf16, read_ir

    model, metadata = read_ir(path)
    _check_unsealed(path, sealed, metadata)
    chosen = precision or metadata.get("precision", "f32")
    if precision is None and chosen == "bf16" and not cpu_supports_bf16():
        log.warning("%s: exported for bf16; this CPU has none, so it runs in f32", path)
        chosen = "f32"
    if metadata.get("precision") == "int8" and chosen != "int8":
        raise OnestageError(f"{path}: an int8 export runs as int8, not {chosen}")
    runtime = OpenVinoForward(model, chosen, path)
    _check_outputs(path, metadata, runtime)
    return runtime, metadata


def _check_outputs(path: Path, metadata: dict[str, Any], runtime: Any) -> None:
    """The graph against its metadata (`graph_check`); a whole-graph file's outputs are read
    from one run on a blank image of the input size its metadata gives."""
    if not metadata.get(WHOLE_GRAPH_KEY):
        check_graph(path, metadata, *runtime.shapes())
        return
    size = metadata.get("input_size")
    if type(size) is not int or not 1 <= size <= MAX_INPUT_SIZE:
        return  # refused by the metadata check that follows
    try:
        blank = np.zeros((1, 3, size, size), dtype=np.float32)
        boxes, scores, _ = runtime.whole_graph(blank, 1, 0.5, 1.0)
    except Exception as error:  # each runtime's own error types
        raise OnestageError(f"{path}: the runtime cannot run it ({first_line(error)})") from None
    check_whole_graph(path, metadata, boxes.shape, scores.shape)


def _check_unsealed(path: Path, sealed: bool, metadata: dict[str, Any]) -> None:
    """For files whose bytes carried no readable digest: an error when the metadata names one
    (the digest itself was damaged), a warning for an export from before the hash."""
    if sealed:
        return
    if HASH_KEY in metadata:
        raise OnestageError(f"{path}: its content hash is unreadable (the file is corrupt)")
    log.warning("%s: no content hash (an older export): loaded without an integrity check", path)
