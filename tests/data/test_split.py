"""`split_dataset`: stratified, reproducible train/val/test splits written in any format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers import error_of, file_bytes, write_flat_png
from onestage.data import split as split_module
from onestage.data.formats import FORMATS, read_dataset, write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.data.split import split_dataset, stratified_assignment

NAMES = ("cat", "dog", "fox")
TOLERANCE_PX = 1e-3


def make_dataset(root: Path, fmt: str, count: int = 20, splits=("train", "val")) -> Path:
    """`count` 32x24 images written as `fmt` under `root`, dealt over `splits`: every fifth has
    no objects, the others 1 to 3 xyxy pixel boxes of cycling classes."""
    records: dict[str, list[ImageRecord]] = {split: [] for split in splits}
    for i in range(count):
        path = write_flat_png(root.parent / f"{root.name}-sources" / f"img{i:03d}.png")
        boxes = [(1 + j, 2, 10 + 2 * j, 12 + j) for j in range(0 if i % 5 == 0 else 1 + i % 3)]
        class_ids = [(i + j) % len(NAMES) for j in range(len(boxes))]
        records[splits[i % len(splits)]].append(ImageRecord(path, 32, 24, boxes, class_ids, NAMES))
    write_dataset(DetectionDataset(NAMES, records), root, fmt)
    return root


def by_name(dataset: DetectionDataset) -> dict[str, tuple[str, ImageRecord]]:
    """Each image's file name: its split and record (the test fails on a name seen twice)."""
    found: dict[str, tuple[str, ImageRecord]] = {}
    for split, records in dataset.splits.items():
        for record in records:
            assert record.image_path.name not in found
            found[record.image_path.name] = (split, record)
    return found


def made_up_class_sets(count: int = 600) -> list[list[int]]:
    """Class ids per image: 10 % without objects, classes of frequency 50 % down to 2 %, often
    several per image."""
    rng = np.random.default_rng(7)
    frequencies = (0.5, 0.3, 0.12, 0.05, 0.02)
    sets = []
    for _ in range(count):
        if rng.random() < 0.1:
            sets.append([])
            continue
        classes = [c for c, f in enumerate(frequencies) if rng.random() < f]
        sets.append(classes or [int(rng.integers(len(frequencies)))])
    return sets


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.6, 0.4, 0.0)])
def test_each_class_is_within_one_image_of_its_share_in_every_split(ratios):
    sets = made_up_class_sets()
    groups = {c: [i for i, s in enumerate(sets) if c in s] for c in range(5)}
    groups["without objects"] = [i for i, s in enumerate(sets) if not s]
    assert min(len(members) for members in groups.values()) >= 10
    for seed in range(5):
        assignment = np.array(stratified_assignment(sets, ratios, seed))
        for members in groups.values():
            counts = np.bincount(assignment[members], minlength=3)
            # the stated tolerance: one image of the class per split
            assert np.abs(counts - np.array(ratios) * len(members)).max() <= 1
        sizes = np.bincount(assignment, minlength=3)
        assert np.abs(sizes - np.array(ratios) * len(sets)).max() <= 0.03 * len(sets)
        assert ratios[2] > 0 or sizes[2] == 0


@pytest.mark.parametrize("fmt_in", FORMATS)
@pytest.mark.parametrize("fmt_out", FORMATS)
def test_every_image_lands_in_one_split_with_its_boxes(tmp_path: Path, fmt_in: str, fmt_out: str):
    source = make_dataset(tmp_path / "in", fmt_in, count=12)
    written = split_dataset(source, tmp_path / "out", (0.5, 0.25, 0.25), seed=1, fmt=fmt_out)
    expected = by_name(read_dataset(source)[0])
    back, problems = read_dataset(tmp_path / "out", fmt_out)
    assert problems == []
    assert back.class_names == NAMES
    got = by_name(back)
    assert got.keys() == expected.keys()  # all 12, each once
    assert {split for split, _ in got.values()} == {"train", "val", "test"}
    assert {name: split for name, (split, _) in by_name(written).items()} == {
        name: split for name, (split, _) in got.items()
    }
    for name, (_, record) in got.items():
        want = expected[name][1]
        assert record.image_path.is_relative_to(tmp_path / "out")
        np.testing.assert_allclose(record.boxes_xyxy, want.boxes_xyxy, rtol=0, atol=TOLERANCE_PX)
        assert record.labels == want.labels


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_seed_gives_the_same_bytes_and_another_seed_another_split(tmp_path: Path, fmt: str):
    source = make_dataset(tmp_path / "in", fmt)
    outputs, splits = {}, {}
    for run, seed in (("a", 3), ("b", 3), ("other", 4)):
        written = split_dataset(source, tmp_path / run, seed=seed)
        outputs[run] = file_bytes(tmp_path / run)
        splits[run] = {name: split for name, (split, _) in by_name(written).items()}
    assert outputs["a"] == outputs["b"]
    assert splits["a"] != splits["other"]
    assert outputs["a"] != outputs["other"]


def test_existing_splits_are_pooled_and_an_image_listed_twice_is_kept_once(tmp_path: Path):
    source = make_dataset(tmp_path / "in", "voc", count=10, splits=("train", "val", "test"))
    main = source / "ImageSets" / "Main"
    (main / "val.txt").write_text((main / "val.txt").read_text() + "img000\n")  # also in train
    written = split_dataset(source, tmp_path / "out", (0.6, 0.4, 0.0))
    assert sorted(by_name(written)) == [f"img{i:03d}.png" for i in range(10)]
    assert set(written.splits) == {"train", "val"}  # a split of ratio 0 is not written
    assert not (tmp_path / "out" / "ImageSets" / "Main" / "test.txt").exists()


def test_link_hard_links_the_images(tmp_path: Path):
    source = make_dataset(tmp_path / "in", "coco", count=6)
    written = split_dataset(source, tmp_path / "out", (0.5, 0.5, 0.0), link=True)
    for split, records in written.splits.items():
        for record in records:
            copy = tmp_path / "out" / "images" / split / record.image_path.name
            assert os.path.samefile(copy, record.image_path)


def test_a_failed_write_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    source = make_dataset(tmp_path / "in", "yolo", count=6)

    def write_then_fail(dataset, out_dir, fmt):
        write_dataset(dataset, out_dir, fmt)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(split_module, "write_dataset", write_then_fail)
    with pytest.raises(OSError):
        split_dataset(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "in-sources"]


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ((0.8, 0.3, 0.1), "ratios must sum to 1, got 0.8 0.3 0.1 (sum 1.2)"),
        ((1.2, -0.1, -0.1), "ratios must be numbers >= 0, got 1.2 -0.1 -0.1"),
        ((float("nan"), 0.5, 0.5), "ratios must be numbers >= 0, got nan 0.5 0.5"),
        ((0.5, 0.5), "expected 3 ratios (train val test), got 2"),
    ],
)
def test_bad_ratios_are_one_line_errors(tmp_path: Path, ratios, message: str):
    source = make_dataset(tmp_path / "in", "yolo", count=2)
    assert error_of(lambda: split_dataset(source, tmp_path / "out", ratios)) == message


def test_bad_input_and_output_are_one_line_errors_naming_the_file(tmp_path: Path):
    source = make_dataset(tmp_path / "in", "yolo", count=6)
    out = tmp_path / "out"
    write_flat_png(out / "kept.png")
    assert error_of(lambda: split_dataset(source, out)) == f"{out}: output folder is not empty"
    assert (out / "kept.png").is_file()
    a_file = out / "kept.png"
    assert error_of(lambda: split_dataset(source, a_file)) == (
        f"{a_file}: output exists and is not a folder"
    )
    missing = tmp_path / "missing"
    assert error_of(lambda: split_dataset(missing, tmp_path / "x")) == (
        f"{missing}: dataset folder not found"
    )
    label = source / "labels" / "train" / "img002.txt"
    label.write_text("0 0.5 0.5 oops 0.1\n")
    assert error_of(lambda: split_dataset(source, tmp_path / "x")) == (
        f"{label}:1: non-numeric value in '0 0.5 0.5 oops 0.1'"
    )
    label.write_text("")
    twin = write_flat_png(source / "images" / "val" / "img000.png")  # the train image's name
    assert error_of(lambda: split_dataset(source, tmp_path / "x")) == (
        f"{twin}: same output name as {source / 'images' / 'train' / 'img000.png'}; rename one"
    )
    assert not (tmp_path / "x").exists()
