"""Box-exact augmentation transforms, worked by hand: boxes are pixel xyxy, and pixels move with
them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from onestage.data.augment import (
    Labelled,
    affine_matrix,
    hsv_jitter,
    mixup,
    mosaic4,
    paste_objects,
    warp_affine,
)
from onestage.data.transforms import LETTERBOX_FILL


def flat(size: int, value: int) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def labelled(image: np.ndarray, *boxes: tuple[float, ...], ids: list[int] | None = None):
    ids = ids if ids is not None else list(range(len(boxes)))
    return Labelled.of(image, np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(ids))


def gradient(size: int) -> np.ndarray:
    """A size x size image whose every pixel differs from its neighbours (so shifts show)."""
    ys, xs = np.mgrid[0:size, 0:size]
    return np.stack([xs * 7 % 256, ys * 11 % 256, (xs + ys) * 3 % 256], -1).astype(np.uint8)


def test_mosaic_places_each_tile_and_its_boxes_at_their_offsets_for_a_fixed_centre() -> None:
    # size 10, centre (7, 12): tiles start at (-3, 2), (7, 2), (-3, 12) and (7, 12)
    tiles = [labelled(flat(10, 10 * (k + 1)), (2, 2, 6, 6), ids=[k]) for k in range(4)]
    tiles[0] = labelled(flat(10, 10), (2, 2, 6, 6), (0, 0, 2, 2), ids=[0, 9])  # 2nd: cut away
    mosaic = mosaic4(tiles, (7, 12))
    assert mosaic.image.shape == (20, 20, 3)
    expected = np.full((20, 20, 3), LETTERBOX_FILL, dtype=np.uint8)
    expected[2:12, 0:7] = 10  # tile 0's columns 3-9 (its left 3 are cut at the canvas edge)
    expected[2:12, 7:17] = 20
    expected[12:20, 0:7] = 30  # tile 2's rows 0-7 (its bottom 2 cut)
    expected[12:20, 7:17] = 40
    assert np.array_equal(mosaic.image, expected)
    np.testing.assert_array_equal(
        mosaic.boxes, [[0, 4, 3, 8], [9, 4, 13, 8], [0, 14, 3, 18], [9, 14, 13, 18]]
    )  # tile 0's box (-1, 4, 3, 8) clipped; its box at (-3, 2, -1, 4) had no area left
    assert mosaic.class_ids.tolist() == [0, 1, 2, 3]
    assert mosaic.full_areas.tolist() == [16, 16, 16, 16]  # areas before clipping


def test_a_mosaic_crop_is_the_canvas_centre() -> None:
    canvas = labelled(gradient(40), (5, 12, 25, 30))
    out = warp_affine(canvas, affine_matrix(40, 20), 20, 1.0)
    assert np.array_equal(out.image, canvas.image[10:30, 10:30])
    np.testing.assert_array_equal(out.boxes, [[0, 2, 15, 20]])  # (-5, 2, 15, 20) clipped


def test_pure_translation_moves_pixels_and_boxes_by_the_same_whole_pixels() -> None:
    sample = labelled(gradient(20), (4, 6, 10, 9))
    matrix = affine_matrix(20, 20, centre=(0.6, 0.3))  # +2 px along x, -4 px along y
    np.testing.assert_allclose(matrix, [[1, 0, 2], [0, 1, -4], [0, 0, 1]])
    out = warp_affine(sample, matrix, 20, 1.0)
    np.testing.assert_allclose(out.boxes, [[6, 2, 12, 5]])
    assert np.array_equal(out.image[0:16, 2:20], sample.image[4:20, 0:18])
    assert (out.image[16:, :] == LETTERBOX_FILL).all() and (out.image[:, :2] == 114).all()


def test_scale_about_the_centre_doubles_box_sides_and_pixels() -> None:
    image = flat(20, 0)
    image[8:12, 8:12] = 200
    out = warp_affine(labelled(image, (8, 8, 12, 12)), affine_matrix(20, 20, scale=2.0), 20, 2.0)
    np.testing.assert_allclose(out.boxes, [[6, 6, 14, 14]])  # 10 +- 2 x 2
    assert (out.image[7:13, 7:13] == 200).all() and (out.image[:5] == 0).all()
    # the edge pixels' centres 6.5 and 13.5 come from 7.75 and 11.25 (pixel-centre coordinates):
    # a quarter of a pixel off the square on both sides, so both blend to 3/4 of 200
    assert out.image[10, 6, 0] == out.image[10, 13, 0] == 150
    assert out.image[6, 10, 0] == out.image[13, 10, 0] == 150
    assert out.full_areas.tolist() == [64.0]  # 16 x 2^2


def test_a_small_rotation_gives_the_box_enclosing_the_turned_corners() -> None:
    # a 10 px square centred on a 20 px image, turned 10 degrees: half side 5 (cos + sin)
    out = warp_affine(labelled(flat(20, 50), (5, 5, 15, 15)), affine_matrix(20, 20, 10.0), 20, 1)
    half = 5 * (math.cos(math.radians(10)) + math.sin(math.radians(10)))
    np.testing.assert_allclose(out.boxes, [[10 - half, 10 - half, 10 + half, 10 + half]])
    # counter-clockwise as seen: the top-left corner (5, 5) moves down and left of where it was
    corner = affine_matrix(20, 20, 10.0) @ [5, 5, 1]
    assert corner[0] < 5 and corner[1] > 5


def test_shear_along_x_slants_the_box() -> None:
    # 45 degrees along x: x' = x + (y - 10); corners (8, 8) -> 6, (12, 12) -> 14
    out = warp_affine(
        labelled(flat(20, 9), (8, 8, 12, 12)), affine_matrix(20, 20, shear=(45, 0)), 20, 1
    )
    np.testing.assert_allclose(out.boxes, [[6, 8, 14, 12]], atol=1e-9)


def test_boxes_left_too_small_or_mostly_outside_are_dropped() -> None:
    sample = labelled(
        flat(20, 9),
        (0, 0, 10, 10),  # shifted 8 left: 2 x 10 px left, 20 % of its area, but not over 2 px
        (0, 10, 18, 20),  # 10 x 10 left, 56 %: kept
        (0, 0, 9.5, 1),  # 1.5 x 1 px: too small
        ids=[0, 1, 2],
    )
    out = warp_affine(sample, affine_matrix(20, 20, centre=(0.1, 0.5)), 20, 1.0)
    assert out.class_ids.tolist() == [1]
    np.testing.assert_allclose(out.boxes, [[0, 10, 10, 20]])
    narrow = labelled(flat(20, 9), (0, 0, 12, 10))  # 4 x 10 px left: 33 % kept
    assert len(warp_affine(narrow, affine_matrix(20, 20, centre=(0.1, 0.5)), 20, 1.0).boxes) == 1
    sliver = labelled(flat(40, 9), (0, 0, 40, 40))  # x 17-20, y 0-20 of 40 x 40: 3.75 %, dropped
    assert len(warp_affine(sliver, affine_matrix(40, 20, centre=(1.85, 0.5)), 20, 1.0).boxes) == 0


def test_hsv_jitter_scales_value_and_saturation_exactly_and_turns_hue() -> None:
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    value = image.max(-1).astype(int)
    assert np.array_equal(hsv_jitter(image, 0.0, 1.0, 1.0), image)
    brighter = hsv_jitter(image, 0.0, 1.0, 1.5).max(-1).astype(int)
    assert np.array_equal(brighter, np.minimum(np.rint(value * 1.5), 255))  # V: the top, rounded
    grey = hsv_jitter(image, 0.0, 0.0, 1.0)
    assert (grey == image.max(-1, keepdims=True)).all()  # no saturation: every channel V
    pixels = np.array([[[200, 100, 150], [90, 60, 30]]], dtype=np.uint8)
    # saturation (top - channel) / top: 0.5 -> 0.75 and 2/3 -> 1 at a gain of 1.5, V kept
    assert hsv_jitter(pixels, 0.0, 1.5, 1.0).tolist() == [[[200, 50, 125], [90, 45, 0]]]
    red = np.array([[[255, 0, 0], [128, 64, 64]]], dtype=np.uint8)
    assert hsv_jitter(red, 1 / 3, 1.0, 1.0).tolist() == [[[0, 255, 0], [64, 128, 64]]]
    assert hsv_jitter(red, -1 / 3, 1.0, 1.0).tolist() == [[[0, 0, 255], [64, 64, 128]]]
    # a small turn moves HSV's hue by about as much (of its 256 levels), V and S within 2 %
    hsv_before = np.asarray(Image.fromarray(image).convert("HSV")).astype(int)
    hsv_after = np.asarray(Image.fromarray(hsv_jitter(image, 0.02, 1, 1)).convert("HSV"))
    turned = (hsv_after.astype(int)[..., 0] - hsv_before[..., 0] + 128) % 256 - 128
    coloured = hsv_before[..., 1] > 80
    assert abs(np.median(turned[coloured]) - 0.02 * 256) <= 1


def test_mixup_blends_pixels_and_keeps_the_objects_of_both() -> None:
    first = labelled(flat(8, 200), (1, 1, 4, 4), ids=[3])
    second = labelled(flat(8, 40), (2, 2, 6, 7), (0, 0, 8, 8), ids=[1, 5])
    mixed = mixup(first, second, 0.25)
    assert (mixed.image == 80).all()  # 0.25 x 200 + 0.75 x 40
    np.testing.assert_array_equal(mixed.boxes, [[1, 1, 4, 4], [2, 2, 6, 7], [0, 0, 8, 8]])
    assert mixed.class_ids.tolist() == [3, 1, 5]


def test_copy_paste_adds_the_object_and_drops_originals_mostly_covered() -> None:
    target = labelled(
        flat(20, 0),
        (10, 10, 13, 13),  # wholly under the patch: dropped
        (12, 12, 18, 18),  # 3 x 3 of 6 x 6 under it (25 %): kept
        ids=[0, 1],
    )
    donor_image = gradient(12)
    donor = labelled(donor_image, (2.5, 3, 6, 7.5), ids=[7])  # whole pixels: x 2-5, y 3-7
    pasted = paste_objects(target, donor, np.array([0]), np.array([[10, 10]]))
    assert np.array_equal(pasted.image[10:15, 10:14], donor_image[3:8, 2:6])
    assert (pasted.image[15:, :] == 0).all() and (pasted.image[:, 14:] == 0).all()
    assert pasted.class_ids.tolist() == [1, 7]
    np.testing.assert_allclose(pasted.boxes, [[12, 12, 18, 18], [10.5, 10, 14, 14.5]])


@pytest.mark.parametrize("covered_columns", [3, 4])
def test_copy_paste_keeps_an_object_half_covered_and_drops_one_covered_more(
    covered_columns: int,
) -> None:
    target = labelled(flat(20, 0), (0, 0, 6, 4))  # 6 columns wide
    donor = labelled(flat(20, 99), (0, 0, covered_columns, 4))
    pasted = paste_objects(target, donor, np.array([0]), np.array([[0, 0]]))
    assert pasted.class_ids.tolist() == ([0, 0] if covered_columns == 3 else [0])
