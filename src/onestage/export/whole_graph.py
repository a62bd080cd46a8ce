"""Whole-graph exports (`onestage export --nms`): decoding, scoring and NMS inside the file, so
one runtime call returns detections.

The graph goes past the head's raw output: boxes decoded by the model's coding and clipped to
[0, 1] (BOXES_NAME: (B, A, 4) normalised xyxy), class scores (SCORES_NAME: (B, C, A); a box
left with no width or height after clipping scores 0, as the host post-processing drops it),
then ONNX's NonMaxSuppression, per image and class (a score above `conf` is a candidate, an
IoU above `iou` suppresses, at most `max_det` kept per class), whose rows (image, class, prior)
are SELECTED_NAME. The three settings are inputs of the graph (NMS_INPUTS), so they stay
prediction options. The host only gathers the selected rows and keeps each image's `max_det`
best (`runtime.postprocess.selected_detections`). There is no pre-NMS top-k: every candidate
goes through NMS, so an image gives the host's detections whenever it has at most
`pre_nms_topk` candidates above `conf`.
"""

from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn

from onestage.export.onnx_file import (
    BOXES_NAME,
    INPUT_NAME,
    NMS_INPUTS,
    SCORES_NAME,
    SELECTED_NAME,
)
from onestage.export.onnx_graph import ONNX_OPSET
from onestage.models import fused_for_inference
from onestage.priors.codings import AnchorCoding, PointCoding, box_coding_for


class DecodedOutputs(nn.Module):
    """`model`'s forward followed by its coding: images (B, 3, S, S) float32 in [0, 1] ->
    boxes (B, A, 4) normalised xyxy clipped to [0, 1], scores (B, C, A) (0 for a box with no
    width or height)."""

    def __init__(self, model: nn.Module, coding: AnchorCoding | PointCoding) -> None:
        super().__init__()
        self.model = model
        self.coding = coding

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        box_part, logits = self.coding.split(self.model(images))
        boxes = self.coding.decode(box_part).clamp(0.0, 1.0)
        drawn = (boxes[..., 2:] > boxes[..., :2]).all(dim=-1, keepdim=True)  # (B, A, 1)
        scores = self.coding.class_scores(logits) * drawn.float()
        return boxes, scores.transpose(1, 2).contiguous()


def whole_graph_bytes(model: nn.Module, input_size: int) -> bytes:
    """The model's forward, decoding, scoring and NMS as a serialised ONNX model (see the
    module docstring), fp32 on the CPU, BatchNorm folded."""
    import onnx
    from onnx import TensorProto, helper

    network = fused_for_inference(copy.deepcopy(model).float().cpu()).eval()
    decoded = DecodedOutputs(network, box_coding_for(network, input_size))
    buffer = io.BytesIO()
    batch_axis = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            decoded,
            (torch.zeros(1, 3, input_size, input_size),),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[BOXES_NAME, SCORES_NAME],
            dynamic_axes={INPUT_NAME: batch_axis, BOXES_NAME: batch_axis, SCORES_NAME: batch_axis},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    max_det, iou, conf = NMS_INPUTS
    proto.graph.input.extend(
        [
            helper.make_tensor_value_info(max_det, TensorProto.INT64, [1]),
            helper.make_tensor_value_info(iou, TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info(conf, TensorProto.FLOAT, [1]),
        ]
    )
    proto.graph.node.append(
        helper.make_node(
            "NonMaxSuppression", [BOXES_NAME, SCORES_NAME, *NMS_INPUTS], [SELECTED_NAME]
        )
    )
    proto.graph.output.append(
        helper.make_tensor_value_info(SELECTED_NAME, TensorProto.INT64, ["selected", 3])
    )
    return proto.SerializeToString()
