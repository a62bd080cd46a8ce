"""int8 post-training quantisation of a detector's graph by NNCF (OpenVINO's quantiser),
calibrated on images fitted to the input exactly as the detector fits them.

NNCF's default scheme: weights int8 per output channel, activations 8-bit with ranges from the
calibration statistics, fast bias correction, and only the inputs of compute-heavy operations
quantised (the head's raw output stays float). For an ONNX export it quantises the ONNX graph
(QuantizeLinear / DequantizeLinear pairs that ONNX Runtime runs as int8); for OpenVINO, the
converted model (FakeQuantize operations compiled to int8 kernels). Chosen over ONNX Runtime's
own static quantisation (min-max ranges on every tensor), which lost 0.10 mAP@[.5:.95] on
`seed_animals` where NNCF lost nothing (BENCHMARKS.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from onestage.engine.evaluator import EvalSet
from onestage.engine.predictor import Detector
from onestage.export import nncf_int8
from onestage.export.onnx_file import INPUT_NAME
from onestage.runtime import unit_float

DEFAULT_CALIBRATION_IMAGES = 200


def calibration_inputs(detector: Detector, eval_set: EvalSet, count: int) -> list[np.ndarray]:
    """Up to `count` images of `eval_set` as the graph's input: (1, 3, S, S) float32 in [0, 1]."""
    inputs = []
    for index in range(min(count, len(eval_set))):
        batch, _, _ = detector.fit_batch([eval_set.load_image(index)])
        inputs.append(unit_float(batch))
    return inputs


def quantize_onnx_int8(model_bytes: bytes, inputs: list[np.ndarray]) -> bytes:
    """The serialised ONNX graph `model_bytes` quantised to int8 (QDQ), calibrated on `inputs`."""
    return nncf_int8.quantize_onnx(model_bytes, inputs, INPUT_NAME)


def write_openvino_int8(
    model_bytes: bytes, inputs: list[np.ndarray], metadata: dict[str, Any], path: Path
) -> None:
    """Write the serialised ONNX graph `model_bytes` as OpenVINO IR at `path` (.xml + .bin),
    quantised to int8 (calibrated on `inputs`), `metadata` in its runtime info; staged beside
    `path` and renamed once complete."""
    from onestage.runtime.openvino_backend import staged_ir

    with staged_ir(path) as staged:
        nncf_int8.quantize_openvino(model_bytes, inputs, json.dumps(metadata), staged)
