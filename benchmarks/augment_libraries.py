"""onestage's augmentation beside Albumentations': the time of one strong training sample.

Usage:
  pip install albumentations==2.0.8   # not a onestage dependency: measured, not adopted
  python benchmarks/augment_libraries.py [--images 64] [--repeats 5] [--record]

Both sides take the same 416 px synthetic images (1-8 objects) and make one training sample
from four of them, as the dataset defaults do (mosaic=1.0 scale=0.5 translate=0.1 hsv_h=0.015
hsv_s=0.7 hsv_v=0.4 hflip=0.5): a 2 x 2 mosaic, a random affine warp to 416 px, HSV jitter and a
horizontal flip, boxes carried along (pascal_voc xyxy pixels). onestage's functions come from
onestage.data.augment; Albumentations' are Mosaic, Affine, HueSaturationValue and HorizontalFlip
in one Compose with BboxParams. Both warp and convert colours with OpenCV, here on one thread
as a data-loader worker would run it. Prints the median milliseconds per sample over --repeats
passes and their ratio; --record appends the table to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from bench_common import command_line, report
from onestage.data.augment import (
    Labelled,
    affine_matrix,
    clip_boxes,
    hsv_jitter,
    mosaic4,
    warp_affine,
)
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.engine.device import machine_description

SIZE = 416
SCALE, TRANSLATE, HSV = 0.5, 0.1, (0.015, 0.7, 0.4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    import albumentations
    import cv2

    cv2.setNumThreads(1)
    generator = SyntheticGenerator(
        SyntheticConfig(width=SIZE, height=SIZE, objects=(1, 8), size_range=(0.08, 0.45))
    )
    samples = [generator.sample(index) for index in range(args.images)]
    tiles = [
        clip_boxes(Labelled.of(s.image, s.boxes_xyxy, s.class_ids), SIZE, SIZE) for s in samples
    ]
    ours = onestage_sample(tiles)
    theirs = albumentations_sample(tiles, albumentations, cv2)
    ours_name = "onestage (OpenCV, numpy)"
    rows = {ours_name: ours, f"Albumentations {albumentations.__version__}": theirs}
    medians = {name: median_ms(make, len(tiles), args.repeats) for name, make in rows.items()}
    first = medians[ours_name]
    header = (
        f"\n`{command_line()}`: one strong sample (mosaic of 4, affine scale {SCALE} translate "
        f"{TRANSLATE}, HSV, flip) from {SIZE} px images, median of {args.repeats} passes over "
        f"{args.images} samples; OpenCV on 1 thread. {machine_description()}.\n\n"
    )
    lines = ["| implementation | ms per sample | x onestage's |", "|---|---|---|"]
    lines += [f"| {name} | {ms:.2f} | {ms / first:.2f} |" for name, ms in medians.items()]
    report(header, lines, args.record)


def median_ms(make: Callable[[int, np.random.Generator], Labelled], count: int, repeats: int):
    """Median over `repeats` passes of the milliseconds per sample of `make(index, rng)`."""
    times = []
    for repeat in range(repeats):
        rng = np.random.default_rng(repeat)
        began = time.perf_counter()
        for index in range(count):
            make(index, rng)
        times.append((time.perf_counter() - began) * 1000 / count)
    return statistics.median(times)


def onestage_sample(tiles: list[Labelled]) -> Callable[[int, np.random.Generator], Labelled]:
    """A sample made as onestage's AugmentedDataset makes a strong one."""

    def make(index: int, rng: np.random.Generator) -> Labelled:
        others = rng.integers(len(tiles), size=3)
        centre = rng.integers(SIZE // 2, SIZE + SIZE // 2, size=2, endpoint=True)
        group = [tiles[index], *(tiles[int(other)] for other in others)]
        sample = mosaic4(group, (int(centre[0]), int(centre[1])))
        zoom = rng.uniform(1 - SCALE, 1 + SCALE)
        shift = rng.uniform(0.5 - TRANSLATE, 0.5 + TRANSLATE, 2)
        matrix = affine_matrix(2 * SIZE, SIZE, 0.0, zoom, (0.0, 0.0), (shift[0], shift[1]))
        sample = warp_affine(sample, matrix, SIZE, zoom)
        hue, saturation, value = rng.uniform(-1, 1, 3) * HSV
        image = hsv_jitter(sample.image, hue, 1 + saturation, 1 + value)
        if rng.random() < 0.5:
            image = image[:, ::-1]
            boxes = sample.boxes[:, [2, 1, 0, 3]] * [-1, 1, -1, 1] + [SIZE, 0, SIZE, 0]
            return Labelled(image, boxes, sample.class_ids, sample.full_areas)
        return Labelled(image, sample.boxes, sample.class_ids, sample.full_areas)

    return make


def albumentations_sample(tiles: list[Labelled], albumentations, cv2):
    """The same sample made by one Albumentations Compose."""
    a = albumentations
    pipeline = a.Compose(
        [
            a.Mosaic(
                grid_yx=(2, 2),
                target_size=(SIZE, SIZE),
                cell_shape=(SIZE, SIZE),
                center_range=(0.25, 0.75),
                fill=114,
                p=1.0,
            ),
            a.Affine(
                scale=(1 - SCALE, 1 + SCALE),
                translate_percent=(-TRANSLATE, TRANSLATE),
                border_mode=cv2.BORDER_CONSTANT,
                fill=114,
                p=1.0,
            ),
            a.HueSaturationValue(hue_shift_limit=3, sat_shift_limit=70, val_shift_limit=40, p=1.0),
            a.HorizontalFlip(p=0.5),
        ],
        bbox_params=a.BboxParams(format="pascal_voc", label_fields=["class_ids"]),
        seed=0,
    )

    def make(index: int, rng: np.random.Generator) -> Labelled:
        others = rng.integers(len(tiles), size=3)
        metadata = [
            {"image": tiles[o].image, "bboxes": tiles[o].boxes, "class_ids": tiles[o].class_ids}
            for o in others
        ]
        tile = tiles[index]
        out = pipeline(
            image=tile.image,
            bboxes=tile.boxes,
            class_ids=tile.class_ids,
            mosaic_metadata=metadata,
        )
        boxes = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4)
        class_ids = np.asarray(out["class_ids"], dtype=np.int64)
        return Labelled(out["image"], boxes, class_ids, np.zeros(len(boxes)))

    return make


if __name__ == "__main__":
    main()
