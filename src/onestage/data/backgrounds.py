"""Background sources for the synthetic generator: procedural textures or a folder of photos.

Both answer `sample(rng, width, height)` with an RGB Pillow image of that size.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from onestage.data.images import IMAGE_SUFFIXES, load_image_rgb
from onestage.errors import DataError

# Hue ranges (0-1) of natural scenes: foliage, soil and bark, sky and water, sand, rock.
NATURAL_HUES = ((0.18, 0.40), (0.05, 0.12), (0.52, 0.65), (0.10, 0.16), (0.0, 1.0))


class ProceduralBackgrounds:
    """A pool of natural-looking textures made from a seed; samples are random crops and flips.

    Each texture mixes fractal value noise coloured by a natural palette, a soft gradient,
    random clutter (ellipses, strokes, polygons) and per-pixel colour noise. The pool is made
    once per process, seed and output size (every generator shares it), so a sample costs a crop
    and a flip.
    """

    def __init__(self, seed: int = 0, pool_size: int = 48) -> None:
        self.seed = seed
        self.pool_size = pool_size

    def sample(self, rng: np.random.Generator, width: int, height: int) -> Image.Image:
        pool = texture_pool(self.seed, self.pool_size, width, height)
        texture = pool[int(rng.integers(len(pool)))]
        top = int(rng.integers(texture.shape[0] - height + 1))
        left = int(rng.integers(texture.shape[1] - width + 1))
        crop = texture[top : top + height, left : left + width]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1]
        return Image.fromarray(np.ascontiguousarray(crop))


@lru_cache(maxsize=4)
def texture_pool(seed: int, pool_size: int, width: int, height: int) -> tuple[np.ndarray, ...]:
    """`pool_size` read-only textures 1.25 times the output size, texture i from (seed, i)."""
    texture_w, texture_h = int(width * 1.25), int(height * 1.25)
    pool = tuple(
        procedural_texture(np.random.default_rng([seed, i]), texture_w, texture_h)
        for i in range(pool_size)
    )
    for texture in pool:
        texture.flags.writeable = False
    return pool


def procedural_texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """One natural-looking (H, W, 3) uint8 texture."""
    palette = _natural_palette(rng, count=int(rng.integers(2, 5)))
    field = _fractal_noise(rng, width, height, octaves=int(rng.integers(3, 6)))
    positions = np.linspace(0.0, 1.0, len(palette))
    image = np.stack(
        [np.interp(field, positions, palette[:, channel]) for channel in range(3)], axis=-1
    )
    if rng.random() < 0.6:
        image = _blend_gradient(rng, image)
    picture = Image.fromarray(image.clip(0, 255).astype(np.uint8))
    picture = _draw_clutter(rng, picture, palette)
    if rng.random() < 0.4:
        picture = picture.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
    noisy = np.asarray(picture, dtype=np.float32)
    noisy += rng.normal(0.0, rng.uniform(2.0, 12.0), noisy.shape).astype(np.float32)
    return noisy.clip(0, 255).astype(np.uint8)


def _natural_palette(rng: np.random.Generator, count: int) -> np.ndarray:
    low, high = NATURAL_HUES[int(rng.integers(len(NATURAL_HUES)))]
    colours = []
    for _ in range(count):
        hue = rng.uniform(low, high)
        saturation = rng.uniform(0.1, 0.7)
        value = rng.uniform(0.2, 0.95)
        colours.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return np.asarray(colours) * 255.0


def _fractal_noise(rng: np.random.Generator, width: int, height: int, octaves: int) -> np.ndarray:
    """Sum of bilinearly upsampled random grids, normalised to [0, 1]."""
    total = np.zeros((height, width), dtype=np.float32)
    amplitude, cells = 1.0, int(rng.integers(2, 5))
    for _ in range(octaves):
        grid = rng.random((cells, cells), dtype=np.float32)
        upsampled = Image.fromarray(grid, mode="F").resize((width, height), Image.BILINEAR)
        total += amplitude * np.asarray(upsampled)
        amplitude *= float(rng.uniform(0.4, 0.65))
        cells *= 2
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def _blend_gradient(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    height, width, _ = image.shape
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = np.cos(angle) * xs / width + np.sin(angle) * ys / height
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    colour = _natural_palette(rng, 1)[0]
    strength = rng.uniform(0.2, 0.6)
    weight = (strength * ramp)[..., None]
    return image * (1 - weight) + colour * weight


def _draw_clutter(
    rng: np.random.Generator, picture: Image.Image, palette: np.ndarray
) -> Image.Image:
    width, height = picture.size
    layer = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(0, 40))):
        base = palette[int(rng.integers(len(palette)))]
        colour = tuple(int(c) for c in np.clip(base + rng.normal(0, 30, 3), 0, 255))
        fill = (*colour, int(rng.integers(40, 200)))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.01, 0.25) * min(width, height)
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x, y, x + size, y + size * rng.uniform(0.3, 1.5)), fill=fill)
        elif kind == 1:
            end = (x + rng.normal(0, size), y + rng.normal(0, size))
            draw.line((x, y, *end), fill=fill, width=int(rng.integers(1, 6)))
        else:
            points = [(x + rng.normal(0, size), y + rng.normal(0, size)) for _ in range(3)]
            draw.polygon(points, fill=fill)
    return Image.alpha_composite(picture.convert("RGBA"), layer).convert("RGB")


class FolderBackgrounds:
    """Photos from a folder: each sample is a random crop with the output's aspect ratio, as
    large as the photo allows, resized to the output size. A photo already of the output size is
    used whole (the seed's behaviour)."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        paths = (
            sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        if not paths:
            raise DataError(folder, "background folder has no images")
        self.paths = paths
        self._photos = [load_image_rgb(path) for path in paths]
        self._covering = lru_cache(maxsize=4)(self._resize_to_cover)

    def sample(self, rng: np.random.Generator, width: int, height: int) -> Image.Image:
        photos = self._covering(width, height)
        photo = photos[int(rng.integers(len(photos)))]
        top = int(rng.integers(photo.shape[0] - height + 1))
        left = int(rng.integers(photo.shape[1] - width + 1))
        return Image.fromarray(np.ascontiguousarray(photo[top : top + height, left : left + width]))

    def _resize_to_cover(self, width: int, height: int) -> list[np.ndarray]:
        covering = []
        for photo in self._photos:
            photo_h, photo_w, _ = photo.shape
            scale = max(width / photo_w, height / photo_h)
            size = (max(width, round(photo_w * scale)), max(height, round(photo_h * scale)))
            if size == (photo_w, photo_h):
                covering.append(photo)
            else:
                covering.append(np.asarray(Image.fromarray(photo).resize(size, Image.LANCZOS)))
        return covering
