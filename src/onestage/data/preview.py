"""Grids of images with their ground-truth boxes drawn, from a dataset folder or the generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onestage.data.formats import read_dataset
from onestage.data.images import load_image_rgb
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator, split_stream
from onestage.drawing import draw_boxes, image_grid
from onestage.errors import OnestageError


def dataset_grid(root: Path, count: int = 16, split: str | None = None) -> np.ndarray:
    """(H, W, 3) grid of the first `count` images of `split` (default: the first split)."""
    dataset, _ = read_dataset(root)
    split = split or next(iter(dataset.splits))
    if split not in dataset.splits:
        raise OnestageError(
            f"{root}: no split {split!r}; the dataset has {', '.join(dataset.splits)}"
        )
    records = dataset.splits[split][:count]
    tiles = [
        draw_boxes(
            load_image_rgb(record.image_path),
            record.boxes_xyxy,
            record.class_ids,
            dataset.class_names,
        )
        for record in records
    ]
    return np.asarray(image_grid(tiles))


def synthetic_grid(config: SyntheticConfig, count: int = 16) -> np.ndarray:
    """(H, W, 3) grid of `count` generated samples with their boxes."""
    generator = SyntheticGenerator(config)
    samples = [generator.sample(i, stream=split_stream("preview")) for i in range(count)]
    tiles = [
        draw_boxes(sample.image, sample.boxes_xyxy, sample.class_ids, generator.class_names)
        for sample in samples
    ]
    return np.asarray(image_grid(tiles))


def batch_grid(
    images: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, class_names: tuple[str, ...]
) -> np.ndarray:
    """(H, W, 3) grid of a collated batch: images (B, 3, S, S) uint8, boxes (B, M, 4)
    normalised xyxy, class ids (B, M) (padding, below 0, not drawn; ignored objects neither)."""
    tiles = []
    for image, item_boxes, item_ids in zip(images, boxes, class_ids, strict=True):
        size = np.array([image.shape[2], image.shape[1]] * 2)
        shown = item_ids >= 0
        tiles.append(
            draw_boxes(
                image.transpose(1, 2, 0), item_boxes[shown] * size, item_ids[shown], class_names
            )
        )
    return np.asarray(image_grid(tiles))
