"""NNCF's int8 post-training quantisation, run in a child process.

Whenever torch is importable, NNCF loads its torch extension, which changes torch's global
state; a process that went on with torch afterwards crashed (a segmentation fault inside the
interpreter, in a later test). So the quantisation runs in a fresh "spawn" process, thrown away
afterwards, that hands back the serialised ONNX model or writes the OpenVINO IR itself.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


def quantize_onnx(model_bytes: bytes, inputs: list[np.ndarray], input_name: str) -> bytes:
    """The serialised ONNX graph quantised to int8 (QuantizeLinear / DequantizeLinear pairs),
    calibrated on `inputs` fed as `input_name`."""
    return _in_child(_quantize_onnx, model_bytes, inputs, input_name)


def quantize_openvino(
    model_bytes: bytes, inputs: list[np.ndarray], metadata_json: str, ir_path: Path
) -> None:
    """The serialised ONNX graph converted to OpenVINO, quantised to int8 (calibrated on
    `inputs`) and written as IR to `ir_path` (.xml + .bin) with `metadata_json` in its runtime
    info. The int8 model never enters this process."""
    _in_child(_quantize_openvino, model_bytes, inputs, metadata_json, ir_path)


def _in_child(function: Any, *args: Any) -> Any:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def _quantize_onnx(model_bytes: bytes, inputs: list[np.ndarray], input_name: str) -> bytes:
    import onnx

    feeds = [{input_name: array} for array in inputs]
    return _nncf_quantize(onnx.load_from_string(model_bytes), feeds).SerializeToString()


def _quantize_openvino(
    model_bytes: bytes, inputs: list[np.ndarray], metadata_json: str, ir_path: Path
) -> None:
    from onestage.runtime.openvino_backend import model_from_onnx, write_ir

    write_ir(_nncf_quantize(model_from_onnx(model_bytes), inputs), metadata_json, ir_path)


def _nncf_quantize(model: Any, samples: list[Any]) -> Any:
    """`nncf.quantize` with every sample as calibration data, NNCF's logging kept to errors."""
    import nncf

    nncf.set_log_level(logging.ERROR)
    return nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
