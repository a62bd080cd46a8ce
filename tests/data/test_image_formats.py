"""Only JPEG, PNG, BMP, WebP and TIFF reach a decoder: an EPS, PostScript or PDF file given as an
image (to the reader, a dataset or `predict`) is refused in one line, and Ghostscript, which
Pillow's EPS plugin runs on such a file, is never started."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import run_in_process
from onestage.data.formats import read_dataset, write_dataset
from onestage.data.images import (
    IMAGE_FORMATS,
    NotAnImageError,
    decode_image_bytes,
    load_image_rgb,
    read_image_size,
)
from onestage.data.records import DetectionDataset, ImageRecord

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n0 0 moveto 16 16 lineto stroke\n%%EOF\n"
POSTSCRIPT = b"%!PS\n%%BoundingBox: 0 0 16 16\nnewpath 0 0 moveto 16 16 lineto stroke showpage\n"
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 16 16]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
DOCUMENTS = {"eps": EPS, "ps": POSTSCRIPT, "pdf": PDF}


@pytest.fixture
def ghostscript_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stub `gs` first on PATH that writes a marker file when it is started."""
    folder = tmp_path / "stub-bin"
    folder.mkdir()
    marker = tmp_path / "ghostscript-ran"
    stub = folder / "gs"
    stub.write_text(
        f'#!/bin/sh\ntouch "{marker}"\n[ "$1" = --version ] && echo 10.05.0 && exit 0\nexit 1\n'
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return marker


def test_the_stub_is_what_pillow_would_run(ghostscript_marker: Path, tmp_path: Path) -> None:
    """The check below is only worth something if Pillow, left to itself, starts the stub."""
    eps = tmp_path / "figure.eps"
    eps.write_bytes(EPS)
    with pytest.raises(subprocess.CalledProcessError), Image.open(eps) as image:  # a stub
        image.load()
    assert ghostscript_marker.exists()


@pytest.mark.parametrize("kind", sorted(DOCUMENTS))
def test_documents_are_refused_by_every_reader(
    kind: str, ghostscript_marker: Path, tmp_path: Path
) -> None:
    path = tmp_path / f"picture.{kind}"
    path.write_bytes(DOCUMENTS[kind])
    for read in (load_image_rgb, read_image_size):
        with pytest.raises(NotAnImageError) as caught:
            read(path)
        assert str(caught.value) == (
            f"{path}: not a readable image (formats read: {', '.join(IMAGE_FORMATS)})"
        )
    with pytest.raises(NotAnImageError):
        decode_image_bytes(DOCUMENTS[kind], "upload")
    assert not ghostscript_marker.exists()


def test_a_dataset_image_that_is_a_document_is_one_line(
    ghostscript_marker: Path, tmp_path: Path
) -> None:
    image = tmp_path / "src" / "a.jpg"
    image.parent.mkdir()
    Image.new("RGB", (16, 16)).save(image)
    record = ImageRecord(image, 16, 16, [[2, 2, 10, 10]], [0], ("cat",))
    root = tmp_path / "yolo"
    write_dataset(DetectionDataset(("cat",), {"train": [record]}), root, "yolo")
    written = root / "images" / "train" / "a.jpg"
    written.write_bytes(EPS)
    with pytest.raises(NotAnImageError) as caught:
        read_dataset(root)
    assert caught.value.path == written and "formats read" in caught.value.message
    assert not ghostscript_marker.exists()


def test_predict_refuses_a_document_in_one_line(
    ghostscript_marker: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    path = tmp_path / "scan.eps"
    path.write_bytes(EPS)
    result = run_in_process(
        monkeypatch, capsys, "predict", str(path), "--weights", "animals", "--backend", "torch",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: {path}: not a readable image")
    assert result.stderr.strip().count("\n") == 0
    assert not ghostscript_marker.exists()


def test_every_listed_format_still_reads(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (12, 20, 3), dtype=np.uint8)
    for image_format in IMAGE_FORMATS:
        path = tmp_path / f"image.{image_format.lower()}"
        options = {"lossless": True} if image_format == "WEBP" else {}
        Image.fromarray(pixels).save(path, image_format, **options)
        assert read_image_size(path) == (20, 12)
        if image_format != "JPEG":
            np.testing.assert_array_equal(load_image_rgb(path), pixels)
