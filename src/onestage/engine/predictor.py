"""Prediction: `Detector.load(weights).predict(image)` on images of any size.

A Detector is a forward (`runtime.exported.Runtime`: an exported file on ONNX Runtime or
OpenVINO; or `engine.torch_forward.TorchForward`) and the numpy steps every forward shares:
fitting images to the input, decoding, scoring, NMS (`runtime.postprocess`) and mapping boxes
back to the images. Nothing here imports torch: a Detector of an exported file runs without it
(`torch_forward` is imported only for weights files).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from onestage.data.images import load_image_rgb
from onestage.data.transforms import FitTransform, fit_image
from onestage.detections import ImageDetections
from onestage.errors import OnestageError
from onestage.export.onnx_file import WHOLE_GRAPH_KEY
from onestage.metadata import check_metadata, exported_coding_layout
from onestage.predict_options import PredictOptions
from onestage.priors.numpy_codings import numpy_coding
from onestage.runtime import EXPORTED_SUFFIXES
from onestage.runtime.exported import Runtime, exported_runtime
from onestage.runtime.postprocess import postprocess, selected_detections

if TYPE_CHECKING:
    from onestage.engine.torch_forward import TorchForward

# Shipped weights live in the package, addressed by name (e.g. --weights seed_animals).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class Detection:
    """One detected object: box in absolute pixel xyxy of the original image."""

    box_xyxy: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str


def resolve_weights(weights: str | Path) -> Path:
    """A weights path, or the name of weights shipped with onestage (e.g. `seed_animals`)."""
    path = Path(weights)
    if path.suffix != ".safetensors" and not path.exists():
        shipped = WEIGHTS_DIR / f"{weights}.safetensors"
        if shipped.is_file():
            return shipped
        names = sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))
        raise OnestageError(
            f"{weights}: no such weights file, and no shipped weights of that name"
            + (f" (shipped: {', '.join(names)})" if names else "")
        )
    return path


class Detector:
    """A trained model's forward with its box coding and metadata, ready to predict on images.

    `forward` maps (B, 3, S, S) images (uint8 pixels, or float32 in [0, 1]) to the head's raw
    output (B, A, values), numpy both: a `TorchForward` (backend "torch", whose `model` is the
    torch model) or a `Runtime` ("onnxruntime", "openvino"; `model` is then None). Decoding and
    NMS are the same for all.
    """

    def __init__(self, forward: TorchForward | Runtime, metadata: dict[str, Any]) -> None:
        self.forward = forward
        self.metadata = metadata
        self.class_names: tuple[str, ...] = tuple(metadata["class_names"])
        self.input_size = int(metadata["input_size"])
        self.letterbox = bool(metadata.get("letterbox", False))
        self.backend: str = forward.backend
        self.model = getattr(forward, "model", None)
        layout = (
            forward.coding_layout(self.input_size)
            if self.model is not None
            else exported_coding_layout(metadata)
        )
        self.coding = numpy_coding(layout)
        # a whole-graph export (`export.whole_graph`) decodes and runs NMS itself
        self.nms_in_graph = bool(metadata.get(WHOLE_GRAPH_KEY, False))

    @classmethod
    def load(
        cls,
        weights: str | Path = "seed_animals",
        device: str = "auto",
        backend: str | None = None,
        precision: str | None = None,
        plugins: Iterable[str | Path] = (),
        trust_plugins: bool = False,
    ) -> Detector:
        """Load a onestage weights file (or shipped weights by name) or an exported .onnx / .xml
        file. `backend` (weights: "torch" by default; .onnx: "onnxruntime" by default, or
        "openvino"; .xml: "openvino") and `precision` (OpenVINO: f32, bf16; an exported file's
        own by default) choose the runtime; the device is the CPU for all but torch. An exported
        file loads without importing torch.

        `plugins` are Python files registering blocks of your own that the weights need (run
        first, `onestage.models.load_plugins`): nothing in the file itself makes onestage run
        code. Each is checked against the file name and SHA-256 the weights record;
        `trust_plugins` accepts one whose source differs."""
        if plugins:
            from onestage.models import load_plugins

            load_plugins(plugins, trusted=trust_plugins)
        path = resolve_weights(weights)
        if path.suffix in EXPORTED_SUFFIXES:
            runtime, metadata = exported_runtime(path, backend, precision)
            check_metadata(metadata, path, exported=True)
            return cls(runtime, metadata)
        from onestage.engine.torch_forward import weights_forward

        return cls(*weights_forward(path, device, backend, precision))

    def _torch_forward(self, what: str) -> TorchForward:
        if self.model is None:
            raise OnestageError(
                f"{what} is for the torch backend (this detector runs {self.backend})"
            )
        return self.forward

    def fuse(self) -> Detector:
        """Predict through a copy of the model with each BatchNorm folded into its conv
        (`TorchForward.fuse`). `load` does this already."""
        self._torch_forward("fuse").fuse()
        return self

    def accelerate(self) -> Detector:
        """Compile the torch forward for fast inference (`TorchForward.accelerate`: bf16,
        channels_last, `torch.compile`)."""
        self._torch_forward("compile").accelerate()
        return self

    def raw_outputs(self, images: np.ndarray) -> np.ndarray:
        """The head's raw output (B, A, values) for (B, 3, S, S) float32 images in [0, 1], as
        this detector's forward computes it (no autocast, no decoding; a whole-graph export has
        none to give)."""
        if self.nms_in_graph:
            raise OnestageError("a whole-graph export (--nms) gives detections, not raw outputs")
        return self.forward(images)

    @property
    def runtime_description(self) -> str:
        """The backend, with its precision where it has one: "torch", "openvino bf16"..."""
        precision = getattr(self.forward, "precision", None)
        return self.backend + (f" {precision}" if precision else "")

    def predict(
        self, image: str | Path | np.ndarray | Image.Image, options: PredictOptions | None = None
    ) -> list[Detection]:
        """Detections for one image (a path, an (H, W, 3) uint8 RGB array or a PIL image)."""
        array = _as_rgb_array(image)
        found = self.detect([array], options)[0]
        return [
            Detection(
                box_xyxy=tuple(float(v) for v in box),
                score=float(score),
                class_id=int(class_id),
                class_name=self.class_names[int(class_id)],
            )
            for box, score, class_id in zip(
                found.boxes_xyxy, found.scores, found.class_ids, strict=True
            )
        ]

    def detect(
        self,
        images: list[np.ndarray],
        options: PredictOptions | None = None,
        timing: dict[str, float] | None = None,
    ) -> list[ImageDetections]:
        """Detections for a batch of (H, W, 3) uint8 images (none: none); boxes in each image's
        pixels. `timing` as `detect_fitted`'s."""
        if not images:
            return []
        return self.detect_fitted(*self.fit_batch(images), options, timing)

    def fit_batch(
        self, images: list[np.ndarray]
    ) -> tuple[np.ndarray, list[FitTransform], list[tuple[int, int]]]:
        """(H, W, 3) uint8 images fitted to the input as `detect_fitted` takes them: the
        (B, 3, S, S) uint8 batch, each image's transform and its (width, height)."""
        fitted, transforms = zip(
            *(fit_image(image, self.input_size, self.letterbox) for image in images), strict=True
        )
        # one image: a view (reshape, unlike [None], gives the batch axis a real stride, so torch
        # still sees the transposed batch as channels_last)
        stacked = fitted[0].reshape(1, *fitted[0].shape) if len(fitted) == 1 else np.stack(fitted)
        batch = stacked.transpose(0, 3, 1, 2)  # (B, 3, S, S) uint8
        return batch, list(transforms), [(image.shape[1], image.shape[0]) for image in images]

    def detect_fitted(
        self,
        batch: np.ndarray,
        transforms: list[FitTransform] | None,
        sizes: list[tuple[int, int]],
        options: PredictOptions | None = None,
        timing: dict[str, float] | None = None,
    ) -> list[ImageDetections]:
        """Detections for a (B, 3, S, S) uint8 batch already fitted to the input.

        `transforms` map input pixels back to each original image (None: the batch is the
        original images); `sizes` are the original (width, height) used to clip boxes. When
        given, `timing` receives the seconds spent in "forward" and "postprocess" (a whole-graph
        export's decoding and NMS count as its forward).
        """
        options = options or PredictOptions()
        began = time.perf_counter()
        if self.nms_in_graph:
            if options.candidates != "all":
                raise OnestageError(
                    f"a whole-graph export (--nms) takes every class of a prior as a candidate; "
                    f"candidates {options.candidates!r} needs an export without --nms"
                )
            outputs = self.forward.whole_graph(batch, options.max_det, options.iou, options.conf)
            forward_done = time.perf_counter()
            found = selected_detections(*outputs, options.max_det)
        else:
            predictions = self.forward(batch)
            forward_done = time.perf_counter()
            found = postprocess(
                predictions,
                self.coding,
                candidates=options.candidates,
                conf_threshold=options.conf,
                iou_threshold=options.iou,
                pre_nms_topk=options.pre_nms_topk,
                max_det=options.max_det,
            )
        results = []
        for index, detections in enumerate(found):
            boxes = detections.boxes_xyxy.astype(np.float64) * self.input_size
            if transforms is not None:
                boxes = transforms[index].to_original(boxes)
            width, height = sizes[index]
            limits = np.array([width, height, width, height], dtype=np.float64)
            boxes = np.minimum(np.maximum(boxes, 0.0), limits)  # np.clip's overhead is 10x
            results.append(
                ImageDetections(
                    boxes_xyxy=boxes,
                    scores=detections.scores.astype(np.float64),
                    class_ids=detections.class_ids,
                )
            )
        if timing is not None:
            timing["forward"] = forward_done - began
            timing["postprocess"] = time.perf_counter() - forward_done
        return results


def open_detector(
    weights: str | Path,
    device: str = "auto",
    backend: str | None = None,
    precision: str | None = None,
) -> Detector:
    """`Detector.load` for predicting: without `backend`, an exported file runs on its own
    runtime and weights on `engine.torch_forward.default_backend`'s (on the CPU: the fastest
    installed runtime)."""
    path = resolve_weights(weights)
    if backend is None and path.suffix not in EXPORTED_SUFFIXES:
        from onestage.engine.torch_forward import default_backend

        backend, default_precision = default_backend(path, device)
        precision = precision or default_precision
    return Detector.load(weights, device, backend, precision)


def _as_rgb_array(image: str | Path | np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(image, str | Path):
        return load_image_rgb(Path(image))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise OnestageError(
            f"expected an (H, W, 3) uint8 RGB image, got {array.shape} {array.dtype}"
        )
    return array
