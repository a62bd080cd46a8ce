"""Random datasets survive conversions between formats (boxes within 1e-3 px)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from onestage.data.formats import read_dataset, write_dataset
from onestage.data.records import DetectionDataset, ImageRecord

TOLERANCE_PX = 1e-3


@st.composite
def datasets(draw: st.DrawFn, with_difficult: bool) -> dict:
    """A dataset description: class names and images (split, size, xyxy pixel boxes, labels)."""
    names = draw(
        st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=5, unique=True)
    )
    splits = draw(st.lists(st.sampled_from(["train", "val", "test"]), min_size=1, unique=True))
    images = []
    for _ in range(draw(st.integers(1, 4))):
        width, height = draw(st.integers(8, 200)), draw(st.integers(8, 200))
        boxes = []
        for _ in range(draw(st.integers(0, 5))):
            x1, y1 = draw(st.floats(0, width - 1)), draw(st.floats(0, height - 1))
            boxes.append((x1, y1, draw(st.floats(x1 + 1, width)), draw(st.floats(y1 + 1, height))))
        class_ids = [draw(st.integers(0, len(names) - 1)) for _ in boxes]
        difficult = [with_difficult and draw(st.booleans()) for _ in boxes]
        split = draw(st.sampled_from(splits))
        images.append((split, width, height, boxes, class_ids, difficult))
    return {"names": tuple(names), "splits": splits, "images": images}


def _materialise(spec: dict, folder: Path) -> DetectionDataset:
    """Write the images of `spec` as PNGs under `folder` and build its dataset."""
    splits: dict[str, list[ImageRecord]] = {split: [] for split in spec["splits"]}
    for i, (split, width, height, boxes, class_ids, difficult) in enumerate(spec["images"]):
        path = folder / f"img{i}.png"
        Image.new("RGB", (width, height), (i * 40, 80, 160)).save(path)
        record = ImageRecord(path, width, height, boxes, class_ids, spec["names"], difficult)
        splits[split].append(record)
    return DetectionDataset(spec["names"], splits)


def _assert_same(expected: DetectionDataset, actual: DetectionDataset, out_dir: Path) -> None:
    assert actual.class_names == expected.class_names
    assert actual.splits.keys() == expected.splits.keys()
    for split, records in expected.splits.items():
        by_name = {record.image_path.name: record for record in actual.splits[split]}
        assert by_name.keys() == {record.image_path.name for record in records}
        for want in records:
            got = by_name[want.image_path.name]
            assert got.image_path.is_relative_to(out_dir)
            assert (got.width, got.height) == (want.width, want.height)
            np.testing.assert_allclose(got.boxes_xyxy, want.boxes_xyxy, rtol=0, atol=TOLERANCE_PX)
            assert got.labels == want.labels
            assert got.difficult.tolist() == want.difficult.tolist()


def _convert_chain(spec: dict, formats: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        original = _materialise(spec, Path(tmp))
        current = original
        for step, fmt in enumerate(formats):
            out_dir = Path(tmp) / f"{step}-{fmt}"
            write_dataset(current, out_dir, fmt)
            current, problems = read_dataset(out_dir, skip_invalid=True)
            assert problems == []
            _assert_same(original, current, out_dir)


@settings(max_examples=30, deadline=None)
@given(spec=datasets(with_difficult=False))
def test_yolo_voc_coco_yolo(spec: dict) -> None:
    _convert_chain(spec, ["yolo", "voc", "coco", "yolo"])


@settings(max_examples=25, deadline=None)
@given(spec=datasets(with_difficult=True))
def test_voc_coco_voc_keeps_difficult(spec: dict) -> None:
    _convert_chain(spec, ["voc", "coco", "voc"])
