"""Fuzzing the image reader: mutated PNG, JPEG and BMP files, random bytes, truncated files,
wrong extensions, empty files and headers declaring huge images."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.fuzzing import CASES, FuzzRun, mutate_bytes, property_cases, seeded
from helpers import encode, png_header
from onestage.data.images import decode_image_bytes, load_image_rgb, read_image_size

READER = "images"
FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "TIFF", "GIF")
SUFFIXES = (".png", ".jpg", ".bmp", ".webp", ".tif", ".gif", ".txt", "")


def _encoded(image_format: str, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    return encode(pixels, image_format)


@pytest.fixture(scope="module")
def valid_files() -> list[bytes]:
    return [_encoded(image_format, seed) for seed, image_format in enumerate(FORMATS)]


def _read_all_ways(path: Path, data: bytes) -> None:
    read_image_size(path)
    load_image_rgb(path)
    decode_image_bytes(data, path.name)


def test_mutated_image_files(valid_files: list[bytes], tmp_path: Path) -> None:
    run = FuzzRun(READER, "image files, mutated (bytes, truncation, extension, empty)")
    for index in range(CASES):
        rng = seeded("images", index)
        data = mutate_bytes(rng.choice(valid_files), rng)
        path = tmp_path / f"case{rng.choice(SUFFIXES)}"
        path.write_bytes(data)
        run.case(f"image case {index}", partial(_read_all_ways, path, data), path.name)
        path.unlink()
    run.finish()


def test_declared_sizes(tmp_path: Path) -> None:
    run = FuzzRun(READER, "PNG headers with any declared size (bombs, zero, huge)")
    path = tmp_path / "declared.png"
    side = st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1), st.sampled_from([8000, 7999]))

    @settings(max_examples=CASES)
    @given(width=side, height=side, mode=st.sampled_from([0, 2, 4, 6]), body=st.binary(max_size=64))
    def check(width: int, height: int, mode: int, body: bytes) -> None:
        data = png_header(width, height, mode, body)
        path.write_bytes(data)
        failure = run.case(
            f"{width}x{height} mode {mode}", lambda: _read_all_ways(path, data), path.name
        )
        assert failure is None, failure

    property_cases(run, check)


def test_random_bytes(tmp_path: Path) -> None:
    run = FuzzRun(READER, "random bytes behind real magic numbers")
    path = tmp_path / "random.jpg"
    magic = st.sampled_from(
        [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF89a", b"II*\0"]
    )

    @settings(max_examples=CASES)
    @given(head=magic, body=st.binary(max_size=200))
    def check(head: bytes, body: bytes) -> None:
        path.write_bytes(head + body)
        failure = run.case(
            f"bytes {head + body!r}", lambda: _read_all_ways(path, head + body), path.name
        )
        assert failure is None, failure

    property_cases(run, check)
