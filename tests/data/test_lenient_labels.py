"""Lenient labels: small overshoots are clipped, boxes left without area dropped, and counted."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from helpers import write_flat_png
from onestage.data.formats import read_dataset, write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.errors import DataError

CLASSES = ("cat", "dog")
WIDTH, HEIGHT = 640, 480  # 2 % of the side: 12.8 px in x, 9.6 px in y
OVER_RIGHT = (630.4, 216.0, 643.2, 264.0)  # 3.2 px past the right edge: clipped
PAST_RIGHT = (640.5, 216.0, 641.5, 264.0)  # 1 px wide, just past the right edge: dropped
FAR_RIGHT = (600.0, 216.0, 660.0, 264.0)  # 20 px past the right edge: refused
INSIDE = (10.0, 20.0, 110.0, 220.0)


def _dataset(tmp_path: Path, fmt: str, boxes: list[tuple[float, ...]]) -> tuple[Path, Path, list]:
    """A dataset with image a.png holding `boxes` (xyxy pixels, written as is, unclipped).

    Returns the root, the annotation file and each box's location (YOLO line, else field).
    """
    image = write_flat_png(tmp_path / "src" / "a.png", WIDTH, HEIGHT)
    placeholder = ImageRecord(
        image, WIDTH, HEIGHT, [INSIDE] * len(boxes), [0] * len(boxes), CLASSES
    )
    root = tmp_path / fmt
    write_dataset(DetectionDataset(CLASSES, {"train": [placeholder]}), root, fmt)
    if fmt == "yolo":
        path = root / "labels" / "train" / "a.txt"
        lines = [
            f"0 {(x1 + x2) / 2 / WIDTH!r} {(y1 + y2) / 2 / HEIGHT!r} "
            f"{(x2 - x1) / WIDTH!r} {(y2 - y1) / HEIGHT!r}\n"
            for x1, y1, x2, y2 in boxes
        ]
        path.write_text("".join(lines))
        return root, path, list(range(1, len(boxes) + 1))
    if fmt == "voc":
        path = root / "Annotations" / "a.xml"
        tree = ET.parse(path)
        for obj, (x1, y1, x2, y2) in zip(tree.iter("object"), boxes, strict=True):
            corners = {"xmin": x1 + 1, "ymin": y1 + 1, "xmax": x2, "ymax": y2}  # 1-based
            for tag, value in corners.items():
                obj.find(f"bndbox/{tag}").text = repr(value)
        tree.write(path)
        return root, path, [f"object[{i}]/bndbox" for i in range(1, len(boxes) + 1)]
    path = root / "annotations" / "instances_train.json"
    content = json.loads(path.read_text())
    for annotation, (x1, y1, x2, y2) in zip(content["annotations"], boxes, strict=True):
        annotation["bbox"] = [x1, y1, x2 - x1, y2 - y1]
    path.write_text(json.dumps(content))
    return root, path, [f"annotations[{i}].bbox" for i in range(len(boxes))]


def _located(item, fmt: str):
    return item.path, item.line if fmt == "yolo" else item.field


def test_issue_example_is_clipped_not_refused(tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    write_flat_png(root / "images" / "train" / "a.png", 640, 640)
    (root / "labels" / "train").mkdir(parents=True)
    label = root / "labels" / "train" / "a.txt"
    label.write_text("0 0.995 0.5 0.02 0.1\n")
    (root / "data.yaml").write_text("train: images/train\nnames: [cat]\n")
    dataset, problems = read_dataset(root)
    assert problems == []
    (record,) = dataset.splits["train"]
    np.testing.assert_allclose(record.boxes_xyxy, [[630.4, 288, 640, 352]])
    (fix,) = dataset.label_fixes
    assert (fix.path, fix.line, fix.dropped) == (label, 1, False)
    assert str(fix) == (
        f"{label}:1: box (630.4, 288, 643.2, 352) overshoots the 640x640 image: "
        "clipped to (630.4, 288, 640, 352)"
    )


@pytest.mark.parametrize("fmt", ["yolo", "voc", "coco"])
def test_small_overshoot_is_clipped_and_a_box_left_without_area_dropped(
    tmp_path: Path, fmt: str
) -> None:
    root, path, where = _dataset(tmp_path, fmt, [OVER_RIGHT, PAST_RIGHT, INSIDE])
    dataset, problems = read_dataset(root)
    assert problems == []
    (record,) = dataset.splits["train"]
    np.testing.assert_allclose(record.boxes_xyxy, [[630.4, 216, 640, 264], INSIDE])
    assert record.class_ids.tolist() == [0, 0]
    clipped, dropped = dataset.label_fixes
    assert (_located(clipped, fmt), clipped.dropped) == ((path, where[0]), False)
    assert (_located(dropped, fmt), dropped.dropped) == ((path, where[1]), True)
    assert str(clipped).endswith("clipped to (630.4, 216, 640, 264)")
    assert str(dropped).endswith(
        "box (640.5, 216, 641.5, 264) overshoots the 640x480 image: "
        "dropped (no area left after clipping)"
    )


@pytest.mark.parametrize("fmt", ["yolo", "voc", "coco"])
def test_large_overshoot_is_still_refused(tmp_path: Path, fmt: str) -> None:
    root, path, where = _dataset(tmp_path, fmt, [FAR_RIGHT])
    with pytest.raises(DataError) as caught:
        read_dataset(root)
    assert _located(caught.value, fmt) == (path, where[0])
    assert caught.value.message == "box (600, 216, 660, 264) lies outside the 640x480 image"


@pytest.mark.parametrize("fmt", ["yolo", "voc", "coco"])
def test_tolerance_is_two_percent_of_each_side(tmp_path: Path, fmt: str) -> None:
    # 9 px past the bottom edge is under 2 % of the 480 px height; 11 px is not, though it is
    # under 2 % of the 640 px width.
    root, _, _ = _dataset(tmp_path, fmt, [(-12, 470, 200, 489)])
    (record,) = read_dataset(root)[0].splits["train"]
    np.testing.assert_allclose(record.boxes_xyxy, [[0, 470, 200, 480]])
    root, _, _ = _dataset(tmp_path / "again", fmt, [(100, 470, 200, 491)])
    with pytest.raises(DataError, match="lies outside the 640x480 image"):
        read_dataset(root)


@pytest.mark.parametrize("fmt", ["yolo", "voc", "coco"])
def test_strict_refuses_small_overshoots_with_the_usual_error(tmp_path: Path, fmt: str) -> None:
    root, path, where = _dataset(tmp_path, fmt, [INSIDE, PAST_RIGHT])
    with pytest.raises(DataError) as caught:
        read_dataset(root, strict=True)
    assert _located(caught.value, fmt) == (path, where[1])
    assert caught.value.message == "box (640.5, 216, 641.5, 264) lies outside the 640x480 image"


def test_one_warning_line_per_dataset_counts_clipped_and_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, _, _ = _dataset(tmp_path, "yolo", [OVER_RIGHT, PAST_RIGHT, OVER_RIGHT, INSIDE])
    with caplog.at_level(logging.WARNING):
        read_dataset(root)
    assert [record.getMessage() for record in caplog.records] == [
        f"{root}: 2 boxes clipped to the image, 1 degenerate box dropped "
        "(onestage data check lists them; --strict refuses them)"
    ]
    caplog.clear()
    clean, _, _ = _dataset(tmp_path / "clean", "yolo", [INSIDE])
    with caplog.at_level(logging.WARNING):
        assert read_dataset(clean)[0].label_fixes == []
    assert caplog.records == []


def test_fixes_in_a_skipped_image_are_not_counted(tmp_path: Path) -> None:
    root, label, _ = _dataset(tmp_path, "yolo", [OVER_RIGHT])
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    write_flat_png(root / "images" / "train" / "b.png", WIDTH, HEIGHT)
    dataset, problems = read_dataset(root, skip_invalid=True)
    assert [r.image_path.name for r in dataset.splits["train"]] == ["b.png"]
    assert [(p.path, p.line) for p in problems] == [(label, 2)]
    assert dataset.label_fixes == []
