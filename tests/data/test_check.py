"""check_dataset: counts, box-size summaries and problems of a dataset."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from helpers import write_noise_png
from onestage.data.check import SizeSummary, check_dataset
from onestage.data.formats import write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.errors import DataError

CLASSES = ("cat", "dog", "emu")


def _voc_dataset(tmp_path: Path) -> Path:
    """Train: a (2 cats 4x4 and 20x10), b (no objects); val: c (1 dog 10x40)."""
    src = tmp_path / "src"
    train = [
        ImageRecord(
            write_noise_png(src / "a.png"), 40, 40, [[0, 0, 4, 4], [0, 0, 20, 10]], [0, 0], CLASSES
        ),
        ImageRecord(write_noise_png(src / "b.png"), 40, 40, [], [], CLASSES),
    ]
    val = [ImageRecord(write_noise_png(src / "c.png"), 40, 40, [[30, 0, 40, 40]], [1], CLASSES)]
    root = tmp_path / "voc"
    write_dataset(DetectionDataset(CLASSES, {"train": train, "val": val}), root, "voc")
    return root


def test_report_of_a_clean_dataset(tmp_path: Path) -> None:
    report = check_dataset(_voc_dataset(tmp_path))
    assert report.format == "voc"
    assert report.class_names == CLASSES
    assert report.images_per_split == {"train": 2, "val": 1}
    assert report.objects_per_class == {"cat": 2, "dog": 1, "emu": 0}
    assert (report.num_images, report.num_objects, report.images_without_objects) == (3, 3, 1)
    assert report.box_sizes["box width (px)"] == SizeSummary(4, 10, 20)
    assert report.box_sizes["box height (px)"] == SizeSummary(4, 10, 40)
    relative = report.box_sizes["sqrt(box area / image area)"]
    assert relative == pytest.approx((0.1, 0.125**0.5, 0.5))
    assert report.problems == []


def test_report_lists_problems_and_counts_valid_images_only(tmp_path: Path) -> None:
    root = _voc_dataset(tmp_path)
    image = root / "JPEGImages" / "a.png"
    image.write_bytes(image.read_bytes()[:200])  # truncated: only a full decode notices
    report = check_dataset(root, "voc")
    assert [(p.path, "truncated" in p.message) for p in report.problems] == [(image, True)]
    assert report.images_per_split == {"train": 1, "val": 1}
    assert report.objects_per_class == {"cat": 0, "dog": 1, "emu": 0}


def test_dataset_without_boxes_has_no_size_summary(tmp_path: Path) -> None:
    record = ImageRecord(write_noise_png(tmp_path / "src" / "a.png"), 40, 40, [], [], CLASSES)
    write_dataset(DetectionDataset(CLASSES, {"train": [record]}), tmp_path / "coco", "coco")
    report = check_dataset(tmp_path / "coco")
    assert report.box_sizes == {}
    assert report.images_without_objects == 1


def test_pixel_limit_is_passed_on(tmp_path: Path) -> None:
    root = _voc_dataset(tmp_path)
    with pytest.raises(DataError, match="dataset has no valid images"):
        check_dataset(root, max_pixels=100)


def _overshooting_voc_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """_voc_dataset with a.png's cat boxes moved: one 0.5 px past the right edge of the 40x40
    image (clipped), one wholly past it by 0.6 px (dropped); 2 % of the side is 0.8 px."""
    root = _voc_dataset(tmp_path)
    xml = root / "Annotations" / "a.xml"
    tree = ET.parse(xml)
    first, second = tree.iter("object")
    first.find("bndbox/xmax").text = "40.5"
    second.find("bndbox/xmin").text = "41.2"
    second.find("bndbox/xmax").text = "40.6"
    tree.write(xml)
    return root, xml


def test_report_lists_label_fixes_apart_from_problems(tmp_path: Path) -> None:
    root, xml = _overshooting_voc_dataset(tmp_path)
    report = check_dataset(root)
    assert report.problems == []
    assert [(f.path, f.field, f.dropped) for f in report.label_fixes] == [
        (xml, "object[1]/bndbox", False),
        (xml, "object[2]/bndbox", True),
    ]
    assert report.images_per_split == {"train": 2, "val": 1}
    assert report.objects_per_class == {"cat": 1, "dog": 1, "emu": 0}
    assert report.box_sizes["box width (px)"].maximum == 40  # clipped from 40.5


def test_strict_report_counts_label_fixes_as_problems(tmp_path: Path) -> None:
    root, xml = _overshooting_voc_dataset(tmp_path)
    report = check_dataset(root, strict=True)
    assert report.label_fixes == []
    assert [(p.path, p.field, p.message) for p in report.problems] == [
        (xml, "object[1]/bndbox", "box (0, 0, 40.5, 4) lies outside the 40x40 image"),
        (xml, "object[2]/bndbox", "box (40.2, 0, 40.6, 10) lies outside the 40x40 image"),
    ]
    assert report.images_per_split == {"train": 1, "val": 1}
