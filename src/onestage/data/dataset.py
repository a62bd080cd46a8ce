"""Torch datasets and batch collation for detection."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from onestage.data.images import load_image_rgb
from onestage.data.records import IGNORED_CLASS_ID, PAD_CLASS_ID, ImageRecord
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.data.transforms import FitTransform, fit_image
from onestage.errors import OnestageError

# cache=ram may take at most this share of the memory available when training starts.
RAM_CACHE_SHARE = 0.5


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
    `cache_in_ram` keeps the fitted images in memory (decoded and resized once).
    """

    def __init__(self, records: list[ImageRecord], size: int, letterbox: bool = False) -> None:
        self.records = records
        self.size = size
        self.letterbox = letterbox
        self._cache: list[tuple[np.ndarray, FitTransform]] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fitted, boxes, class_ids = self.fitted(index)
        image = torch.from_numpy(np.ascontiguousarray(fitted.transpose(2, 0, 1)))
        normalised = torch.from_numpy((boxes / self.size).astype(np.float32)).clamp_(0.0, 1.0)
        return image, normalised, torch.from_numpy(class_ids)

    def fitted(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Record `index` fitted to the input: (image (size, size, 3) uint8, boxes (N, 4)
        float64 xyxy in input pixels, class ids (N,) int64 with IGNORED_CLASS_ID)."""
        record = self.records[index]
        if self._cache is not None:
            image, transform = self._cache[index]
        else:
            image, transform = self._fit(record)
        boxes = transform.to_input(record.boxes_xyxy)
        return image, boxes, np.where(record.difficult, IGNORED_CLASS_ID, record.class_ids)

    def ram_needed(self) -> int:
        """Bytes the fitted images take when kept in memory."""
        return len(self.records) * self.size * self.size * 3

    def fits_in_ram(self, budget_bytes: int) -> bool:
        """Whether `cache_in_ram` fits in `budget_bytes`."""
        return self.ram_needed() <= budget_bytes

    def cache_in_ram(self, budget_bytes: int | None = None) -> None:
        """Decode and fit every image now and keep them; refuses (one-line error) when they
        need more than `budget_bytes` (default: `ram_budget()`). Filled before the loader
        starts, so forked workers share it."""
        budget = ram_budget() if budget_bytes is None else budget_bytes
        if not self.fits_in_ram(budget):
            raise OnestageError(
                f"cache=ram: {len(self.records)} images at {self.size} px need "
                f"{self.ram_needed() / 2**30:.2f} GiB, over the budget of {budget / 2**30:.2f} GiB "
                f"({RAM_CACHE_SHARE:.0%} of the memory available); use cache=none"
            )
        self._cache = [self._fit(record) for record in self.records]

    def _fit(self, record: ImageRecord) -> tuple[np.ndarray, FitTransform]:
        return fit_image(load_image_rgb(record.image_path), self.size, self.letterbox)


def ram_budget() -> int:
    """The bytes `cache_in_ram` may take: RAM_CACHE_SHARE of the memory available now."""
    return int(available_memory() * RAM_CACHE_SHARE)


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux: MemAvailable; else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


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
