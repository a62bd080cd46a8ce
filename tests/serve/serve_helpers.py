"""Images the serve tests share."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from onestage.engine.evaluator import synthetic_eval_set


def scene(class_names: tuple[str, ...], seed: int, size: int = 320) -> np.ndarray:
    """A synthetic (size, size, 3) uint8 RGB image with 4 of `class_names`' icons on it."""
    return synthetic_eval_set(class_names, 1, size=size, seed=seed).load_image(0)


def encode(image: np.ndarray, image_format: str = "PNG") -> bytes:
    """`image` encoded as `image_format` bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, image_format)
    return buffer.getvalue()


def bomb_png(side: int = 30_000) -> bytes:
    """The header of a side x side PNG (900M pixels at the default): a decompression bomb's
    first bytes, which is all a decoder reads before it must refuse."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
