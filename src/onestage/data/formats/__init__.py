"""Read and write detection datasets in YOLO, Pascal VOC and COCO layouts."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from onestage.data.formats import coco, voc, yolo
from onestage.data.formats._common import Problems
from onestage.data.images import DEFAULT_MAX_PIXELS
from onestage.data.records import DetectionDataset, label_fixes_summary
from onestage.errors import DataError

FORMATS = ("yolo", "voc", "coco")
_log = logging.getLogger(__name__)
_MODULES = {"yolo": yolo, "voc": voc, "coco": coco}
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def detect_format(root: Path) -> str:
    """Format of the dataset at `root`: "yolo" (data.yaml), "voc" (Annotations/) or "coco"."""
    root = Path(root)
    if not root.exists():
        raise DataError(root, "dataset folder not found")
    if yolo.find_data_yaml(root) is not None:
        return "yolo"
    # COCO before VOC: on case-insensitive file systems annotations/ and Annotations/ coincide.
    if coco.annotation_files(root):
        return "coco"
    if (root / "Annotations").is_dir():
        return "voc"
    raise DataError(
        root,
        "cannot tell the dataset format: expected data.yaml (YOLO), Annotations/ (VOC) "
        "or annotations/*.json (COCO)",
    )


def read_dataset(
    root: Path,
    fmt: str | None = None,
    *,
    skip_invalid: bool = False,
    strict: bool = False,
    verify_images: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[DetectionDataset, list[DataError]]:
    """Read the dataset at `root` (format detected when `fmt` is None).

    The first problem raises. With `skip_invalid`, each problem is returned in the list and the
    image it concerns is left out. A box overshooting an image edge by at most 2 % of the side
    (`records.CLIP_TOLERANCE`) is clipped, and dropped when that leaves no area: the fixes are in
    `dataset.label_fixes` and summed up in one logged warning. `strict` refuses such boxes as
    lying outside the image. `verify_images` decodes every image fully (catches truncated
    files); otherwise only headers are read. A dataset without any usable image is an error.
    """
    root = Path(root)
    fmt = detect_format(root) if fmt is None else _checked_format(fmt, root)
    problems = Problems(skip_invalid, strict)
    dataset = _MODULES[fmt].read(root, problems, verify_images=verify_images, max_pixels=max_pixels)
    if dataset.num_images == 0:
        if problems.errors:
            raise DataError(
                root,
                f"dataset has no valid images ({len(problems.errors)} problems, the first: "
                f"{problems.errors[0]})",
            )
        raise DataError(root, "dataset has no images")
    dataset.label_fixes = problems.fixes
    if problems.fixes:
        _log.warning(
            "%s: %s (onestage data check lists them; --strict refuses them)",
            root,
            label_fixes_summary(problems.fixes),
        )
    return dataset, problems.errors


def write_dataset(dataset: DetectionDataset, out_dir: Path, fmt: str) -> None:
    """Write `dataset` under `out_dir` in format `fmt`, copying images not already in place.

    Label and annotation files are written atomically; existing files are replaced.
    """
    out_dir = Path(out_dir)
    fmt = _checked_format(fmt, out_dir)
    for split in dataset.splits:
        if not _SPLIT_NAME.fullmatch(split):
            raise DataError(out_dir, f"split name {split!r} is not a plain file name")
    _MODULES[fmt].write(dataset, out_dir)


def image_dir(out_dir: Path, fmt: str, split: str) -> Path:
    """Folder where `write_dataset(..., out_dir, fmt)` puts the images of `split`."""
    return _MODULES[_checked_format(fmt, out_dir)].image_dir(Path(out_dir), split)


def _checked_format(fmt: str, path: Path) -> str:
    if fmt not in FORMATS:
        raise DataError(
            path, f"unknown dataset format {fmt!r}: expected one of {', '.join(FORMATS)}"
        )
    return fmt
