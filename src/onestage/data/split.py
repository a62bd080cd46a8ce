"""Split a dataset folder into train/val/test, stratified by class, reproducibly per seed.

Every image of the input (all its splits pooled: existing splits are re-drawn, not kept) goes to
exactly one output split. Stratification is iterative stratification (Sechidis, Tsoumakas and
Vlahavas, 2011, as in scikit-multilearn): each class is taken in turn, rarest first, and each of
its images not yet placed goes to the split that most lacks that class, so every class, and the
images without objects (counted as one more class), is spread over the splits close to the
ratios. A class counts once per image however many of its objects the image holds.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from onestage.data.formats import FORMATS, detect_format, image_dir, read_dataset, write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.errors import DataError, OnestageError
from onestage.fileio import PROCESS_UMASK, WriteError

SPLITS = ("train", "val", "test")
# Common practice (Ultralytics' `autosplit` defaults to 0.9/0.1/0.0, without a test split).
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
_RATIO_SUM_TOLERANCE = 1e-6
_BACKGROUND = -1  # the class of images without objects


def check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    """`ratios` (train, val, test) if each is >= 0 and they sum to 1; else a one-line error."""
    if len(ratios) != len(SPLITS):
        raise OnestageError(f"expected 3 ratios (train val test), got {len(ratios)}")
    values = tuple(float(r) for r in ratios)
    if not all(math.isfinite(r) and r >= 0 for r in values):
        raise OnestageError(f"ratios must be numbers >= 0, got {_fmt(values)}")
    if abs(sum(values) - 1) > _RATIO_SUM_TOLERANCE:
        raise OnestageError(f"ratios must sum to 1, got {_fmt(values)} (sum {sum(values):g})")
    return values


def stratified_assignment(
    class_sets: Sequence[Collection[int]], ratios: Sequence[float], seed: int
) -> list[int]:
    """Index into `ratios` of the split each item goes to (iterative stratification).

    `class_sets[i]` holds the class ids of item i (empty: an image without objects). Each item
    goes to the split lacking most items of the class being placed, then most items overall; a
    split of ratio 0 never lacks any, so it gets nothing. Remaining ties (between classes of equal
    count, between splits) are broken by a generator seeded with `seed`, and items are visited
    in a seeded order: the same seed gives the same assignment.
    """
    rng = np.random.default_rng(seed)
    ratios = np.asarray(ratios, dtype=np.float64)
    classes = [sorted(set(c)) or [_BACKGROUND] for c in class_sets]
    members: dict[int, list[int]] = {}
    for item in rng.permutation(len(classes)).tolist():
        for class_id in classes[item]:
            members.setdefault(class_id, []).append(item)
    wanted = ratios * len(classes)  # images each split still lacks
    wanted_of = {class_id: ratios * len(items) for class_id, items in members.items()}
    unplaced = {class_id: len(items) for class_id, items in members.items()}
    rank = dict(zip(sorted(members), rng.permutation(len(members)).tolist(), strict=True))
    assignment = [-1] * len(classes)
    while unplaced:
        class_id = min(unplaced, key=lambda c: (unplaced[c], rank[c]))
        del unplaced[class_id]
        for item in members[class_id]:
            if assignment[item] >= 0:
                continue
            lack = wanted_of[class_id]
            best = np.flatnonzero(lack == lack.max())
            best = best[wanted[best] == wanted[best].max()]
            split = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
            assignment[item] = split
            wanted[split] -= 1
            for other in classes[item]:
                wanted_of[other][split] -= 1
                if other in unplaced:
                    unplaced[other] -= 1
                    if unplaced[other] == 0:
                        del unplaced[other]
    return assignment


def split_dataset(
    root: Path,
    out_dir: Path,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    fmt: str | None = None,
    link: bool = False,
) -> DetectionDataset:
    """Split the dataset at `root` (format detected) into train/val/test under `out_dir`.

    `fmt` is the output format (default: the input's). Images are copied, or hard-linked with
    `link` (no copy, same file system only). `out_dir` must not exist or be empty; the dataset is
    written to a hidden folder beside it, then renamed, so a failure leaves no partial output.
    Splits that get no image are not written. An image listed in several input splits is kept
    once. Returns the input's records grouped by output split.
    """
    root, out_dir = Path(root), Path(out_dir)
    ratios = check_ratios(ratios)
    _check_out_dir(out_dir)
    fmt = fmt or detect_format(root)
    if fmt not in FORMATS:
        raise OnestageError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    source, _ = read_dataset(root, verify_images=True)
    unique: dict[Path, ImageRecord] = {}  # an image listed in several splits: the first
    for records in source.splits.values():
        for record in records:
            unique.setdefault(record.image_path, record)
    records = list(unique.values())
    _check_unique_names(records, fmt)
    assignment = stratified_assignment([r.class_ids.tolist() for r in records], ratios, seed)
    splits = {
        name: [r for r, s in zip(records, assignment, strict=True) if s == index]
        for index, name in enumerate(SPLITS)
    }
    result = DetectionDataset(source.class_names, {n: rs for n, rs in splits.items() if rs})
    _write(result, out_dir, fmt, link)
    return result


def _check_out_dir(out_dir: Path) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DataError(out_dir, "output exists and is not a folder")
    if any(out_dir.iterdir()):
        raise DataError(out_dir, "output folder is not empty")


def _check_unique_names(records: list[ImageRecord], fmt: str) -> None:
    """Two images whose output files could collide, whatever the split: refused before any is
    written (YOLO labels and VOC annotations are named by the image's stem)."""
    seen: dict[str, Path] = {}
    for record in records:
        path = record.image_path
        key = path.name if fmt == "coco" else path.stem
        other = seen.setdefault(key, path)
        if other != path:
            raise DataError(path, f"same output name as {other}; rename one")


def _write(dataset: DetectionDataset, out_dir: Path, fmt: str, link: bool) -> None:
    """Write `dataset` to a hidden folder beside `out_dir`, then rename it to `out_dir`."""
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=parent))
    except OSError as error:
        raise WriteError(out_dir, error) from error
    try:
        temp.chmod(0o777 & ~PROCESS_UMASK)  # mkdtemp makes 0700; give the usual folder mode
        write_dataset(_linked(dataset, temp, fmt) if link else dataset, temp, fmt)
        try:
            os.replace(temp, out_dir)  # replaces an empty folder
        except OSError as error:
            raise WriteError(out_dir, error) from error
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _linked(dataset: DetectionDataset, out_dir: Path, fmt: str) -> DetectionDataset:
    """`dataset` with each image hard-linked into its place under `out_dir` (where the writer
    then finds it and copies nothing)."""
    splits = {}
    for split, records in dataset.splits.items():
        folder = image_dir(out_dir, fmt, split)
        folder.mkdir(parents=True, exist_ok=True)
        splits[split] = []
        for record in records:
            dest = folder / record.image_path.name
            try:
                os.link(record.image_path, dest)
            except OSError as error:
                if error.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    message = (
                        f"cannot hard-link the image into {out_dir.parent} ({error.strerror}); "
                        "leave out --link to copy"
                    )
                    raise DataError(record.image_path, message) from None
                raise WriteError(dest, error) from error
            splits[split].append(replace(record, image_path=dest))
    return DetectionDataset(dataset.class_names, splits)


def _fmt(ratios: Sequence[float]) -> str:
    return " ".join(f"{r:g}" for r in ratios)
