"""Runtimes a detector's forward can run on: torch itself, or its exported graph in ONNX Runtime
or OpenVINO (`onnxruntime_backend`, `openvino_backend`; `choice` picks one for a weights file
or an exported file, `onestage.export` writes the graphs).

Every backend runs the same graph, from the image tensor (B, 3, S, S) float32 in [0, 1] to the
head's raw output (B, A, values); decoding and NMS are `runtime.postprocess` (numpy), shared by
all.
"""

from __future__ import annotations

BACKENDS = ("torch", "onnxruntime", "openvino")
EXPORTED_SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino"}
# A graph's input or output shape as a runtime reports it: None for a dynamic dimension.
Shape = tuple[int | None, ...]
