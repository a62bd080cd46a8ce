"""Fitting images of any size to a square model input, and mapping boxes both ways."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Grey used to pad letterboxed images (Ultralytics' value), one level and as an RGB colour.
LETTERBOX_GREY = 114
LETTERBOX_FILL = (LETTERBOX_GREY,) * 3


@dataclass(frozen=True)
class FitTransform:
    """How an original image was placed in the input: input_px = original_px * scale + pad."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_input(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Original-image pixel xyxy boxes -> model-input pixel xyxy boxes."""
        factors = np.array([self.scale_x, self.scale_y] * 2)
        offsets = np.array([self.pad_x, self.pad_y] * 2)
        return np.asarray(boxes_xyxy, dtype=np.float64) * factors + offsets

    def to_original(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Model-input pixel xyxy boxes -> original-image pixel xyxy boxes."""
        factors = np.array([self.scale_x, self.scale_y] * 2)
        offsets = np.array([self.pad_x, self.pad_y] * 2)
        return (np.asarray(boxes_xyxy, dtype=np.float64) - offsets) / factors


def fit_image(image: np.ndarray, size: int, letterbox: bool) -> tuple[np.ndarray, FitTransform]:
    """Resize an (H, W, 3) uint8 image to (size, size, 3): stretched, or letterboxed (aspect kept,
    padded with grey, centred)."""
    height, width = image.shape[:2]
    if (width, height) == (size, size):
        return image, FitTransform(1.0, 1.0, 0.0, 0.0)
    if not letterbox:
        resized = Image.fromarray(image).resize((size, size), Image.BILINEAR)
        return np.asarray(resized), FitTransform(size / width, size / height, 0.0, 0.0)
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), LETTERBOX_FILL)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas.paste(resized, (pad_x, pad_y))
    return np.asarray(canvas), FitTransform(new_w / width, new_h / height, pad_x, pad_y)
