"""Boxes and labels drawn on images, and image grids (Pillow)."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A distinct, stable colour per class (golden-ratio hue steps)."""
    hue = (class_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_boxes(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    scores: Sequence[float] | None = None,
) -> Image.Image:
    """Draw absolute-pixel xyxy boxes with "name" or "name score" labels on an RGB image."""
    picture = Image.fromarray(np.asarray(image)).convert("RGB")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    line_width = max(1, round(min(picture.size) / 160))
    for index, (box, class_id) in enumerate(zip(np.asarray(boxes_xyxy), class_ids, strict=True)):
        colour = class_colour(int(class_id))
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line_width)
        label = class_names[int(class_id)]
        if scores is not None:
            label += f" {float(scores[index]):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = right - left, bottom - top + 3
        label_y = y1 - text_h if y1 >= text_h else y1
        draw.rectangle((x1, label_y, x1 + text_w + 4, label_y + text_h), fill=colour)
        draw.text((x1 + 2, label_y), label, fill=(0, 0, 0), font=font)
    return picture


def image_grid(images: Sequence[Image.Image], columns: int | None = None) -> Image.Image:
    """Tile images (resized to the first one's size) into a grid with thin white gutters."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    gutter = 4
    grid = Image.new(
        "RGB", (columns * (width + gutter) - gutter, rows * (height + gutter) - gutter), "white"
    )
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        tile = image if image.size == (width, height) else image.resize((width, height))
        grid.paste(tile, (column * (width + gutter), row * (height + gutter)))
    return grid
