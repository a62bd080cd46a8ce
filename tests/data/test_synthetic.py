from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from onestage.data import icons as icons_module
from onestage.data.dataset import SyntheticDataset, collate_detections
from onestage.data.icons import SEED_CLASS_NAMES, resolve_emoji
from onestage.data.synthetic import (
    SyntheticConfig,
    SyntheticGenerator,
    parse_count_range,
    placement_overlap,
)
from onestage.errors import OnestageError


def test_same_seed_gives_identical_bytes_and_labels():
    first = SyntheticGenerator(SyntheticConfig(seed=7))
    second = SyntheticGenerator(SyntheticConfig(seed=7))
    for index in range(5):
        a, b = first.sample(index), second.sample(index)
        assert a.image.tobytes() == b.image.tobytes()
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_other_seed_index_or_stream_gives_other_images():
    generator = SyntheticGenerator(SyntheticConfig(seed=7))
    other_seed = SyntheticGenerator(SyntheticConfig(seed=8)).sample(0)
    base = generator.sample(0)
    assert base.image.tobytes() != generator.sample(1).image.tobytes()
    assert base.image.tobytes() != generator.sample(0, stream=1).image.tobytes()
    assert base.image.tobytes() != other_seed.image.tobytes()


def test_default_classes_are_the_seed_animals_in_order():
    generator = SyntheticGenerator(SyntheticConfig())
    assert generator.class_names == SEED_CLASS_NAMES
    assert generator.class_names[:3] == ("octopus", "cat", "cow")
    assert len(generator.class_names) == 15


def test_seed_placement_statistics_over_1000_images():
    generator = SyntheticGenerator(SyntheticConfig(seed=3))
    sizes, class_counts = [], Counter()
    for index in range(1000):
        sample = generator.sample(index)
        assert len(sample.class_ids) == 4
        squares = sample.icon_squares_xyxy
        side = squares[:, 2] - squares[:, 0]
        np.testing.assert_array_equal(side, squares[:, 3] - squares[:, 1])
        sizes.extend(side)
        # top-left uniform in [0, 320 - s): the square never touches the far edges
        assert (squares[:, :2] >= 0).all() and (squares[:, 2:] < 320).all()
        # tight boxes lie inside their squares and inside the image
        boxes = sample.boxes_xyxy
        assert (boxes[:, :2] >= squares[:, :2]).all() and (boxes[:, 2:] <= squares[:, 2:]).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        # the overlap rule holds against every earlier box
        for k in range(1, 4):
            assert placement_overlap(tuple(boxes[k]), list(map(tuple, boxes[:k])), 320, 320) <= 0.01
        class_counts.update(sample.class_ids.tolist())
    sizes = np.asarray(sizes)
    assert sizes.min() >= 50 and sizes.max() <= 159
    assert sizes.min() < 53 and sizes.max() > 156  # the whole [50, 160) range is used
    assert 95 < sizes.mean() < 106  # uniform mean 104.5, slightly less after overlap rejections
    assert set(class_counts) == set(range(15))
    expected = 4000 / 15
    assert all(abs(count - expected) < 0.3 * expected for count in class_counts.values())


def test_placement_overlap_is_iou_times_normalised_area():
    # two 10x10 boxes overlapping by half in a 100x100 image: IoU 1/3, area 0.01
    overlap = placement_overlap((0, 0, 10, 10), [(5, 0, 15, 10), (50, 50, 60, 60)], 100, 100)
    assert overlap == pytest.approx(0.01 / 3)
    assert placement_overlap((0, 0, 10, 10), [], 100, 100) == 0.0


def test_options_change_size_objects_and_classes():
    config = SyntheticConfig(
        width=160, height=160, objects=(1, 6), classes=("giraffe face", "U+1F415"), seed=1
    )
    generator = SyntheticGenerator(config)
    assert generator.class_names == ("giraffe face", "dog")
    counts = set()
    for index in range(40):
        sample = generator.sample(index)
        assert sample.image.shape == (160, 160, 3)
        side = sample.icon_squares_xyxy[:, 2] - sample.icon_squares_xyxy[:, 0]
        assert ((side >= 25) & (side < 80)).all()  # size range scales with the image
        counts.add(len(sample.class_ids))
    assert min(counts) == 1 and max(counts) >= 5


def test_resolve_emoji_accepts_names_code_points_and_characters():
    assert resolve_emoji("cat").code == "1F408"
    assert resolve_emoji("giraffe face").code == "1F992"
    assert resolve_emoji("U+1F992").name == "giraffe face"
    assert resolve_emoji("\N{DOG FACE}").code == "1F436"
    assert resolve_emoji("pet=dog") == resolve_emoji("dog").__class__("pet", "1F415")
    with pytest.raises(OnestageError, match="unknown emoji 'no such thing'"):
        resolve_emoji("no such thing")


def test_icon_and_background_folders(icon_folder: Path, background_folder: Path):
    config = SyntheticConfig(
        width=96, height=96, objects=(3, 3), icons=icon_folder, backgrounds=background_folder
    )
    generator = SyntheticGenerator(config)
    assert generator.class_names == ("bar", "block", "circle")
    sample = generator.sample(0)
    assert sample.image.shape == (96, 96, 3)
    # each tight box is the drawn shape scaled to the square (e.g. "bar" spans full width)
    for box, square, class_id in zip(
        sample.boxes_xyxy, sample.icon_squares_xyxy, sample.class_ids, strict=True
    ):
        side = square[2] - square[0]
        fractions = {0: (0, 0.25, 1, 0.5), 1: (0.25, 0, 0.75, 1), 2: (0.125, 0.125, 0.875, 0.875)}
        expected = square[[0, 1, 0, 1]] + np.asarray(fractions[int(class_id)]) * side
        np.testing.assert_allclose(box, expected)


def test_bad_config_is_a_clear_error():
    with pytest.raises(OnestageError, match="min <= max"):
        SyntheticConfig(objects=(5, 2))
    with pytest.raises(OnestageError, match="does not fit"):
        SyntheticConfig(width=64, height=64, size_range=(0.5, 1.5))
    with pytest.raises(OnestageError, match="expected N or MIN-MAX"):
        parse_count_range("four")


def test_torch_dataset_is_reproducible_and_differs_per_worker_and_epoch():
    config = SyntheticConfig(width=96, height=96, seed=5)
    dataset = SyntheticDataset(config, length=4)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=collate_detections)
    from_workers = [images[0] for images, _, _ in loader]
    direct = [dataset[i][0] for i in range(4)]
    for a, b in zip(from_workers, direct, strict=True):
        assert torch.equal(a, b)
    flattened = {tensor.numpy().tobytes() for tensor in from_workers}
    assert len(flattened) == 4  # every worker made different images
    next_epoch = dataset[4][0]  # index 4 of 4 items: item 0 of epoch 1
    assert not torch.equal(next_epoch, direct[0])
    drawn = dataset.generator.sample(0, stream=1).image
    assert torch.equal(next_epoch, torch.from_numpy(drawn.transpose(2, 0, 1).copy()))


def test_collate_pads_boxes_with_minus_one_ids():
    config = SyntheticConfig(width=64, height=64, objects=(0, 3), size_range=(0.2, 0.4), seed=2)
    dataset = SyntheticDataset(config, length=8)
    images, boxes, class_ids = collate_detections([dataset[i] for i in range(8)])
    counts = [len(dataset[i][2]) for i in range(8)]
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.uint8
    assert boxes.shape == (8, max(counts), 4)
    for row, count in enumerate(counts):
        assert (class_ids[row, :count] >= 0).all() and (class_ids[row, count:] == -1).all()
    valid = class_ids >= 0
    assert ((boxes[valid] >= 0) & (boxes[valid] <= 1)).all()


def test_letterbox_fit_maps_boxes_both_ways():
    from onestage.data.transforms import fit_image

    image = np.zeros((100, 200, 3), dtype=np.uint8)
    fitted, transform = fit_image(image, 320, letterbox=True)
    assert fitted.shape == (320, 320, 3)
    assert (transform.scale_x, transform.scale_y, transform.pad_x, transform.pad_y) == (
        1.6,
        1.6,
        0,
        80,
    )
    assert (fitted[:80] == 114).all() and (fitted[80:240] == 0).all()
    box = np.array([[10.0, 20.0, 110.0, 70.0]])
    np.testing.assert_allclose(transform.to_input(box), [[16, 112, 176, 192]])
    np.testing.assert_allclose(transform.to_original(transform.to_input(box)), box)
    _, transform = fit_image(image, 320, letterbox=False)
    np.testing.assert_allclose(transform.to_input(box), [[16, 64, 176, 224]])


def test_a_mixed_distribution_draws_both_icon_sets_and_both_background_kinds(tmp_path: Path):
    icons, photos = tmp_path / "icons", tmp_path / "photos"
    icons.mkdir()
    photos.mkdir()
    for name in ("cat", "dog"):  # opaque pure-red squares: unlike any OpenMoji pixel
        Image.new("RGBA", (64, 64), (255, 0, 0, 255)).save(icons / f"{name}.png")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(photos / "blue.jpg")  # a flat blue photo
    config = SyntheticConfig(objects=(1, 1), icons=icons, backgrounds=photos, mix=True)
    generator = SyntheticGenerator(config)
    kinds = set()
    for index in range(40):
        sample = generator.sample(index)
        x0, y0, x1, y1 = sample.boxes_xyxy[0].astype(int)
        icon_is_folder = bool((sample.image[(y0 + y1) // 2, (x0 + x1) // 2] == (255, 0, 0)).all())
        corner = (0, 0) if x0 > 0 or y0 > 0 else (319, 319)  # a pixel the icon leaves bare
        blue = np.abs(sample.image[corner].astype(int) - (0, 0, 255)).max() <= 3  # JPEG
        kinds.add((icon_is_folder, bool(blue)))
    assert kinds == {(True, True), (True, False), (False, True), (False, False)}
    unmixed = SyntheticGenerator(SyntheticConfig(objects=(1, 1), icons=icons, backgrounds=photos))
    assert all(unmixed.sample(i).image[0, 0, 2] >= 252 for i in range(10))
    with pytest.raises(OnestageError, match="mixed synthetic distribution needs"):
        SyntheticConfig(icons=icons, mix=True)


def test_render_icons_fills_the_cache_so_that_samples_render_nothing():
    generator = SyntheticGenerator(SyntheticConfig(width=64, height=64, seed=1))
    generator.render_icons()
    low, high = generator.config.size_limits_px
    cache = generator.icons.icon.cache_info
    assert cache().currsize == len(generator.class_names) * (high - low)
    misses = cache().misses
    generator.sample(0)
    assert cache().misses == misses


def test_the_icon_caches_are_bounded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(icons_module, "ICON_CACHE_ENTRIES", 4)
    icons = icons_module.OpenMojiIcons(("cat", "dog"))
    for size in range(10, 16):
        icons.icon(size % 2, size)
    assert icons.icon.cache_info().currsize == 4 and icons.icon.cache_info().misses == 6
