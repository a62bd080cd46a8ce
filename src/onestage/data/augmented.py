"""The training augmentation pipeline over a dataset folder's fitted images, reproducible per
draw: mosaic, then affine warp, then copy-paste, then mixup, then HSV jitter (horizontal flips
come later, on the batch: `engine.augment`).

Each draw is keyed by (epoch, position, image): the epoch, the draw's position in the epoch's
sequence of draws, and the image index. Its random numbers come from a generator seeded by
(seed, epoch, position), so a run is the same whatever the number of loader workers, and an
image drawn twice in an epoch is augmented twice differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from onestage.data.augment import (
    Labelled,
    affine_matrix,
    clip_boxes,
    hsv_jitter,
    mixup,
    mosaic4,
    paste_objects,
    warp_affine,
)
from onestage.data.dataset import RecordDataset

# MixUp's blend ratio is drawn from Beta(MIXUP_BETA, MIXUP_BETA) (YOLOv5's and Ultralytics' 32).
MIXUP_BETA = 32.0


class SampleKey(NamedTuple):
    """What the loader asks the pipeline for: a draw of the epoch's sequence, and its image."""

    epoch: int
    position: int
    image: int


@dataclass(frozen=True)
class AugmentSettings:
    """The pipeline's knobs, named as Ultralytics names them (see `TrainConfig`)."""

    mosaic: float = 0.0  # probability of a 2 x 2 mosaic
    degrees: float = 0.0  # rotation: uniform in +-degrees
    translate: float = 0.0  # shift: uniform in +-translate x the side
    scale: float = 0.0  # zoom: uniform in 1 +- scale
    shear: float = 0.0  # shear: uniform in +-shear degrees, along x and y
    hsv_h: float = 0.0  # hue shift: uniform in +-hsv_h turns
    hsv_s: float = 0.0  # saturation gain: uniform in 1 +- hsv_s
    hsv_v: float = 0.0  # value gain: uniform in 1 +- hsv_v
    mixup: float = 0.0  # probability of blending in a second augmented image
    copy_paste: float = 0.0  # probability of pasting objects of another image
    close_mosaic: int = 0  # the last epochs without mosaic, mixup and copy-paste
    seed: int = 0

    @property
    def active(self) -> bool:
        """Whether any augmentation is on (else training reads the fitted images as they are)."""
        return any((self.strong, self.affine, self.hsv_h, self.hsv_s, self.hsv_v))

    @property
    def strong(self) -> bool:
        """Whether mosaic, mixup or copy-paste is on (what `close_mosaic` turns off)."""
        return any((self.mosaic, self.mixup, self.copy_paste))

    @property
    def affine(self) -> bool:
        return any((self.degrees, self.translate, self.scale, self.shear))


class AugmentedDataset(Dataset):
    """Augmented items of a RecordDataset, read by SampleKey; items as RecordDataset's
    (image (3, size, size) uint8, boxes (N, 4) float32 xyxy normalised to [0, 1], ids (N,)).

    Strong augmentation (mosaic, mixup, copy-paste) stops for the last `close_mosaic` of
    `epochs` epochs; the affine warp and HSV jitter go on.
    """

    def __init__(self, records: RecordDataset, settings: AugmentSettings, epochs: int) -> None:
        self.records = records
        self.settings = settings
        self.epochs = epochs

    def __len__(self) -> int:
        return len(self.records)

    @property
    def size(self) -> int:
        return self.records.size

    def strong_in(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) may use mosaic, mixup and copy-paste."""
        return self.settings.strong and epoch < self.epochs - self.settings.close_mosaic

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, position, index = key
        sample = self.augmented(index, epoch, self.generator(epoch, position))
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))
        boxes = torch.from_numpy((sample.boxes / self.size).astype(np.float32)).clamp_(0.0, 1.0)
        return image, boxes, torch.from_numpy(sample.class_ids)

    def generator(self, epoch: int, position: int) -> np.random.Generator:
        return np.random.default_rng((self.settings.seed, epoch, position))

    def augmented(self, index: int, epoch: int, rng: np.random.Generator) -> Labelled:
        """Image `index` through the pipeline, every choice drawn from `rng`."""
        settings, strong = self.settings, self.strong_in(epoch)
        sample = self._placed(index, strong, rng)
        if strong and settings.copy_paste and rng.random() < settings.copy_paste:
            sample = self._pasted(sample, rng)
        if strong and settings.mixup and rng.random() < settings.mixup:
            other = self._placed(int(rng.integers(len(self))), strong, rng)
            sample = mixup(sample, other, float(rng.beta(MIXUP_BETA, MIXUP_BETA)))
        if settings.hsv_h or settings.hsv_s or settings.hsv_v:
            hue, saturation, value = rng.uniform(-1, 1, 3) * [
                settings.hsv_h,
                settings.hsv_s,
                settings.hsv_v,
            ]
            image = hsv_jitter(sample.image, hue, 1 + saturation, 1 + value)
            sample = Labelled(image, sample.boxes, sample.class_ids, sample.full_areas)
        return sample

    def _fitted(self, index: int) -> Labelled:
        """The fitted image, its boxes clipped to it."""
        return clip_boxes(Labelled.of(*self.records.fitted(index)), self.size, self.size)

    def _placed(self, index: int, strong: bool, rng: np.random.Generator) -> Labelled:
        """The image, or a mosaic of it and three others, through the affine warp."""
        settings, size = self.settings, self.size
        sample = self._fitted(index)
        mosaic = bool(strong and settings.mosaic and rng.random() < settings.mosaic)
        if mosaic:
            others = rng.integers(len(self), size=3)
            tiles = [sample, *(self._fitted(int(other)) for other in others)]
            centre = rng.integers(size // 2, size + size // 2, size=2, endpoint=True)
            sample = mosaic4(tiles, (int(centre[0]), int(centre[1])))
        if not (mosaic or settings.affine):
            return sample
        angle = rng.uniform(-settings.degrees, settings.degrees)
        zoom = rng.uniform(1 - settings.scale, 1 + settings.scale)
        shear = rng.uniform(-settings.shear, settings.shear, 2)
        centre = rng.uniform(0.5 - settings.translate, 0.5 + settings.translate, 2)
        in_size = sample.image.shape[0]
        matrix = affine_matrix(in_size, size, angle, zoom, (shear[0], shear[1]), tuple(centre))
        return warp_affine(sample, matrix, size, zoom)

    def _pasted(self, sample: Labelled, rng: np.random.Generator) -> Labelled:
        """Objects of another image (1 to all of its eligible ones: not ignored, over 2 pixels
        a side, and fitting whole) pasted at random places."""
        donor = self._fitted(int(rng.integers(len(self))))
        height, width = sample.image.shape[:2]
        cover = np.concatenate((np.floor(donor.boxes[:, :2]), np.ceil(donor.boxes[:, 2:])), 1)
        sides = (cover[:, 2:] - cover[:, :2]).astype(int)
        sizes = donor.boxes[:, 2:] - donor.boxes[:, :2]
        eligible = np.flatnonzero(
            (donor.class_ids >= 0)
            & (sizes > 2).all(axis=1)
            & (sides[:, 0] <= width)
            & (sides[:, 1] <= height)
        )
        if not len(eligible):
            return sample
        count = int(rng.integers(1, len(eligible), endpoint=True))
        chosen = rng.choice(eligible, size=count, replace=False)
        corners = np.stack(
            [rng.integers(0, [width, height] - sides[i], endpoint=True) for i in chosen]
        )
        return paste_objects(sample, donor, chosen, corners)
