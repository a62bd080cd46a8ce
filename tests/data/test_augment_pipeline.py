"""The augmentation pipeline over a dataset folder's images: reproducible per draw, strong
augmentation closed for the last epochs, HSV leaving boxes alone; and the RAM cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import error_of
from onestage.data.augmented import AugmentedDataset, AugmentSettings, SampleKey
from onestage.data.dataset import RecordDataset
from onestage.data.records import ImageRecord

SIZE = 32
FULL = AugmentSettings(
    mosaic=1.0,
    degrees=5.0,
    translate=0.1,
    scale=0.3,
    shear=2.0,
    hsv_h=0.015,
    hsv_s=0.7,
    hsv_v=0.4,
    mixup=0.5,
    copy_paste=0.5,
    seed=3,
)


def noise_records(folder: Path, count: int = 6) -> list[ImageRecord]:
    """`count` noise PNGs of 48 x 40 with two boxes each (one difficult in the first)."""
    rng = np.random.default_rng(0)
    records = []
    for index in range(count):
        path = folder / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        records.append(
            ImageRecord(
                image_path=path,
                width=48,
                height=40,
                boxes_xyxy=np.array([[4, 4, 20, 24], [24 - index, 10, 44, 36]], dtype=float),
                class_ids=np.array([index % 3, 1]),
                class_names=("a", "b", "c"),
                difficult=np.array([index == 0, False]),
            )
        )
    return records


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> RecordDataset:
    return RecordDataset(noise_records(tmp_path_factory.mktemp("noise")), SIZE)


def items_equal(first: tuple, second: tuple) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_the_same_key_gives_the_same_item_and_another_position_another(records) -> None:
    dataset = AugmentedDataset(records, FULL, epochs=10)
    first = dataset[SampleKey(2, 5, 1)]
    assert items_equal(first, AugmentedDataset(records, FULL, epochs=10)[SampleKey(2, 5, 1)])
    assert not items_equal(first, dataset[SampleKey(2, 6, 1)])  # the image drawn again
    assert not items_equal(first, dataset[SampleKey(3, 5, 1)])
    other_seed = AugmentedDataset(records, replace(FULL, seed=4), epochs=10)
    assert not items_equal(first, other_seed[SampleKey(2, 5, 1)])
    image, boxes, class_ids = first
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8
    assert boxes.shape == (len(class_ids), 4) and ((boxes >= 0) & (boxes <= 1)).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_strong_augmentation_closes_for_the_last_close_mosaic_epochs(records) -> None:
    closing = replace(FULL, close_mosaic=2)
    dataset = AugmentedDataset(records, closing, epochs=5)
    assert [dataset.strong_in(epoch) for epoch in range(5)] == [True, True, True, False, False]
    # mosaic only: once closed, the items are the fitted images as RecordDataset gives them
    mosaic_only = AugmentedDataset(records, AugmentSettings(mosaic=1.0, close_mosaic=2), 5)
    assert items_equal(mosaic_only[SampleKey(3, 0, 4)], records[4])
    assert not items_equal(mosaic_only[SampleKey(2, 0, 4)], records[4])
    assert not AugmentSettings(close_mosaic=3).active  # closing nothing turns nothing on


def test_hsv_jitter_leaves_boxes_and_changes_values_within_their_gains(records) -> None:
    dataset = AugmentedDataset(records, AugmentSettings(hsv_v=0.5), epochs=1)
    fitted = records[2]
    for position in range(8):
        image, boxes, class_ids = dataset[SampleKey(0, position, 2)]
        assert torch.equal(boxes, fitted[1]) and torch.equal(class_ids, fitted[2])
        before, after = fitted[0].max(0).values.float(), image.max(0).values.float()
        lit = before > 20
        ratio = after[lit] / before[lit]
        assert ratio.min() >= 0.5 - 0.03 and ratio.max() <= 1.5 + 0.03
        assert not torch.equal(image, fitted[0])


def test_mixup_carries_the_objects_of_both_images(records) -> None:
    settings = AugmentSettings(mixup=1.0, seed=1)
    dataset = AugmentedDataset(records, settings, epochs=1)
    _, boxes, class_ids = dataset[SampleKey(0, 0, 3)]
    rng = dataset.generator(0, 0)
    rng.random()  # the mixup draw
    partner = int(rng.integers(len(records)))
    assert torch.equal(class_ids, torch.cat((records[3][2], records[partner][2])))
    assert torch.equal(boxes, torch.cat((records[3][1], records[partner][1])))


def test_ignored_objects_are_never_pasted(records) -> None:
    dataset = AugmentedDataset(records, AugmentSettings(copy_paste=1.0), epochs=1)
    pasted = [dataset[SampleKey(0, position, 1)][2] for position in range(20)]
    assert any(len(ids) > 2 for ids in pasted)
    assert sum((ids == -2).sum() for ids in pasted) == 0  # image 0's difficult box stays out


def test_settings_say_what_is_on() -> None:
    assert not AugmentSettings().active
    assert AugmentSettings(hsv_h=0.01).active and not AugmentSettings(hsv_h=0.01).strong
    assert AugmentSettings(shear=1.0).affine and AugmentSettings(copy_paste=0.1).strong


def test_the_ram_cache_returns_what_reading_returns_and_refuses_over_budget(records) -> None:
    cached = RecordDataset(records.records, SIZE, letterbox=True)
    uncached = RecordDataset(records.records, SIZE, letterbox=True)
    cached.cache_in_ram()
    for index in range(len(records)):
        assert items_equal(cached[index], uncached[index])
    augmented = [AugmentedDataset(data, FULL, 4) for data in (cached, uncached)]
    assert items_equal(augmented[0][SampleKey(1, 2, 3)], augmented[1][SampleKey(1, 2, 3)])
    needed = len(records) * SIZE * SIZE * 3
    message = error_of(lambda: uncached.cache_in_ram(budget_bytes=needed - 1))
    assert message.startswith("cache=ram: 6 images at 32 px need 0.00 GiB, over the budget")
    assert message.endswith("use cache=none") and "\n" not in message
    uncached.cache_in_ram(budget_bytes=needed)  # exactly the budget fits
