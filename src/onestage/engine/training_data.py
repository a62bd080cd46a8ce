"""What a training run learns from and is validated on: the training set (a dataset folder's
train split, augmented or not, or synthetic images), the loader that feeds it, and the
validation set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from onestage.config import TrainConfig
from onestage.data.augmented import AugmentedDataset, AugmentSettings
from onestage.data.dataset import RecordDataset, SyntheticDataset, collate_detections, ram_budget
from onestage.data.formats import read_dataset
from onestage.data.records import DetectionDataset
from onestage.data.synthetic import (
    SEED_SIZE_RANGE,
    SyntheticConfig,
    parse_count_range,
    parse_fraction_range,
)
from onestage.engine.augment import random_hflip
from onestage.engine.distributed import DistContext
from onestage.engine.evaluator import EvalSet, dataset_eval_set, synthetic_eval_set
from onestage.engine.sampler import EpochSampler
from onestage.engine.train_process import TrainProcess
from onestage.errors import OnestageError

TrainSet = SyntheticDataset | RecordDataset | AugmentedDataset


# The input sizes a size taken from the data may take: Ultralytics' default at most, and at
# least what every built-in architecture accepts (the seed's five levels need 320).
DATA_INPUT_SIZES = (320, 640)
SIZE_MULTIPLE = 32  # the largest stride of the built-in architectures


def read_train_folder(data: str | Path, strict: bool = False) -> DetectionDataset:
    """The dataset folder at `data`, read once; a one-line error when it has no train images."""
    folder, _ = read_dataset(Path(data), strict=strict)
    if not folder.splits.get("train"):
        raise OnestageError(f"{data}: no 'train' split; found {', '.join(folder.splits)}")
    return folder


def train_folder(config: TrainConfig) -> DetectionDataset | None:
    """The dataset folder the config trains on, read (`read_train_folder`); None for synthetic
    images."""
    return read_train_folder(config.data, config.strict_labels) if config.data else None


def input_size_from_data(folder: DetectionDataset) -> int:
    """The input side for a dataset folder's train split: the median of its images' longer sides,
    rounded up to a multiple of SIZE_MULTIPLE, within DATA_INPUT_SIZES."""
    sides = sorted(max(record.width, record.height) for record in folder.splits["train"])
    median = sides[len(sides) // 2]
    rounded = -(-median // SIZE_MULTIPLE) * SIZE_MULTIPLE
    low, high = DATA_INPUT_SIZES
    return min(max(rounded, low), high)


def with_input_size(config: TrainConfig, folder: DetectionDataset | None = None) -> TrainConfig:
    """The config with its input size: its own, or (imgsz none) `input_size_from_data` of
    `folder` (read from `config.data` when not given)."""
    if config.imgsz is not None:
        return config
    folder = folder if folder is not None else train_folder(config)
    return dataclasses.replace(config, imgsz=input_size_from_data(folder))


def training_set(
    config: TrainConfig, folder: DetectionDataset | None = None
) -> tuple[TrainSet, tuple[str, ...], DetectionDataset | None]:
    """The images to train on, their class names, and the dataset folder they come from (None
    for synthetic images); `folder`: `config.data` already read (`read_train_folder`)."""
    augment = augment_settings(config)
    if config.data is None:
        if augment.active or config.cache == "ram":
            raise OnestageError(
                "augmentation keys and cache=ram need a dataset folder (data=DIR); "
                "synthetic images are fresh every step"
            )
        fresh = config.train_images is None
        length = (config.steps or 1) * config.batch if fresh else config.train_images
        dataset = SyntheticDataset(synthetic_config(config), length=length, fresh=fresh)
        return dataset, dataset.class_names, None
    folder = folder if folder is not None else train_folder(config)
    records = RecordDataset(folder.splits["train"], config.imgsz, config.letterbox)
    if config.cache == "ram":
        records.cache_in_ram()
    elif config.cache == "auto":
        budget = ram_budget()  # read once: what fits is then cached, never refused
        if records.fits_in_ram(budget):
            records.cache_in_ram(budget)
    if augment.active:
        return AugmentedDataset(records, augment, config.epochs), folder.class_names, folder
    return records, folder.class_names, folder


def augment_settings(config: TrainConfig) -> AugmentSettings:
    """The augmentation pipeline's knobs from the config (seeded by the run's seed)."""
    return AugmentSettings(
        mosaic=config.mosaic,
        degrees=config.degrees,
        translate=config.translate,
        scale=config.scale,
        shear=config.shear,
        hsv_h=config.hsv_h,
        hsv_s=config.hsv_s,
        hsv_v=config.hsv_v,
        mixup=config.mixup,
        copy_paste=config.copy_paste,
        close_mosaic=config.close_mosaic,
        seed=config.seed,
    )


def synthetic_config(config: TrainConfig) -> SyntheticConfig:
    """The synthetic images the config asks for (size, objects per image, icons, backgrounds)."""
    return SyntheticConfig(
        width=config.imgsz,
        height=config.imgsz,
        objects=parse_count_range(config.synthetic_objects),
        size_range=(
            parse_fraction_range(config.synthetic_sizes)
            if config.synthetic_sizes
            else SEED_SIZE_RANGE
        ),
        seed=config.synthetic_seed,
        icons=Path(config.synthetic_icons) if config.synthetic_icons else None,
        backgrounds=Path(config.synthetic_backgrounds) if config.synthetic_backgrounds else None,
        mix=config.synthetic_mix,
    )


def validation_set(
    config: TrainConfig, class_names: tuple[str, ...], dataset: DetectionDataset | None
) -> EvalSet | None:
    """The validation images: synthetic ones of the training set's kind, or the dataset
    folder's `val_split`; None when validation is off or the folder has no such split."""
    if not config.val_every:
        return None
    if config.data is None:
        synthetic = synthetic_config(config)
        return synthetic_eval_set(
            class_names,
            config.val_images,
            size=config.imgsz,
            objects=synthetic.objects,
            size_range=synthetic.size_range,
            seed=synthetic.seed,
            icons=synthetic.icons,
            backgrounds=synthetic.backgrounds,
            mix=synthetic.mix,
            stream_name="val",
        )
    if config.val_split not in dataset.splits:
        return None
    return dataset_eval_set(Path(config.data), class_names, config.val_split, dataset=dataset)


def epoch_loader(
    config: TrainConfig,
    train_set: TrainSet,
    steps_per_epoch: int,
    process: TrainProcess,
) -> tuple[EpochSampler, DataLoader]:
    """The sampler of this process's share of each epoch's `steps_per_epoch` batches (in
    order for fresh synthetic images, which read the epoch's stream from their indices;
    shuffled for a fixed set) and the loader that collates them."""
    sampler = EpochSampler(
        len(train_set),
        steps_per_epoch * config.batch,
        shuffle=not (isinstance(train_set, SyntheticDataset) and train_set.fresh),
        seed=config.seed,
        context=process.context,
        keys=isinstance(train_set, AugmentedDataset),
    )
    loader = DataLoader(
        train_set,
        batch_size=process.per_rank_batch,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=collate_detections,
        drop_last=True,
        persistent_workers=config.workers > 0,  # their icon caches live on
        pin_memory=process.device.type == "cuda",
    )
    return sampler, loader


def preview_batch(
    config: TrainConfig, count: int
) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor, torch.Tensor]:
    """The class names and the first `count` draws of epoch 0 as a training step receives
    them (augmented, collated and flipped): images (B, 3, S, S) uint8, boxes (B, M, 4)
    normalised xyxy, class ids (B, M) padded with PAD_CLASS_ID; at the config's input size, or
    the data's (imgsz none)."""
    folder = train_folder(config)
    config = with_input_size(config, folder)
    train_set, class_names, _ = training_set(config, folder)
    sampler = EpochSampler(
        len(train_set),
        count,
        shuffle=not (isinstance(train_set, SyntheticDataset) and train_set.fresh),
        seed=config.seed,
        context=DistContext(),
        keys=isinstance(train_set, AugmentedDataset),
    )
    images, boxes, class_ids = collate_detections([train_set[key] for key in sampler])
    if config.hflip > 0:
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            images, boxes = random_hflip(images, boxes, config.hflip)
    return class_names, images, boxes, class_ids
