"""Write synthetic datasets to disk in any supported format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from onestage.data.formats import image_dir, write_dataset
from onestage.data.images import save_image
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.data.synthetic import SyntheticGenerator, split_stream


def synthesize_dataset(
    generator: SyntheticGenerator,
    out_dir: Path,
    fmt: str,
    split_sizes: dict[str, int],
    image_suffix: str = ".png",
    on_image: Callable[[], None] | None = None,
) -> DetectionDataset:
    """Write `split_sizes[split]` images per split from `generator` to `out_dir` as `fmt`.

    Images are saved straight into the format's image folders, then the labels are written.
    Each split draws from its own stream, so a split's images do not depend on other splits.
    """
    config = generator.config
    splits: dict[str, list[ImageRecord]] = {}
    for split, count in split_sizes.items():
        folder = image_dir(out_dir, fmt, split)
        records = []
        for index in range(count):
            sample = generator.sample(index, stream=split_stream(split))
            path = folder / f"{split}_{index:06d}{image_suffix}"
            save_image(sample.image, path)
            records.append(
                ImageRecord(
                    image_path=path,
                    width=config.width,
                    height=config.height,
                    boxes_xyxy=sample.boxes_xyxy,
                    class_ids=sample.class_ids,
                    class_names=generator.class_names,
                )
            )
            if on_image is not None:
                on_image()
        splits[split] = records
    dataset = DetectionDataset(class_names=generator.class_names, splits=splits)
    write_dataset(dataset, out_dir, fmt)
    return dataset
