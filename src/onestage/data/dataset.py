"""Torch datasets and batch collation for detection."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from onestage.data.images import load_image_rgb
from onestage.data.records import IGNORED_CLASS_ID, PAD_CLASS_ID, ImageRecord
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.data.transforms import fit_image


class SyntheticDataset(Dataset):
    """Fresh synthetic samples per epoch: index `e * length + i` is item `i` of epoch `e`, drawn
    from seed (seed, e, i).

    So a run is reproducible for a seed, every DataLoader worker (and every distributed rank
    reading its own indices) makes different images, and each epoch's indices give new images
    (the epoch travels in the index, so persistent workers need not be told it). Items are
    (image (3, H, W) uint8, boxes (N, 4) float32 xyxy normalised to [0, 1], ids (N,)).
    """

    def __init__(self, config: SyntheticConfig, length: int, fresh: bool = True) -> None:
        self.config = config
        self.length = length
        self.fresh = fresh  # False: the same `length` images every epoch (a fixed set)
        self._generator: SyntheticGenerator | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.generator.class_names

    @property
    def generator(self) -> SyntheticGenerator:
        """Made lazily, so each worker process builds (and caches) its own."""
        if self._generator is None:
            self._generator = SyntheticGenerator(self.config)
        return self._generator

    def __len__(self) -> int:
        """Items per epoch."""
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, item = divmod(index, self.length)
        sample = self.generator.sample(item, stream=epoch if self.fresh else 0)
        scale = np.array([self.config.width, self.config.height] * 2, dtype=np.float32)
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))
        boxes = torch.from_numpy(sample.boxes_xyxy.astype(np.float32) / scale)
        return image, boxes, torch.from_numpy(sample.class_ids)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_generator"] = None
        return state


class RecordDataset(Dataset):
    """Images and labels from dataset records, fitted to a square input of `size` pixels.

    Items are (image (3, size, size) uint8, boxes (N, 4) float32 xyxy normalised to the input,
    class ids (N,) int64). "difficult" objects (VOC difficult, COCO crowd) get the class id
    IGNORED_CLASS_ID (-2): training neither rewards nor punishes detections of them.
    """

    def __init__(self, records: list[ImageRecord], size: int, letterbox: bool = False) -> None:
        self.records = records
        self.size = size
        self.letterbox = letterbox

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        record = self.records[index]
        fitted, transform = fit_image(load_image_rgb(record.image_path), self.size, self.letterbox)
        boxes = transform.to_input(record.boxes_xyxy) / self.size
        image = torch.from_numpy(np.ascontiguousarray(fitted.transpose(2, 0, 1)))
        return (
            image,
            torch.from_numpy(boxes.astype(np.float32)).clamp_(0.0, 1.0),
            torch.from_numpy(np.where(record.difficult, IGNORED_CLASS_ID, record.class_ids)),
        )


def collate_detections(
    batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack images and pad box lists: (B, 3, H, W), (B, M, 4) boxes, (B, M) ids padded with
    PAD_CLASS_ID (-1)."""
    images = torch.stack([item[0] for item in batch])
    max_objects = max((len(item[2]) for item in batch), default=0)
    boxes = torch.zeros(len(batch), max_objects, 4, dtype=torch.float32)
    class_ids = torch.full((len(batch), max_objects), PAD_CLASS_ID, dtype=torch.int64)
    for row, (_, item_boxes, item_ids) in enumerate(batch):
        boxes[row, : len(item_ids)] = item_boxes
        class_ids[row, : len(item_ids)] = item_ids
    return images, boxes, class_ids
