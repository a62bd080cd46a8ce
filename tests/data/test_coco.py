"""COCO reader and writer: category-id mapping, iscrowd, file_name lookup, field errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import write_flat_png
from onestage.data.formats import detect_format, image_dir, read_dataset, write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.errors import DataError


def _coco_root(tmp_path: Path, content: dict, split: str = "train") -> Path:
    root = tmp_path / "coco"
    for image in content.get("images", []):
        write_flat_png(root / "images" / split / image["file_name"])
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(content, indent=1))
    return root


def _content(annotations: list[dict], width: int = 32) -> dict:
    return {
        "images": [{"id": 7, "file_name": "a.png", "width": width, "height": 24}],
        "annotations": annotations,
        "categories": [{"id": 9, "name": "dog"}, {"id": 3, "name": "cat"}],
    }


def test_category_ids_map_to_contiguous_indices_by_id(tmp_path: Path) -> None:
    annotations = [
        {"id": 1, "image_id": 7, "category_id": 9, "bbox": [1, 2, 10, 5]},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 32, 24], "iscrowd": 1},
    ]
    root = _coco_root(tmp_path, _content(annotations))
    assert detect_format(root) == "coco"
    dataset, problems = read_dataset(root)
    assert problems == []
    assert dataset.class_names == ("cat", "dog")
    (record,) = dataset.splits["train"]
    np.testing.assert_allclose(record.boxes_xyxy, [[1, 2, 11, 7], [0, 0, 32, 24]])
    assert record.labels == ["dog", "cat"]
    assert record.difficult.tolist() == [False, True]
    # the dataset's own ids are kept, to write results back in them
    assert dataset.category_ids == (3, 9) and record.image_id == 7


def test_file_name_relative_to_dataset_root(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    write_flat_png(root / "pictures" / "a.png")
    (root / "annotations").mkdir(parents=True)
    content = _content([])
    content["images"][0]["file_name"] = "pictures/a.png"
    (root / "annotations" / "val.json").write_text(json.dumps(content))
    dataset, _ = read_dataset(root)
    assert dataset.splits["val"][0].image_path == root / "pictures" / "a.png"


def test_stored_size_must_match_the_image(tmp_path: Path) -> None:
    root = _coco_root(tmp_path, _content([], width=33))
    with pytest.raises(DataError, match="width is 33 but the image") as caught:
        read_dataset(root)
    assert caught.value.field == "images[0].width"


def test_wrong_types_are_named(tmp_path: Path) -> None:
    annotations = [
        {"id": 1, "image_id": 7, "category_id": 9, "bbox": [1, 2, 10, 5]},
        {"id": 2, "image_id": 7, "category_id": 9, "bbox": "1 2 3 4"},
    ]
    root = _coco_root(tmp_path, _content(annotations))
    with pytest.raises(DataError, match=r"expected \[x, y, w, h\]") as caught:
        read_dataset(root)
    assert caught.value.field == "annotations[1].bbox"

    content = _content([])
    del content["images"][0]["file_name"]
    (root / "annotations" / "instances_train.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match="missing field") as caught:
        read_dataset(root)
    assert caught.value.field == "images[0].file_name"


def test_writer_layout(tmp_path: Path) -> None:
    image = write_flat_png(tmp_path / "src" / "a.png")
    records = [
        ImageRecord(image, 32, 24, [[1, 2, 11, 7], [0, 0, 4, 4]], [1, 0], ("cat", "dog"), [0, 1])
    ]
    out = tmp_path / "out"
    write_dataset(DetectionDataset(("cat", "dog"), {"val": records}), out, "coco")
    content = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert content["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert content["images"] == [{"id": 1, "file_name": "a.png", "width": 32, "height": 24}]
    assert content["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 2, 10, 5], "area": 50,
         "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16,
         "iscrowd": 1},
    ]  # fmt: skip
    assert image_dir(out, "coco", "val") == out / "images" / "val"
    assert (out / "images" / "val" / "a.png").is_file()
