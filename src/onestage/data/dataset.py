"""Torch datasets and batch collation for detection."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator

# Class id used to pad the per-image box lists of a batch to one length.
PAD_CLASS_ID = -1


class SyntheticDataset(Dataset):
    """Fresh synthetic samples per epoch: item `i` of epoch `e` is drawn from seed (seed, e, i).

    So a run is reproducible for a seed, every DataLoader worker (and every distributed rank
    reading its own indices) makes different images, and `set_epoch` gives new images each epoch.
    Items are (image (3, H, W) uint8, boxes (N, 4) float32 xyxy normalised to [0, 1], ids (N,)).
    """

    def __init__(self, config: SyntheticConfig, length: int, epoch: int = 0) -> None:
        self.config = config
        self.length = length
        self.epoch = epoch
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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sample = self.generator.sample(index, stream=self.epoch)
        scale = np.array([self.config.width, self.config.height] * 2, dtype=np.float32)
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))
        boxes = torch.from_numpy(sample.boxes_xyxy.astype(np.float32) / scale)
        return image, boxes, torch.from_numpy(sample.class_ids)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_generator"] = None
        return state


def collate_detections(
    batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack images and pad box lists: (B, 3, H, W), (B, M, 4) boxes, (B, M) ids padded with -1."""
    images = torch.stack([item[0] for item in batch])
    max_objects = max((len(item[2]) for item in batch), default=0)
    boxes = torch.zeros(len(batch), max_objects, 4, dtype=torch.float32)
    class_ids = torch.full((len(batch), max_objects), PAD_CLASS_ID, dtype=torch.int64)
    for row, (_, item_boxes, item_ids) in enumerate(batch):
        boxes[row, : len(item_ids)] = item_boxes
        class_ids[row, : len(item_ids)] = item_ids
    return images, boxes, class_ids
