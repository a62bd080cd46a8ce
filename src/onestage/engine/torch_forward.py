"""A weights file's model as a Detector's forward: torch itself (eager, BatchNorm folded, or
compiled), or exported in memory to ONNX Runtime or OpenVINO. The predictor imports this only
for weights files, so predicting with an exported file never imports torch."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from onestage.checkpoint import load_fitting, load_weights
from onestage.engine.device import resolve_device
from onestage.errors import OnestageError
from onestage.export.in_memory import model_runtime
from onestage.metadata import check_metadata
from onestage.models.fuse import fused_for_inference
from onestage.models.recorded import model_from_metadata
from onestage.priors.codings import coding_layout
from onestage.runtime.exported import Runtime, check_backend


class TorchForward:
    """The torch forward of `model` on `device`: (B, 3, S, S) images, uint8 pixels or float32 in
    [0, 1], as numpy -> (B, A, values) float32 raw outputs as numpy. Predicts through
    `inference_model`, the model itself or its fused or compiled copy; `amp_dtype` (autocast)
    and `channels_last` are what a training run validates with."""

    backend = "torch"
    precision = None

    def __init__(self, model: nn.Module, device: torch.device | None = None) -> None:
        self.model = model.eval()
        self.device = device or next(model.parameters()).device
        self.inference_model = self.model
        self.amp_dtype: torch.dtype | None = None  # e.g. torch.bfloat16 for AMX inference
        self.channels_last = False
        self.input_dtype = torch.float32
        self._forward = self.model

    def coding_layout(self, input_size: int) -> dict[str, Any]:
        """The model's coding layout (`priors.codings.coding_layout`)."""
        return coding_layout(self.model, input_size)

    def fuse(self) -> None:
        """Predict through a copy of the model with each conv_bn's BatchNorm folded into its conv
        (`onestage.models.fuse`): the same outputs to float rounding, fewer ops. `model` keeps
        the trained layers (its summary counts them)."""
        self.inference_model = fused_for_inference(self.model)
        self._forward = self.inference_model

    def accelerate(self) -> None:
        """Compile for fast inference: bf16 weights, channels_last, `torch.compile` with frozen
        weights (oneDNN/AMX kernels on CPU). The first call per batch size compiles (about 10 s
        here); scores move by bf16 rounding. Sets Inductor's global `freezing` option."""
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        self.inference_model = self.inference_model.eval().to(
            memory_format=torch.channels_last, dtype=torch.bfloat16
        )
        self.channels_last = True
        self.input_dtype = torch.bfloat16
        self.amp_dtype = None
        self._forward = torch.compile(self.inference_model)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        if not images.flags.writeable:  # torch takes writable arrays; "K" keeps the strides
            images = images.copy(order="K")
        batch = torch.from_numpy(images).to(self.device).to(self.input_dtype)
        if images.dtype == np.uint8:  # a new tensor: dividing in place leaves `images` alone
            batch = batch.div_(255.0)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        ):
            predictions = self._forward(batch)
        self.model.train(was_training)
        return predictions.float().cpu().numpy()


def weights_forward(
    path: Path, device: str, backend: str | None, precision: str | None
) -> tuple[TorchForward | Runtime, dict[str, Any]]:
    """(forward, metadata) of a checked weights file: torch on `device` (BatchNorm folded; f32
    only), or `backend` "onnxruntime" / "openvino" exported in memory at `precision`."""
    backend = backend or "torch"
    check_backend(backend, path)
    tensors, metadata = load_weights(path)
    check_metadata(metadata, path)
    model = model_from_metadata(metadata, path)
    load_fitting(model, tensors, path)
    if backend != "torch":
        return model_runtime(model, metadata, backend, precision or "f32", path)
    if precision not in (None, "f32"):
        raise OnestageError(f"{path}: the torch backend runs f32 (or --compile for bf16)")
    forward = TorchForward(model.to(resolve_device(device)))
    forward.fuse()
    return forward, metadata


def default_backend(weights: Path, device: str) -> tuple[str, str | None]:
    """(backend, precision) `onestage predict` runs weights with when given none: on the CPU the
    fastest accurate runtime installed in BENCHMARKS.md's inference latency run, ONNX Runtime
    f32 (then OpenVINO f32, then torch); on a GPU, torch."""
    if resolve_device(device).type != "cpu":
        return "torch", None
    for backend in ("onnxruntime", "openvino"):
        if importlib.util.find_spec(backend) is not None:
            return backend, "f32"
    return "torch", None
