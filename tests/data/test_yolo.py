"""YOLO reader and writer: layout, label-path rule, data.yaml variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import write_flat_png
from onestage.data.formats import detect_format, image_dir, read_dataset, write_dataset
from onestage.data.formats.yolo import label_path
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.errors import DataError


def _yolo_root(tmp_path: Path, config: dict, labels: dict[str, str]) -> Path:
    """A YOLO dataset with 32x24 images images/train/<stem>.png and the given label texts."""
    root = tmp_path / "yolo"
    for stem, text in labels.items():
        write_flat_png(root / "images" / "train" / f"{stem}.png")
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    return root


def test_label_path_replaces_the_last_images_folder() -> None:
    assert label_path(Path("/d/images/x/images/train/a.jpg")) == Path(
        "/d/images/x/labels/train/a.txt"
    )
    assert label_path(Path("/d/images.png")) == Path("/d/images.txt")


def test_reads_normalised_boxes_as_absolute_pixels(tmp_path: Path) -> None:
    config = {"path": ".", "train": "images/train", "names": ["cat", "dog"]}
    root = _yolo_root(tmp_path, config, {"a": "1 0.5 0.5 0.25 0.5\n\n0 0.125 0.25 0.25 0.5\n"})
    dataset, problems = read_dataset(root)
    assert problems == []
    assert dataset.class_names == ("cat", "dog")
    (record,) = dataset.splits["train"]
    assert (record.width, record.height) == (32, 24)
    np.testing.assert_allclose(record.boxes_xyxy, [[12, 6, 20, 18], [0, 0, 8, 12]])
    assert record.labels == ["dog", "cat"]
    assert not record.difficult.any()


def test_missing_or_empty_label_file_means_no_objects(tmp_path: Path) -> None:
    config = {"train": "images/train", "names": {0: "cat"}}
    root = _yolo_root(tmp_path, config, {"a": None, "b": ""})
    dataset, _ = read_dataset(root, "yolo")
    assert [r.num_objects for r in dataset.splits["train"]] == [0, 0]


def test_image_list_txt_and_other_yaml_name(tmp_path: Path) -> None:
    root = _yolo_root(tmp_path, {}, {"a": "0 0.5 0.5 0.5 0.5\n", "b": None})
    (root / "data.yaml").unlink()
    (root / "train.txt").write_text("./images/train/b.png\n")
    (root / "mine.yaml").write_text(yaml.safe_dump({"val": "train.txt", "names": ["cat"]}))
    assert detect_format(root) == "yolo"
    dataset, _ = read_dataset(root)
    assert [r.image_path.name for r in dataset.splits["val"]] == ["b.png"]


def test_nc_must_agree_with_names(tmp_path: Path) -> None:
    config = {"train": "images/train", "names": ["cat"], "nc": 2}
    root = _yolo_root(tmp_path, config, {"a": None})
    with pytest.raises(DataError, match="nc is 2 but names has 1") as caught:
        read_dataset(root)
    assert caught.value.field == "nc"


def test_missing_split_folder_is_named(tmp_path: Path) -> None:
    config = {"train": "images/train", "val": "images/val", "names": ["cat"]}
    root = _yolo_root(tmp_path, config, {"a": None})
    with pytest.raises(DataError, match="not found") as caught:
        read_dataset(root)
    assert (caught.value.path, caught.value.field) == (root / "data.yaml", "val")


def test_writer_layout(tmp_path: Path) -> None:
    image = write_flat_png(tmp_path / "src" / "a.png")
    record = ImageRecord(image, 32, 24, [[0, 0, 16, 12]], [1], ("cat", "dog"), [True])
    out = tmp_path / "out"
    write_dataset(DetectionDataset(("cat", "dog"), {"val": [record]}), out, "yolo")
    config = yaml.safe_load((out / "data.yaml").read_text())
    assert config == {"path": ".", "val": "images/val", "names": {0: "cat", 1: "dog"}}
    assert (out / "images" / "val" / "a.png").read_bytes() == image.read_bytes()
    label = (out / "labels" / "val" / "a.txt").read_text()
    assert label == "1 0.250000 0.250000 0.500000 0.500000\n"
    assert image_dir(out, "yolo", "val") == out / "images" / "val"


def test_writer_refuses_two_images_with_one_label_file(tmp_path: Path) -> None:
    records = [
        ImageRecord(write_flat_png(tmp_path / folder / "a.png"), 32, 24, [], [], ("cat",))
        for folder in ("x", "y")
    ]
    with pytest.raises(DataError, match="would be written here"):
        write_dataset(DetectionDataset(("cat",), {"train": records}), tmp_path / "out", "yolo")
    assert not (tmp_path / "out").exists()


def test_path_that_does_not_exist_falls_back_to_the_yaml_folder(tmp_path: Path) -> None:
    config = {"path": "../datasets/elsewhere", "train": "images/train", "names": ["cat"]}
    root = _yolo_root(tmp_path, config, {"a": "0 0.5 0.5 0.5 0.5\n"})
    dataset, _ = read_dataset(root)
    assert dataset.splits["train"][0].image_path == root / "images" / "train" / "a.png"
