"""Anchor boxes: the seed's multibox prior, one set of boxes per feature-map cell.

All anchors are normalised xyxy boxes (fractions of the image's width and height). A size s is
a fraction of both sides, so a ratio-1 anchor is square on a square image; onestage's models
take square inputs, so the d2l-style width correction for non-square inputs is left out.
Anchors are not clipped to the image (the seed does not clip them).

Order: levels in the given order; within a level, cells row-major (row i, then column j); within
a cell, the k anchors of `cell_anchors`. This is the order of a head output of shape
(B, H, W, k * 4) reshaped to (B, H * W * k, 4), concatenated over levels.
"""

from __future__ import annotations

import math

import numpy as np

from onestage.errors import OnestageError
from onestage.priors.anchor_configs import ANCHOR_CONFIGS, AnchorLevel

# The anchor config an anchor head is built for unless told otherwise.
DEFAULT_ANCHOR_CONFIG = "seed"


def anchors_per_cell(level: AnchorLevel) -> int:
    """Number of anchors in each cell of a level: len(sizes) + len(ratios) - 1."""
    return len(level.sizes) + len(level.ratios) - 1


def check_anchor_head(config: str, per_cell: int, levels: int) -> None:
    """A one-line error unless the named anchor config has `levels` levels of `per_cell` anchors
    per cell each: what an anchor head of that width on that many levels needs."""
    config_levels = resolve_anchor_config(config)
    counts = [anchors_per_cell(level) for level in config_levels]
    if counts != [per_cell] * levels:
        raise OnestageError(
            f"anchor config {config!r} has {len(counts)} levels of {counts} anchors per cell; "
            f"the head has {levels} levels of {per_cell}"
        )


def resolve_anchor_config(config: str | tuple[AnchorLevel, ...]) -> tuple[AnchorLevel, ...]:
    """The levels of a named config (see ANCHOR_CONFIGS), or the given levels unchanged."""
    if not isinstance(config, str):
        return tuple(config)
    if config not in ANCHOR_CONFIGS:
        raise OnestageError(
            f"unknown anchor config {config!r}; valid names: {', '.join(sorted(ANCHOR_CONFIGS))}"
        )
    return ANCHOR_CONFIGS[config]


def cell_anchors(level: AnchorLevel, fmap_h: int, fmap_w: int) -> np.ndarray:
    """Anchors of one fmap_h x fmap_w level -> (fmap_h * fmap_w * k, 4) float32 normalised xyxy.

    Cell (i, j) is centred at ((j + 0.5) / fmap_w, (i + 0.5) / fmap_h); its k anchors have
    w = [s_1..s_m] * sqrt(r_1) ++ s_1 * sqrt(r_2..r_k) and h = [s_1..s_m] / sqrt(r_1) ++
    s_1 / sqrt(r_2..r_k). Computed in float64.
    """
    first_ratio = math.sqrt(level.ratios[0])
    other_ratios = [math.sqrt(r) for r in level.ratios[1:]]
    widths = [s * first_ratio for s in level.sizes] + [level.sizes[0] * r for r in other_ratios]
    heights = [s / first_ratio for s in level.sizes] + [level.sizes[0] / r for r in other_ratios]
    half_sizes = np.array([widths, heights], dtype=np.float64).T / 2  # (k, 2)
    centre_y = (np.arange(fmap_h, dtype=np.float64) + 0.5) / fmap_h
    centre_x = (np.arange(fmap_w, dtype=np.float64) + 0.5) / fmap_w
    grid_y, grid_x = np.meshgrid(centre_y, centre_x, indexing="ij")  # (H, W) each
    centres = np.stack((grid_x, grid_y), axis=-1)[:, :, None, :]  # (H, W, 1, 2)
    boxes = np.concatenate((centres - half_sizes, centres + half_sizes), axis=-1)  # (H, W, k, 4)
    return boxes.reshape(-1, 4).astype(np.float32)  # (H * W * k, 4)


def _check_feature_sizes(
    levels: tuple[AnchorLevel, ...], feature_sizes: tuple[int | tuple[int, int], ...]
) -> list[tuple[int, int]]:
    """Feature sizes as (h, w) pairs (an int n means n x n), one per level."""
    if len(feature_sizes) != len(levels):
        raise OnestageError(
            f"{len(feature_sizes)} feature sizes for {len(levels)} anchor levels: need one each"
        )
    return [(size, size) if isinstance(size, int) else tuple(size) for size in feature_sizes]


def anchor_counts_per_level(
    config: str | tuple[AnchorLevel, ...], feature_sizes: tuple[int | tuple[int, int], ...]
) -> tuple[int, ...]:
    """Number of anchors of each level: h * w * anchors_per_cell, in level order."""
    levels = resolve_anchor_config(config)
    sizes = _check_feature_sizes(levels, feature_sizes)
    return tuple(
        h * w * anchors_per_cell(level) for level, (h, w) in zip(levels, sizes, strict=True)
    )


def generate_anchors(
    config: str | tuple[AnchorLevel, ...], feature_sizes: tuple[int | tuple[int, int], ...]
) -> np.ndarray:
    """All anchors of a config -> (A, 4) float32 normalised xyxy, concatenated over levels.

    `feature_sizes` gives each level's (fmap_h, fmap_w), or n for an n x n map; the seed's are
    (20, 10, 5, 3, 1), which give 2140 anchors.
    """
    levels = resolve_anchor_config(config)
    sizes = _check_feature_sizes(levels, feature_sizes)
    return np.concatenate(
        [cell_anchors(level, h, w) for level, (h, w) in zip(levels, sizes, strict=True)]
    )  # (A, 4)
