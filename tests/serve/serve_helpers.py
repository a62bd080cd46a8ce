"""Images the serve tests share."""

from __future__ import annotations

import io
import socket
from functools import lru_cache

import numpy as np
from PIL import Image

from onestage.engine.evaluator import EvalSet, synthetic_eval_set

SCENES = 12  # scenes per class list and size; each new seed would cost a texture pool (1.5 s)
LIMIT = 2 * 1024 * 1024  # the request body limit of the apps the tests make


def scene(class_names: tuple[str, ...], index: int, size: int = 320) -> np.ndarray:
    """Scene `index` (< SCENES) of a fixed synthetic set: a (size, size, 3) uint8 RGB image with
    4 of `class_names`' icons on it."""
    return _scenes(tuple(class_names), size).load_image(index)


@lru_cache(maxsize=4)
def _scenes(class_names: tuple[str, ...], size: int) -> EvalSet:
    return synthetic_eval_set(class_names, SCENES, size=size)


def encode(image: np.ndarray | Image.Image, image_format: str = "PNG") -> bytes:
    """`image` (an array or a Pillow image) encoded as `image_format` bytes."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, image_format)
    return buffer.getvalue()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
