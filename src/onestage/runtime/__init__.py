"""Runtimes a detector's forward can run on: torch itself, or its exported graph in ONNX Runtime
or OpenVINO (`onnxruntime_backend`, `openvino_backend`; `choice` picks one for a weights file
or an exported file, `onestage.export` writes the graphs).

Every backend runs the same graph, from the image tensor (B, 3, S, S) float32 in [0, 1] to the
head's raw output (B, A, values); decoding and NMS are `runtime.postprocess` (numpy), shared by
all. Nothing here imports torch.
"""

from __future__ import annotations

import numpy as np

from onestage.export.onnx_file import NMS_INPUTS

BACKENDS = ("torch", "onnxruntime", "openvino")
EXPORTED_SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino"}
# A graph's input or output shape as a runtime reports it: None for a dynamic dimension.
Shape = tuple[int | None, ...]


def unit_float(images: np.ndarray) -> np.ndarray:
    """(B, 3, S, S) images as a C-contiguous float32 array in [0, 1]: uint8 pixels divided by
    255 (as torch divides them), float images as they are."""
    if images.dtype != np.uint8:
        return np.ascontiguousarray(images, dtype=np.float32)
    scaled = np.empty(images.shape, dtype=np.float32)
    np.divide(images, np.float32(255.0), out=scaled)
    return scaled


def nms_feeds(max_det: int, iou: float, conf: float) -> dict[str, np.ndarray]:
    """A whole-graph file's NMS inputs (`export.whole_graph`), by name."""
    values = (
        np.array([max_det], dtype=np.int64),
        np.array([iou], dtype=np.float32),
        np.array([conf], dtype=np.float32),
    )
    return dict(zip(NMS_INPUTS, values, strict=True))
