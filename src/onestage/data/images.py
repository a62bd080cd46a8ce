"""Safe image reading: a format allowlist, size checks against decompression bombs, clear errors
for bad files.

Pillow is only ever asked for the formats in `IMAGE_FORMATS`: a file in any other format (an EPS
or PostScript file, whose Pillow plugin runs Ghostscript on the file's code; a PDF; an SVG) is
refused as not an image before any decoder sees it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from onestage.data.paths import is_file
from onestage.errors import DataError
from onestage.fileio import atomic_write_with

# Refuse images with more pixels than this (Pillow's own bomb limit is 89M; we check first).
DEFAULT_MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# The Pillow formats onestage decodes (those of IMAGE_SUFFIXES); no other plugin is tried.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")


class NotAnImageError(DataError):
    """A file or upload that no image decoder recognises."""


class ImageTooLargeError(DataError):
    """An image over the pixel limit (a decompression bomb, perhaps)."""


def read_image_size(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the image header, without decoding pixels."""
    path = _existing(path)
    with open_image(path, path) as image:
        _check_pixels(path, image.size, max_pixels)
        return image.size


def load_image_rgb(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image fully into an (H, W, 3) uint8 RGB array; truncated files are errors."""
    path = _existing(path)
    return _decode(path, path, max_pixels)


def decode_image_bytes(
    data: bytes, source: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, ... bytes) into an (H, W, 3) uint8 RGB array, with
    the checks of `load_image_rgb`; `source` names it in errors (an upload's file name, say)."""
    if not data:
        raise NotAnImageError(source, "empty: no image data")
    return _decode(io.BytesIO(data), source, max_pixels)


def _existing(path: Path) -> Path:
    path = Path(path)
    if not is_file(path):
        raise DataError(path, "image file not found")
    return path


def _decode(file: Path | BinaryIO, source: str | Path, max_pixels: int) -> np.ndarray:
    with open_image(file, source) as image:
        _check_pixels(source, image.size, max_pixels)
        try:
            image.load()
            return np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as error:
            raise DataError(source, f"image is corrupt or truncated ({error})") from None


def open_image(
    file: Path | BinaryIO, source: str | Path, formats: tuple[str, ...] = IMAGE_FORMATS
) -> Image.Image:
    """`file` opened lazily (header only) by Pillow, trying only `formats`; an unreadable file,
    or one in another format, is a `NotAnImageError` naming `source`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(file, formats=list(formats))
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            source, "image exceeds the pixel limit (decompression bomb?)"
        ) from None
    except UnidentifiedImageError:
        raise NotAnImageError(
            source, f"not a readable image (formats read: {', '.join(formats)})"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise NotAnImageError(source, f"not a readable image ({error})") from None


def _check_pixels(source: str | Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise DataError(source, f"image has invalid size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            source,
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (decompression bomb?)",
        )


def save_image(image: np.ndarray, path: Path) -> None:
    """Save an (H, W, 3) uint8 image (format from the suffix) via a temp file and rename."""
    suffix = Path(path).suffix.lower().lstrip(".")
    image_format = {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF"}.get(suffix, suffix.upper())
    atomic_write_with(path, lambda handle: Image.fromarray(image).save(handle, image_format))
