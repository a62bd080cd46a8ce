"""A detector's graph as ONNX: the forward exported by torch.

The graph: input INPUT_NAME (B, 3, S, S) float32 in [0, 1], output OUTPUT_NAME (B, A, values),
the head's raw output; the batch axis is dynamic. Exported by torch's TorchScript-based exporter
(`dynamo=False`: no extra dependency), opset ONNX_OPSET, from the model with its BatchNorm folded
(`onestage.models.fuse`). What the file carries besides the graph, and how it is read back
without torch, is `onnx_file`.
"""

from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn

from onestage.export.onnx_file import INPUT_NAME, OUTPUT_NAME
from onestage.models import fused_for_inference

ONNX_OPSET = 17


def onnx_model_bytes(model: nn.Module, input_size: int) -> bytes:
    """The model's forward as a serialised ONNX model (see the module docstring), fp32 on CPU."""
    network = fused_for_inference(copy.deepcopy(model).float().cpu())
    example = torch.zeros(1, 3, input_size, input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            network,
            (example,),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return buffer.getvalue()
