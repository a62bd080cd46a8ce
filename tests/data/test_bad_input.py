"""Bad input: every problem is a DataError naming the file and the line or field."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from PIL import Image

from helpers import write_flat_png
from onestage.data.formats import read_dataset, write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.errors import DataError

CLASSES = ("cat", "dog")


def _dataset(tmp_path: Path, fmt: str, num_images: int = 2) -> Path:
    """A valid dataset in `fmt`: images a.png, b.png, ... with one cat box each."""
    records = [
        ImageRecord(
            write_flat_png(tmp_path / "src" / f"{chr(97 + i)}.png"),
            32,
            24,
            [[2, 2, 20, 20]],
            [0],
            CLASSES,
        )
        for i in range(num_images)
    ]
    root = tmp_path / fmt
    write_dataset(DetectionDataset(CLASSES, {"train": records}), root, fmt)
    return root


def _raises(root: Path, **kwargs) -> DataError:
    with pytest.raises(DataError) as caught:
        read_dataset(root, **kwargs)
    return caught.value


def test_malformed_yolo_line(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "yolo")
    label = root / "labels" / "train" / "a.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n")
    error = _raises(root)
    assert (error.path, error.line) == (label, 2)
    assert "expected 5 values" in error.message
    label.write_text("0 0.5 0.5 0.2 0.2 0.3 0.4\n")
    assert "expected 5 values" in _raises(root).message
    label.write_text("0 0.5 x 0.2 0.2\n")
    assert "non-numeric" in _raises(root).message


def test_malformed_xml(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "voc")
    xml = root / "Annotations" / "b.xml"
    xml.write_text("<annotation>\n<filename>b.png</filename>\n<size>\n</annotation>\n")
    error = _raises(root)
    assert (error.path, error.line) == (xml, 4)
    assert error.message.startswith("malformed XML")


def test_malformed_json(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "coco")
    path = root / "annotations" / "instances_train.json"
    path.write_text('{\n "images": [],\n "annotations": [,]\n}\n')
    error = _raises(root)
    assert (error.path, error.line) == (path, 3)
    assert error.message.startswith("malformed JSON")


@pytest.mark.parametrize(
    ("fmt", "line", "field", "phrase"),
    [
        ("yolo", "0 0.9 0.5 0.4 0.2", None, "lies outside the 32x24 image"),
        ("yolo", "0 0.5 0.5 0 0.2", None, "non-positive size"),
        ("voc", (1, 1, 40, 10), "object[1]/bndbox", "lies outside the 32x24 image"),
        ("voc", (10, 1, 5, 10), "object[1]/bndbox", "non-positive size"),
        ("coco", [20, 0, 20, 10], "annotations[0].bbox", "lies outside the 32x24 image"),
        ("coco", [1, 1, -2, 10], "annotations[0].bbox", "non-positive size"),
    ],
)
def test_bad_boxes(tmp_path: Path, fmt: str, line, field: str | None, phrase: str) -> None:
    root = _dataset(tmp_path, fmt, num_images=1)
    if fmt == "yolo":
        path = root / "labels" / "train" / "a.txt"
        path.write_text(f"{line}\n")
    elif fmt == "voc":
        path = root / "Annotations" / "a.xml"
        text = path.read_text()
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), line, strict=True):
            start, end = text.index(f"<{tag}>") + len(tag) + 2, text.index(f"</{tag}>")
            text = text[:start] + str(value) + text[end:]
        path.write_text(text)
    else:
        path = root / "annotations" / "instances_train.json"
        content = json.loads(path.read_text())
        content["annotations"][0]["bbox"] = line
        path.write_text(json.dumps(content))
    error = _raises(root)
    assert (error.path, error.line if fmt == "yolo" else error.field) == (
        path,
        1 if fmt == "yolo" else field,
    )
    assert phrase in error.message


def test_unknown_class_id_yolo(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "yolo")
    label = root / "labels" / "train" / "b.txt"
    label.write_text("2 0.5 0.5 0.2 0.2\n")
    error = _raises(root)
    assert (error.path, error.line) == (label, 1)
    assert "class id 2 is not in names" in error.message
    label.write_text("1.5 0.5 0.5 0.2 0.2\n")
    assert "not an integer" in _raises(root).message


def test_unknown_class_name_voc(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "voc")
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<name>cat</name>", "<name>cow</name>"))
    error = _raises(root)
    assert (error.path, error.field) == (xml, "object[1]/name")
    assert "unknown class name 'cow'" in error.message


def test_unknown_category_coco(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "coco")
    path = root / "annotations" / "instances_train.json"
    content = json.loads(path.read_text())
    content["annotations"][0]["category_id"] = 5
    path.write_text(json.dumps(content))
    error = _raises(root)
    assert (error.path, error.field) == (path, "annotations[0].category_id")
    assert "unknown category id 5" in error.message


def test_missing_image(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "voc")
    image = root / "JPEGImages" / "b.png"
    image.unlink()
    error = _raises(root)
    assert error.path == image
    assert "not found" in error.message


def test_corrupt_image(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "yolo")
    image = root / "images" / "train" / "a.png"
    image.write_bytes(random.Random(0).randbytes(200))  # fixed noise: no chance of a header
    error = _raises(root)
    assert error.path == image
    assert "not a readable image" in error.message


def test_truncated_image_needs_verify_images(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "coco")
    image = root / "images" / "train" / "a.png"
    Image.effect_noise((32, 24), 50).convert("RGB").save(image)
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    read_dataset(root)  # the header alone is fine
    error = _raises(root, verify_images=True)
    assert error.path == image
    assert "corrupt or truncated" in error.message


def test_image_over_the_pixel_limit(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "yolo")
    error = _raises(root, max_pixels=100)
    assert error.path == root / "images" / "train" / "a.png"
    assert "over the limit of 100" in error.message


@pytest.mark.parametrize("fmt", ["yolo", "voc", "coco"])
def test_empty_dataset(tmp_path: Path, fmt: str) -> None:
    root = tmp_path / fmt
    write_dataset(DetectionDataset(CLASSES, {"train": []}), root, fmt)
    for kwargs in ({}, {"skip_invalid": True}):
        error = _raises(root, **kwargs)
        assert (error.path, error.message) == (root, "dataset has no images")


def test_unknown_format(tmp_path: Path) -> None:
    error = _raises(tmp_path)
    assert error.path == tmp_path
    assert "cannot tell the dataset format" in error.message


def test_skip_invalid_returns_good_records_and_problems(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "yolo", num_images=4)
    (root / "labels" / "train" / "a.txt").write_text("7 0.5 0.5 0.2 0.2\n0 0.5 0.5\n")
    (root / "images" / "train" / "c.png").write_bytes(b"not a png")
    dataset, problems = read_dataset(root, skip_invalid=True)
    assert [r.image_path.name for r in dataset.splits["train"]] == ["b.png", "d.png"]
    assert [(p.path.name, p.line) for p in problems] == [
        ("a.txt", 1),
        ("a.txt", 2),
        ("c.png", None),
    ]


def test_skip_invalid_with_nothing_valid_still_raises(tmp_path: Path) -> None:
    root = _dataset(tmp_path, "yolo", num_images=1)
    (root / "labels" / "train" / "a.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    error = _raises(root, skip_invalid=True)
    assert "dataset has no valid images (1 problems" in error.message


def test_failed_write_keeps_old_files_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dataset(tmp_path, "yolo")
    labels = root / "labels" / "train"
    old = {path.name: path.read_text() for path in labels.iterdir()}
    dataset, _ = read_dataset(root)
    moved = [
        ImageRecord(r.image_path, 32, 24, [[0, 0, 8, 8]], [1], CLASSES)
        for r in dataset.splits["train"]
    ]
    real_replace, calls = os.replace, []

    def failing_replace(src, dst) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(DetectionDataset(CLASSES, {"train": moved}), root, "yolo")
    monkeypatch.undo()
    assert (labels / "a.txt").read_text() == "1 0.125000 0.166667 0.250000 0.333333\n"
    assert (labels / "b.txt").read_text() == old["b.txt"]
    assert sorted(path.name for path in labels.iterdir()) == ["a.txt", "b.txt"]  # no temp files
