"""Synthetic detection images: icons pasted on backgrounds with the seed system's placement rule.

The seed's rule, for each of N objects: class uniform; square size s uniform in [min, max) px;
top-left (col, row) uniform in [0, W - s) x [0, H - s); box = the icon's tight alpha box scaled by
s and offset; if max IoU(new, placed) * area(new) (boxes normalised to [0, 1]) exceeds the overlap
limit, draw a new size and position for the same class; then paste with the alpha mask.

Sample `i` of stream `j` of a generator with seed `k` depends only on (k, j, i): same seed, same
bytes. Streams keep sets apart: training epochs use streams 0, 1, ...; named splits use a stream
derived from the split's name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onestage.data.backgrounds import FolderBackgrounds, ProceduralBackgrounds
from onestage.data.icons import SEED_CLASS_NAMES, FolderIcons, OpenMojiIcons
from onestage.errors import OnestageError

# The seed pastes icons of 50 to 160 px on 320 x 320 images: sizes as fractions of the short side.
SEED_SIZE_RANGE = (50 / 320, 160 / 320)


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines a synthetic image distribution."""

    width: int = 320
    height: int = 320
    objects: tuple[int, int] = (4, 4)  # inclusive range of objects per image
    size_range: tuple[float, float] = SEED_SIZE_RANGE  # icon side / shorter image side, [min, max)
    max_overlap: float = 0.01  # max IoU * normalised area of a new box against placed ones
    classes: tuple[str, ...] = ()  # emoji specs; empty = seed animals (or the icon folder's)
    icons: Path | None = None  # folder of RGBA PNGs (class = stem) instead of OpenMoji
    backgrounds: Path | None = None  # folder of photos instead of procedural textures
    seed: int = 0
    max_attempts: int = 1000  # placement tries per object before it is left out
    mix: bool = False  # each image: the folder's icons or OpenMoji, its photos or procedural

    def __post_init__(self) -> None:
        if self.mix and (self.icons is None or self.backgrounds is None):
            raise OnestageError(
                "a mixed synthetic distribution needs an icon folder and a background folder "
                "(each image then draws icons and background from them or the built-in ones)"
            )
        low, high = self.objects
        if not 0 <= low <= high:
            raise OnestageError(f"objects per image: need 0 <= min <= max, got {low}-{high}")
        if self.width < 8 or self.height < 8:
            raise OnestageError(f"image size {self.width}x{self.height} is too small (min 8)")
        min_px, max_px = self.size_limits_px
        if not 1 <= min_px < max_px <= min(self.width, self.height):
            raise OnestageError(
                f"icon size range {self.size_range} gives {min_px}-{max_px} px, which does not "
                f"fit a {self.width}x{self.height} image"
            )
        if self.max_overlap < 0:
            raise OnestageError(f"overlap limit must be >= 0, got {self.max_overlap}")

    @property
    def size_limits_px(self) -> tuple[int, int]:
        """Icon side in pixels, [min, max) — 50 to 160 at the seed's 320 x 320."""
        short_side = min(self.width, self.height)
        return round(self.size_range[0] * short_side), round(self.size_range[1] * short_side)


@dataclass
class SyntheticSample:
    """One generated image with its labels (boxes in absolute xyxy pixels)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes_xyxy: np.ndarray  # (N, 4) float64, absolute pixels
    class_ids: np.ndarray  # (N,) int64
    icon_squares_xyxy: np.ndarray  # (N, 4) float64 pixels: the s x s square each icon was pasted in
    class_names: tuple[str, ...] = field(default=())


class SyntheticGenerator:
    """Makes synthetic detection samples; `sample(i)` is reproducible for a given config."""

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        self.config = config or SyntheticConfig()
        self.icons = _icon_source(self.config)
        procedural = ProceduralBackgrounds(seed=self.config.seed)
        self.backgrounds = (
            FolderBackgrounds(self.config.backgrounds) if self.config.backgrounds else procedural
        )
        self.class_names: tuple[str, ...] = tuple(self.icons.class_names)
        # A mixed distribution draws each image's icon set and background kind from these.
        self.icon_sets: list[OpenMojiIcons | FolderIcons] = [self.icons]
        self.background_kinds: list[FolderBackgrounds | ProceduralBackgrounds] = [self.backgrounds]
        if self.config.mix:
            self.icon_sets.append(OpenMojiIcons(self.class_names))
            self.background_kinds.append(procedural)

    def render_icons(self) -> None:
        """Render every icon at every paste size now (the cache fills lazily otherwise: a few
        seconds of the first thousands of samples)."""
        min_px, max_px = self.config.size_limits_px
        for icons in self.icon_sets:
            for class_id in range(len(self.class_names)):
                for size in range(min_px, max_px):
                    icons.icon(class_id, size)

    def sample(self, index: int, stream: int = 0) -> SyntheticSample:
        """Sample `index` of `stream` (depends only on the config, the stream and the index)."""
        return self.sample_with(np.random.default_rng([self.config.seed, stream, index]))

    def sample_with(self, rng: np.random.Generator) -> SyntheticSample:
        """A sample drawn with the given random generator."""
        config = self.config
        width, height = config.width, config.height
        icons, backgrounds = self.icons, self.backgrounds
        if config.mix:  # two extra draws, in mixed distributions only
            icons = self.icon_sets[int(rng.integers(len(self.icon_sets)))]
            backgrounds = self.background_kinds[int(rng.integers(len(self.background_kinds)))]
        canvas = backgrounds.sample(rng, width, height)
        min_px, max_px = config.size_limits_px
        count = int(rng.integers(config.objects[0], config.objects[1] + 1))
        boxes: list[tuple[float, float, float, float]] = []
        class_ids: list[int] = []
        squares: list[tuple[int, int, int, int]] = []
        for _ in range(count):
            class_id = int(rng.integers(len(self.class_names)))
            for _attempt in range(config.max_attempts):
                size = int(rng.integers(min_px, max_px))
                col = int(rng.integers(0, width - size))
                row = int(rng.integers(0, height - size))
                icon, (fx1, fy1, fx2, fy2) = icons.icon(class_id, size)
                box = (col + fx1 * size, row + fy1 * size, col + fx2 * size, row + fy2 * size)
                if placement_overlap(box, boxes, width, height) <= config.max_overlap:
                    canvas.paste(icon, (col, row), icon)
                    boxes.append(box)
                    class_ids.append(class_id)
                    squares.append((col, row, col + size, row + size))
                    break
        return SyntheticSample(
            image=np.asarray(canvas),
            boxes_xyxy=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            class_ids=np.asarray(class_ids, dtype=np.int64),
            icon_squares_xyxy=np.asarray(squares, dtype=np.float64).reshape(-1, 4),
            class_names=self.class_names,
        )


def placement_overlap(
    new_xyxy: tuple[float, float, float, float],
    placed_xyxy: list[tuple[float, float, float, float]],
    width: int,
    height: int,
) -> float:
    """The seed's overlap score: max IoU(new, placed) * area(new), boxes normalised to [0, 1].

    Boxes are absolute xyxy pixels; 0.0 when nothing is placed yet.
    """
    if not placed_xyxy:
        return 0.0
    scale = np.array([width, height, width, height], dtype=np.float64)
    new = np.asarray(new_xyxy, dtype=np.float64) / scale
    placed = np.asarray(placed_xyxy, dtype=np.float64) / scale
    inter_w = np.clip(np.minimum(new[2], placed[:, 2]) - np.maximum(new[0], placed[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(new[3], placed[:, 3]) - np.maximum(new[1], placed[:, 1]), 0, None)
    intersection = inter_w * inter_h
    area_new = (new[2] - new[0]) * (new[3] - new[1])
    area_placed = (placed[:, 2] - placed[:, 0]) * (placed[:, 3] - placed[:, 1])
    iou = intersection / (area_new + area_placed - intersection)
    return float(iou.max() * area_new)


def _icon_source(config: SyntheticConfig) -> OpenMojiIcons | FolderIcons:
    if config.icons is None:
        return OpenMojiIcons(config.classes or SEED_CLASS_NAMES)
    icons = FolderIcons(config.icons)
    if config.classes:
        return icons.ordered_like(tuple(config.classes))
    return icons.in_seed_order()


def split_stream(split: str) -> int:
    """The stream number of a named split: stable across runs, far from training epochs."""
    return zlib.crc32(split.encode("utf-8")) + 1_000_000


def parse_count_range(text: str) -> tuple[int, int]:
    """`"4"` -> (4, 4); `"2-6"` -> (2, 6)."""
    return _parse_range(text, int, "objects")


def parse_fraction_range(text: str) -> tuple[float, float]:
    """`"0.15-0.5"` -> (0.15, 0.5)."""
    return _parse_range(text, float, "size range")


def _parse_range(text: str, kind: type, what: str) -> tuple:
    low, sep, high = text.partition("-")
    try:
        values = (kind(low), kind(high)) if sep else (kind(low), kind(low))
    except ValueError:
        raise OnestageError(f"{what}: expected N or MIN-MAX, got {text!r}") from None
    return values
