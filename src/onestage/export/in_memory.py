"""A torch model exported in memory to ONNX Runtime or OpenVINO (`predict --backend`), and the
metadata every exported file carries (`runtime.exported` reads it back without torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from onestage.errors import OnestageError
from onestage.export.onnx_graph import onnx_model_bytes
from onestage.models import summarize
from onestage.priors.codings import coding_layout
from onestage.runtime.exported import Runtime


def export_metadata(model: nn.Module, metadata: dict[str, Any], precision: str) -> dict[str, Any]:
    """The metadata an exported file carries (see the module docstring)."""
    input_size = int(metadata["input_size"])
    summary = summarize(model, input_size)
    return {
        **metadata,
        "coding": coding_layout(model, input_size),
        "parameters": summary.total_params,
        "gflops": summary.gflops,
        "precision": precision,
    }


def model_runtime(
    model: nn.Module, metadata: dict[str, Any], backend: str, precision: str, source: str | Path
) -> tuple[Runtime, dict[str, Any]]:
    """(runtime, export metadata) for a torch model exported in memory to `backend`
    ("onnxruntime" or "openvino") at `precision` (ONNX Runtime: f32 only here; int8 files come
    from `onestage export`)."""
    if backend == "onnxruntime" and precision != "f32":
        raise OnestageError(
            f"{source}: ONNX Runtime runs these weights in f32 only; for int8 export them "
            "first (onestage export --format onnx --precision int8)"
        )
    if backend == "openvino" and precision == "int8":
        raise OnestageError(
            f"{source}: int8 needs calibration; export first (onestage export --format openvino "
            "--precision int8)"
        )
    graph = onnx_model_bytes(model, int(metadata["input_size"]))
    exported = export_metadata(model, metadata, precision)
    if backend == "onnxruntime":
        from onestage.runtime.onnxruntime_backend import OnnxRuntimeForward

        return OnnxRuntimeForward(graph, source), exported
    from onestage.runtime.openvino_backend import OpenVinoForward, model_from_onnx

    return OpenVinoForward(model_from_onnx(graph), precision, source), exported
