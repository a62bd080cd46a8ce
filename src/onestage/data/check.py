"""Dataset health check: counts, box-size statistics and every problem found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from onestage.data.formats import detect_format, read_dataset
from onestage.data.images import DEFAULT_MAX_PIXELS
from onestage.data.records import ImageRecord, LabelFix
from onestage.errors import DataError


class SizeSummary(NamedTuple):
    """Minimum, median and maximum of a set of values."""

    minimum: float
    median: float
    maximum: float


@dataclass
class DatasetReport:
    """What `check_dataset` found. Counts and sizes cover the valid images only, as read (boxes
    clipped, degenerate ones dropped). `label_fixes` are warnings; with `strict` they are
    problems instead."""

    root: Path
    format: str
    class_names: tuple[str, ...]
    images_per_split: dict[str, int]
    objects_per_class: dict[str, int]
    images_without_objects: int
    # Measure name -> summary: box width (px), box height (px), sqrt(box area / image area).
    # Empty when the dataset has no boxes.
    box_sizes: dict[str, SizeSummary]
    problems: list[DataError]
    label_fixes: list[LabelFix]

    @property
    def num_images(self) -> int:
        return sum(self.images_per_split.values())

    @property
    def num_objects(self) -> int:
        return sum(self.objects_per_class.values())


def check_dataset(
    root: Path, fmt: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, strict: bool = False
) -> DatasetReport:
    """Read the dataset at `root` skipping bad images, decoding every image, and summarise it.

    `strict` refuses boxes overshooting the image even a little (see `read_dataset`).
    """
    root = Path(root)
    fmt = fmt or detect_format(root)
    dataset, problems = read_dataset(
        root, fmt, skip_invalid=True, strict=strict, verify_images=True, max_pixels=max_pixels
    )
    records = [record for split in dataset.splits.values() for record in split]
    counts = np.zeros(len(dataset.class_names), dtype=np.int64)
    for record in records:
        np.add.at(counts, record.class_ids, 1)
    return DatasetReport(
        root=root,
        format=fmt,
        class_names=dataset.class_names,
        images_per_split={split: len(records) for split, records in dataset.splits.items()},
        objects_per_class=dict(zip(dataset.class_names, counts.tolist(), strict=True)),
        images_without_objects=sum(1 for record in records if record.num_objects == 0),
        box_sizes=_box_sizes(records),
        problems=problems,
        label_fixes=dataset.label_fixes,
    )


def _box_sizes(records: list[ImageRecord]) -> dict[str, SizeSummary]:
    boxes = np.concatenate([np.zeros((0, 4)), *(record.boxes_xyxy for record in records)])
    if len(boxes) == 0:
        return {}
    image_areas = np.concatenate(
        [np.full(record.num_objects, record.width * record.height) for record in records]
    )
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    measures = {
        "box width (px)": widths,
        "box height (px)": heights,
        "sqrt(box area / image area)": np.sqrt(widths * heights / image_areas),
    }
    return {
        name: SizeSummary(float(v.min()), float(np.median(v)), float(v.max()))
        for name, v in measures.items()
    }
