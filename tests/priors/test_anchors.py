from __future__ import annotations

import math

import numpy as np
import pytest

from onestage.errors import OnestageError
from onestage.priors.anchors import (
    ANCHOR_CONFIGS,
    AnchorLevel,
    anchor_counts_per_level,
    anchors_per_cell,
    cell_anchors,
    generate_anchors,
)

SEED_FEATURE_SIZES = (20, 10, 5, 3, 1)


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1.3e-6, atol=atol)


def test_seed_2x2_example() -> None:
    level = AnchorLevel(sizes=(0.2, 0.272), ratios=(0.5, 1.0, 2.0))
    anchors = cell_anchors(level, 2, 2)
    assert anchors.shape == (2 * 2 * 4, 4)
    expected_first_cell = np.array(
        [
            [0.17929, 0.10858, 0.32071, 0.39142],
            [0.15383, 0.05767, 0.34617, 0.44233],
            [0.15, 0.15, 0.35, 0.35],
            [0.10858, 0.17929, 0.39142, 0.32071],
        ]
    )
    assert_close(anchors[:4], expected_first_cell, atol=1e-5)


def test_cells_are_row_major_with_anchors_minor() -> None:
    level = AnchorLevel(sizes=(0.2,), ratios=(1.0, 2.0))
    anchors = cell_anchors(level, 2, 3).reshape(2, 3, 2, 4)  # (H, W, k, 4), like a head output
    centres = (anchors[..., :2] + anchors[..., 2:]) / 2
    # the second anchor group is cell (row 0, column 1); both anchors of a cell share a centre
    assert_close(centres[0, 1], np.array([[0.5, 0.25], [0.5, 0.25]]))
    assert_close(centres[1, 2, 0], np.array([5 / 6, 0.75]))


def test_seed_level_1_first_cell_by_hand() -> None:
    anchors = cell_anchors(ANCHOR_CONFIGS["seed"][1], 10, 10)
    half_long, half_short = 0.75 * math.sqrt(2) / 2, 0.75 / math.sqrt(2) / 2
    c = 0.05  # centre of cell (0, 0)
    expected = np.array(
        [
            [c - 0.375, c - 0.375, c + 0.375, c + 0.375],  # size 0.75, ratio 1
            [c - 0.25, c - 0.25, c + 0.25, c + 0.25],  # size 0.5, ratio 1
            [c - half_long, c - half_short, c + half_long, c + half_short],  # 0.75, ratio 2
            [c - half_short, c - half_long, c + half_short, c + half_long],  # 0.75, ratio 0.5
        ]
    )
    assert_close(anchors[:4], expected)


def test_seed_config_gives_2140_anchors() -> None:
    assert [anchors_per_cell(level) for level in ANCHOR_CONFIGS["seed"]] == [4] * 5
    assert anchor_counts_per_level("seed", SEED_FEATURE_SIZES) == (1600, 400, 100, 36, 4)
    anchors = generate_anchors("seed", SEED_FEATURE_SIZES)
    assert anchors.shape == (2140, 4)
    assert anchors.dtype == np.float32
    pairs = tuple((n, n) for n in SEED_FEATURE_SIZES)
    assert_close(generate_anchors("seed", pairs), anchors)


def test_levels_are_concatenated_in_order() -> None:
    anchors = generate_anchors("seed", SEED_FEATURE_SIZES)
    levels = ANCHOR_CONFIGS["seed"]
    assert_close(anchors[:1600], cell_anchors(levels[0], 20, 20))
    assert_close(anchors[2100:2136], cell_anchors(levels[3], 3, 3))
    # the 1x1 level: four anchors centred on the image
    assert_close(anchors[-4:], cell_anchors(levels[4], 1, 1))
    centres = (anchors[-4:, :2] + anchors[-4:, 2:]) / 2
    assert_close(centres, np.full((4, 2), 0.5))


def test_seed_intended_differs_from_seed_on_levels_1_to_4_only() -> None:
    seed, intended = ANCHOR_CONFIGS["seed"], ANCHOR_CONFIGS["seed-intended"]
    assert seed[0] == intended[0]
    assert all(a.sizes == (0.75, 0.5) for a in seed[1:])
    for seed_level, intended_level in zip(seed[1:], intended[1:], strict=True):
        assert seed_level.sizes != intended_level.sizes
        assert seed_level.ratios == intended_level.ratios
    counts = anchor_counts_per_level("seed", SEED_FEATURE_SIZES)
    seed_anchors = generate_anchors("seed", SEED_FEATURE_SIZES)
    intended_anchors = generate_anchors("seed-intended", SEED_FEATURE_SIZES)
    assert_close(seed_anchors[: counts[0]], intended_anchors[: counts[0]])
    assert not np.isclose(seed_anchors[counts[0] :], intended_anchors[counts[0] :]).all(1).any()


def test_anchors_are_not_clipped() -> None:
    anchors = generate_anchors("seed", SEED_FEATURE_SIZES)
    assert anchors.min() < 0 and anchors.max() > 1


def test_custom_levels_and_errors() -> None:
    levels = (AnchorLevel((0.5,), (1.0,)),)
    anchors = generate_anchors(levels, ((2, 4),))
    assert anchors.shape == (8, 4) and anchors.dtype == np.float32
    with pytest.raises(OnestageError) as error:
        generate_anchors("nope", SEED_FEATURE_SIZES)
    assert str(error.value) == "unknown anchor config 'nope'; valid names: seed, seed-intended"
    with pytest.raises(OnestageError, match="5 anchor levels"):
        generate_anchors("seed", (20, 10))


NEEDS_BOTH = "an anchor level needs sizes and ratios"
POSITIVE = "anchor sizes and ratios must be positive"


@pytest.mark.parametrize(
    ("sizes", "ratios", "message"),
    [
        ((), (1.0,), NEEDS_BOTH),
        ((0.5,), (), NEEDS_BOTH),
        ((0.5, 0.0), (1.0,), POSITIVE),
        ((0.5,), (1.0, 0.0), POSITIVE),
    ],
)
def test_an_anchor_level_needs_positive_sizes_and_ratios(
    sizes: tuple[float, ...], ratios: tuple[float, ...], message: str
) -> None:
    with pytest.raises(OnestageError) as error:
        AnchorLevel(sizes, ratios)
    assert str(error.value) == f"{message}, got AnchorLevel(sizes={sizes}, ratios={ratios})"


def test_anchors_are_computed_in_float64() -> None:
    # size 0.2, ratio 2 on a 1 x 1 map: w = 0.2 sqrt(2), h = 0.2 / sqrt(2) around (0.5, 0.5),
    # the same float64 operations as below, then rounded once to float32
    level = AnchorLevel((0.2,), (2.0,))
    half_w, half_h = 0.2 * math.sqrt(2) / 2, 0.2 / math.sqrt(2) / 2
    expected = np.array([[0.5 - half_w, 0.5 - half_h, 0.5 + half_w, 0.5 + half_h]])
    np.testing.assert_array_equal(cell_anchors(level, 1, 1), expected.astype(np.float32))
