"""Prediction: `Detector.load(weights).predict(image)` on images of any size."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from onestage.checkpoint import load_fitting, load_weights
from onestage.data.images import load_image_rgb
from onestage.data.transforms import FitTransform, fit_image
from onestage.detections import ImageDetections
from onestage.engine.device import resolve_device, torch_threads
from onestage.errors import OnestageError
from onestage.models import load_plugins
from onestage.models.fuse import fused_for_inference
from onestage.models.recorded import check_metadata, exported_coding_layout, model_from_metadata
from onestage.predict_options import PredictOptions
from onestage.priors.codings import coding_layout
from onestage.priors.numpy_codings import numpy_coding
from onestage.runtime import EXPORTED_SUFFIXES
from onestage.runtime.choice import (
    Runtime,
    check_backend,
    default_backend,
    exported_runtime,
    model_runtime,
)
from onestage.runtime.postprocess import postprocess

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
    """A trained model with its box coding and metadata, ready to predict on images.

    The forward runs on `backend`: "torch" (`model`), or "onnxruntime" / "openvino" (a
    `Runtime` given instead of a model: `model` is then None); decoding and NMS are the same
    for all.
    """

    def __init__(
        self,
        model: torch.nn.Module | None,
        metadata: dict[str, Any],
        device: torch.device | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.metadata = metadata
        self.class_names: tuple[str, ...] = tuple(metadata["class_names"])
        self.input_size = int(metadata["input_size"])
        self.letterbox = bool(metadata.get("letterbox", False))
        self.model = model.eval() if model is not None else None
        self.runtime = runtime
        if runtime is not None:
            self.backend, self.device = runtime.backend, torch.device("cpu")
            layout = exported_coding_layout(metadata)
        elif model is not None:
            self.backend, self.device = "torch", device or next(model.parameters()).device
            layout = coding_layout(model, self.input_size)
        else:
            raise ValueError("a Detector needs a model or a runtime")
        self.coding = numpy_coding(layout)  # decoding and NMS run in numpy for every backend
        self.amp_dtype: torch.dtype | None = None  # e.g. torch.bfloat16 for AMX inference
        self.channels_last = False
        self.input_dtype = torch.float32
        self.inference_model = self.model  # what a torch forward runs: `model` or its fused copy
        self._forward: Callable[[torch.Tensor], torch.Tensor] = (
            self._runtime_forward if runtime is not None else self.model
        )

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
        own by default) choose the runtime; the device is the CPU for all but torch.

        `plugins` are Python files registering blocks of your own that the weights need (run
        first, `onestage.models.load_plugins`): nothing in the file itself makes onestage run
        code. Each is checked against the file name and SHA-256 the weights record;
        `trust_plugins` accepts one whose source differs."""
        load_plugins(plugins, trusted=trust_plugins)
        path = resolve_weights(weights)
        if path.suffix in EXPORTED_SUFFIXES:
            runtime, metadata = exported_runtime(path, backend, precision)
            check_metadata(metadata, path, exported=True)
            return cls(None, metadata, runtime=runtime)
        backend = backend or "torch"
        check_backend(backend, path)
        tensors, metadata = load_weights(path)
        check_metadata(metadata, path)
        model = model_from_metadata(metadata, path)
        load_fitting(model, tensors, path)
        if backend != "torch":
            runtime, exported = model_runtime(model, metadata, backend, precision or "f32", path)
            return cls(None, exported, runtime=runtime)
        if precision not in (None, "f32"):
            raise OnestageError(f"{path}: the torch backend runs f32 (or --compile for bf16)")
        target = resolve_device(device)
        return cls(model.to(target), metadata, target).fuse()

    def fuse(self) -> Detector:
        """Predict through a copy of the model with each conv_bn's BatchNorm folded into its conv
        (`onestage.models.fuse`): the same outputs to float rounding, fewer ops. `model` keeps
        the trained layers (its summary counts them). `load` does this already."""
        self._require_torch("fuse")
        self.inference_model = fused_for_inference(self.model)
        self._forward = self.inference_model
        return self

    def raw_outputs(self, images: torch.Tensor) -> torch.Tensor:
        """The head's raw output (B, A, values) for (B, 3, S, S) float images in [0, 1], as
        this detector's runtime computes it (no autocast, no decoding)."""
        with torch.inference_mode():
            return self._forward(images.to(self.device))

    def _runtime_forward(self, images: torch.Tensor) -> torch.Tensor:
        """The runtime's forward (numpy in and out) on a tensor batch."""
        return torch.from_numpy(self.runtime(images.detach().cpu().float().numpy()))

    @property
    def runtime_description(self) -> str:
        """The backend, with its precision where it has one: "torch", "openvino bf16"..."""
        precision = getattr(self.runtime, "precision", None)
        return self.backend + (f" {precision}" if precision else "")

    def _require_torch(self, what: str) -> None:
        if self.model is None:
            raise OnestageError(
                f"{what} is for the torch backend (this detector runs {self.backend})"
            )

    def accelerate(self) -> Detector:
        """Compile for fast inference: bf16 weights, channels_last, `torch.compile` with frozen
        weights (oneDNN/AMX kernels on CPU). The first call per batch size compiles (about 10 s
        here); scores move by bf16 rounding. Sets Inductor's global `freezing` option."""
        import torch._inductor.config as inductor_config

        self._require_torch("compile")
        inductor_config.freezing = True
        self.inference_model = self.inference_model.eval().to(
            memory_format=torch.channels_last, dtype=torch.bfloat16
        )
        self.channels_last = True
        self.input_dtype = torch.bfloat16
        self.amp_dtype = None
        self._forward = torch.compile(self.inference_model)
        return self

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
        pixels. `timing` as `detect_tensor`'s."""
        if not images:
            return []
        return self.detect_tensor(*self.fit_batch(images), options, timing)

    def fit_batch(
        self, images: list[np.ndarray]
    ) -> tuple[torch.Tensor, list[FitTransform], list[tuple[int, int]]]:
        """(H, W, 3) uint8 images fitted to the input as `detect_tensor` takes them: the
        (B, 3, S, S) uint8 batch, each image's transform and its (width, height)."""
        fitted, transforms = zip(
            *(fit_image(image, self.input_size, self.letterbox) for image in images), strict=True
        )
        batch = torch.from_numpy(np.stack(fitted)).permute(0, 3, 1, 2)  # (B, 3, S, S) uint8
        return batch, list(transforms), [(image.shape[1], image.shape[0]) for image in images]

    def detect_tensor(
        self,
        batch: torch.Tensor,
        transforms: list[FitTransform] | None,
        sizes: list[tuple[int, int]],
        options: PredictOptions | None = None,
        timing: dict[str, float] | None = None,
    ) -> list[ImageDetections]:
        """Detections for a (B, 3, S, S) uint8 batch already fitted to the input.

        `transforms` map input pixels back to each original image (None: the batch is the
        original images); `sizes` are the original (width, height) used to clip boxes. When
        given, `timing` receives the seconds spent in "forward" and "postprocess". On another
        runtime than torch, torch's own steps run on one thread (see `torch_threads`).
        """
        with torch_threads(None if self.backend == "torch" else 1):
            return self._detect_fitted(batch, transforms, sizes, options, timing)

    @torch.inference_mode()
    def _detect_fitted(
        self,
        batch: torch.Tensor,
        transforms: list[FitTransform] | None,
        sizes: list[tuple[int, int]],
        options: PredictOptions | None,
        timing: dict[str, float] | None,
    ) -> list[ImageDetections]:
        options = options or PredictOptions()
        began = time.perf_counter()
        was_training = self.model is not None and self.model.training
        if self.model is not None:
            self.model.eval()
        images = batch.to(self.device).to(self.input_dtype).div_(255.0)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        ):
            predictions = self._forward(images)
        if self.model is not None:
            self.model.train(was_training)
        forward_done = time.perf_counter()
        found = postprocess(
            predictions.float().cpu().numpy(),
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
            boxes = np.clip(boxes, 0, [width, height, width, height])
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
    """`Detector.load` for predicting: without `backend`, the runtime `default_backend` picks
    (an exported file's own; weights on the CPU: the fastest installed runtime)."""
    if backend is None:
        path, target = resolve_weights(weights), resolve_device(device)
        backend, default_precision = default_backend(path, target)
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
