"""ONNX Runtime as a detector's forward: an ONNX graph (`export.onnx_graph`) on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onestage.errors import OnestageError, first_line
from onestage.export.onnx_file import (
    BOXES_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    SCORES_NAME,
    SELECTED_NAME,
)
from onestage.runtime import Shape, nms_feeds, unit_float


class OnnxRuntimeForward:
    """Runs `model` (a path to an .onnx file, or its bytes) with ONNX Runtime's CPU provider,
    `threads` intra-op threads (default: ONNX Runtime's, one per physical core)."""

    backend = "onnxruntime"

    def __init__(self, model: Path | bytes, source: str | Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        # A memory pattern is planned and kept per input shape: a server whose batches vary in
        # size grew by 28-38 MB over 400 batches of 1-8 images with it, 3 MB without, at the
        # same speed (ONNX Runtime's advice for inputs whose shapes vary).
        options.enable_mem_pattern = False
        self.source = source
        try:
            self.session = onnxruntime.InferenceSession(
                str(model) if isinstance(model, Path) else model,
                options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as error:  # onnxruntime's errors derive from Exception alone
            raise OnestageError(
                f"{source}: ONNX Runtime cannot load it ({_message(error)})"
            ) from None

    def shapes(self) -> tuple[Shape, Shape]:
        """The graph's input and output shapes (None: dynamic). Output dimensions after the
        batch that the file leaves symbolic (an anchor head's prior count: levels reshaped and
        concatenated) are read from one forward of one blank image, where the input's
        dimensions after the batch are fixed."""
        inputs = _dims(self.session.get_inputs()[0].shape)
        outputs = _dims(self.session.get_outputs()[0].shape)
        if None not in outputs[1:] or None in inputs[1:]:
            return inputs, outputs
        try:
            probe = self(np.zeros((1, *inputs[1:]), dtype=np.float32))
        except Exception as error:  # onnxruntime's errors derive from Exception alone
            raise OnestageError(
                f"{self.source}: ONNX Runtime cannot run it ({_message(error)})"
            ) from None
        return inputs, (outputs[0], *probe.shape[1:])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) images, uint8 pixels or float32 in [0, 1] -> (B, A, values) float32 raw
        outputs."""
        (output,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: unit_float(images)})
        return output

    def whole_graph(
        self, images: np.ndarray, max_det: int, iou: float, conf: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A whole-graph file's run (`export.whole_graph`): images as `__call__` takes them ->
        boxes (B, A, 4), scores (B, C, A), selected (N, 3)."""
        feeds = {INPUT_NAME: unit_float(images), **nms_feeds(max_det, iou, conf)}
        boxes, scores, selected = self.session.run([BOXES_NAME, SCORES_NAME, SELECTED_NAME], feeds)
        return boxes, scores, selected


def _dims(shape: list[int | str | None]) -> Shape:
    """ONNX Runtime's shape (a symbolic dimension is a name or None) as a `Shape`."""
    return tuple(dim if isinstance(dim, int) else None for dim in shape)


def _message(error: Exception) -> str:
    """ONNX Runtime's message without its "[ONNXRuntimeError] : 7 : NAME :" prefix."""
    text = first_line(error)
    return text.split(" : ")[-1] if "[ONNXRuntimeError]" in text else text
