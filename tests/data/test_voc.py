"""Pascal VOC reader and writer: 1-based pixels, classes.txt, ImageSets, XML safety."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import write_flat_png
from onestage.data.formats import detect_format, image_dir, read_dataset, write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.errors import DataError


def _xml(filename: str, objects: str, width: int = 32, height: int = 24) -> str:
    return (
        f"<annotation><filename>{filename}</filename>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        f"{objects}</annotation>"
    )


def _object(name: str, box: tuple, difficult: int = 0) -> str:
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
        f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
        "</bndbox></object>"
    )


def _voc_root(tmp_path: Path, annotations: dict[str, str]) -> Path:
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    for stem, text in annotations.items():
        write_flat_png(root / "JPEGImages" / f"{stem}.png")
        (root / "Annotations" / f"{stem}.xml").write_text(text)
    return root


def test_reads_one_based_inclusive_pixels(tmp_path: Path) -> None:
    objects = _object("dog", (1, 1, 32, 24)) + _object("cat", (5, 3, 10, 8), difficult=1)
    root = _voc_root(tmp_path, {"a": _xml("a.png", objects)})
    assert detect_format(root) == "voc"
    dataset, problems = read_dataset(root)
    assert problems == []
    # No classes.txt and no ImageSets: sorted names, one split "train".
    assert dataset.class_names == ("cat", "dog")
    (record,) = dataset.splits["train"]
    np.testing.assert_allclose(record.boxes_xyxy, [[0, 0, 32, 24], [4, 2, 10, 8]])
    assert record.labels == ["dog", "cat"]
    assert record.difficult.tolist() == [False, True]


def test_classes_txt_order_and_image_sets(tmp_path: Path) -> None:
    root = _voc_root(
        tmp_path,
        {"a": _xml("a.png", _object("zebra", (1, 1, 4, 4))), "b": _xml("b.png", "")},
    )
    (root / "classes.txt").write_text("zebra\nant\n")
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("a\n")
    (main / "val.txt").write_text("b\n")
    (main / "trainval.txt").write_text("a\nb\n")
    (main / "zebra_train.txt").write_text("a  1\n")
    dataset, _ = read_dataset(root)
    assert dataset.class_names == ("zebra", "ant")
    assert {s: [r.image_path.name for r in rs] for s, rs in dataset.splits.items()} == {
        "train": ["a.png"],
        "val": ["b.png"],
    }
    assert dataset.splits["train"][0].class_ids.tolist() == [0]


def test_stored_size_must_match_the_image(tmp_path: Path) -> None:
    root = _voc_root(tmp_path, {"a": _xml("a.png", "", width=40)})
    with pytest.raises(DataError, match="size is 40x24 but the image") as caught:
        read_dataset(root)
    assert (caught.value.path, caught.value.field) == (root / "Annotations" / "a.xml", "size")


def test_missing_and_non_numeric_fields_are_named(tmp_path: Path) -> None:
    objects = _object("cat", (1, 1, 4, 4)) + _object("cat", (1, 1, "four", 4))
    root = _voc_root(tmp_path, {"a": _xml("a.png", objects)})
    with pytest.raises(DataError, match="not a number: 'four'") as caught:
        read_dataset(root)
    assert caught.value.field == "object[2]/bndbox/xmax"

    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename></annotation>"
    )
    with pytest.raises(DataError, match="missing field") as caught:
        read_dataset(root)
    assert caught.value.field == "size/width"


def test_doctype_is_refused(tmp_path: Path) -> None:
    bomb = '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">]>\n' + _xml("a.png", "")
    root = _voc_root(tmp_path, {"a": bomb})
    with pytest.raises(DataError, match="not allowed") as caught:
        read_dataset(root)
    assert caught.value.line == 2


def test_writer_layout_and_coordinates(tmp_path: Path) -> None:
    image = write_flat_png(tmp_path / "src" / "a.png")
    box = [0.25, 0, 16.5, 12.1234]
    record = ImageRecord(image, 32, 24, [box], [1], ("cat", "dog"), [True])
    out = tmp_path / "out"
    write_dataset(DetectionDataset(("cat", "dog"), {"val": [record]}), out, "voc")
    xml = (out / "Annotations" / "a.xml").read_text()
    for tag, text in [("xmin", "1.25"), ("ymin", "1"), ("xmax", "16.5"), ("ymax", "12.123")]:
        assert f"<{tag}>{text}</{tag}>" in xml
    assert "<difficult>1</difficult>" in xml
    assert (out / "ImageSets" / "Main" / "val.txt").read_text() == "a\n"
    assert (out / "classes.txt").read_text() == "cat\ndog\n"
    assert image_dir(out, "voc", "val") == out / "JPEGImages"
    assert (out / "JPEGImages" / "a.png").is_file()
    (back,) = read_dataset(out)[0].splits["val"]
    np.testing.assert_allclose(back.boxes_xyxy, [box], atol=1e-3)
