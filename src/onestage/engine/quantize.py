"""int8 post-training quantisation of a detector's ONNX graph (ONNX Runtime's static QDQ
quantisation), calibrated on images fitted to the input exactly as the detector fits them.

Weights int8 per output channel, activations uint8 with min-max ranges from the calibration
images; the result is an ONNX graph with QuantizeLinear / DequantizeLinear pairs that both ONNX
Runtime and OpenVINO run as int8.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from onestage.backends.onnx_graph import INPUT_NAME
from onestage.engine.evaluator import EvalSet
from onestage.engine.predictor import Detector

DEFAULT_CALIBRATION_IMAGES = 200


def calibration_inputs(detector: Detector, eval_set: EvalSet, count: int) -> list[np.ndarray]:
    """Up to `count` images of `eval_set` as the graph's input: (1, 3, S, S) float32 in [0, 1]."""
    inputs = []
    for index in range(min(count, len(eval_set))):
        batch, _, _ = detector.fit_batch([eval_set.load_image(index)])
        inputs.append(batch.float().div_(255.0).numpy())
    return inputs


def quantize_int8(model_bytes: bytes, inputs: list[np.ndarray]) -> bytes:
    """The serialised ONNX graph `model_bytes` quantised to int8 (QDQ), calibrated on `inputs`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter({INPUT_NAME: array} for array in inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as folder, _quiet_logging():
        source, prepared, quantised = (Path(folder) / n for n in ("f32", "pre", "int8"))
        source.write_bytes(model_bytes)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantised),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return quantised.read_bytes()


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """Silence the quantiser's advisory warnings (it logs through the root logger)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
