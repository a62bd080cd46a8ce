"""YOLO (Ultralytics) layout: data.yaml, images/<split>/, labels/<split>/<stem>.txt.

Each label line is ``class cx cy w h``, normalised to [0, 1]. YOLO has no `difficult` flag: the
writer drops it and the reader sets it to False.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from onestage.data.formats._common import (
    Problems,
    claim,
    clipped_boxes_xyxy,
    image_size,
    place_image,
)
from onestage.data.images import IMAGE_SUFFIXES
from onestage.data.paths import is_dir, is_file
from onestage.data.records import Box, DetectionDataset, ImageRecord
from onestage.errors import DataError
from onestage.fileio import atomic_write_text
from onestage.limits import read_text_within
from onestage.parsing import MalformedText, parse_yaml

DATA_YAML = "data.yaml"
# data.yaml keys that never name a split.
_NOT_SPLITS = frozenset({"path", "names", "nc", "download"})


def find_data_yaml(root: Path) -> Path | None:
    """The dataset's YAML: `root` if a YAML file, root/data.yaml, or a root/*.yaml with `names`."""
    if root.is_file():
        return root if root.suffix in (".yaml", ".yml") else None
    if (root / DATA_YAML).is_file():
        return root / DATA_YAML
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        try:
            content = parse_yaml(read_text_within(path))
        except (OSError, UnicodeDecodeError, MalformedText, DataError):
            continue
        if isinstance(content, dict) and "names" in content:
            return path
    return None


def image_dir(out_dir: Path, split: str) -> Path:
    """Folder the writer puts the images of `split` in."""
    return out_dir / "images" / split


def label_path(image_path: Path) -> Path:
    """Ultralytics rule: the last `images` folder of the path becomes `labels`, suffix `.txt`."""
    parts = list(image_path.parts)
    folders = parts[:-1]
    if "images" in folders:
        parts[len(folders) - 1 - folders[::-1].index("images")] = "labels"
    return Path(*parts).with_suffix(".txt")


def read(
    root: Path, problems: Problems, *, verify_images: bool, max_pixels: int
) -> DetectionDataset:
    """Read a YOLO dataset; bad images go to `problems`."""
    yaml_path = find_data_yaml(root)
    if yaml_path is None:
        raise DataError(root, "no data.yaml (or other YAML file with `names`) found")
    config = _load_yaml(yaml_path)
    class_names = _class_names(config, yaml_path)
    base_value = config.get("path") or "."
    if not isinstance(base_value, str):
        raise DataError(yaml_path, "expected a folder name", field="path")
    base = yaml_path.parent / base_value
    if not is_dir(base):  # Ultralytics resolves `path` elsewhere (its datasets folder)
        base = yaml_path.parent
    splits: dict[str, list[ImageRecord]] = {}
    for key, value in config.items():
        sources = value if isinstance(value, list) else [value]
        if key in _NOT_SPLITS or not value or not all(isinstance(s, str) for s in sources):
            continue
        try:
            image_paths = [
                p for source in sources for p in _list_images(base, source, yaml_path, key)
            ]
        except DataError as error:
            problems.add(error)
            continue
        records = (
            _read_image(path, class_names, problems, verify_images, max_pixels)
            for path in image_paths
        )
        splits[str(key)] = [record for record in records if record is not None]
    return DetectionDataset(class_names, splits)


def write(dataset: DetectionDataset, out_dir: Path) -> None:
    """Write images, label files and data.yaml (written last) under `out_dir`."""
    for split in dataset.splits:
        if split in _NOT_SPLITS:
            raise DataError(out_dir, f"split name {split!r} is reserved in data.yaml")
    claimed: dict[Path, Path] = {}
    plan = []
    for split, records in dataset.splits.items():
        for record in records:
            dest = image_dir(out_dir, split) / record.image_path.name
            label = label_path(dest)
            claim(claimed, label, record.image_path)
            plan.append((record, dest, label))
    for split in dataset.splits:
        image_dir(out_dir, split).mkdir(parents=True, exist_ok=True)
    for record, dest, label in plan:
        place_image(record.image_path, dest)
        atomic_write_text(label, _label_text(record))
    config: dict[str, Any] = {"path": "."}
    config.update({split: f"images/{split}" for split in dataset.splits})
    config["names"] = dict(enumerate(dataset.class_names))
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    atomic_write_text(out_dir / DATA_YAML, text)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = read_text_within(path)
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read the file ({error})") from None
    try:
        config = parse_yaml(text)
    except MalformedText as error:
        raise DataError(path, f"malformed YAML: {error.problem}", line=error.line) from None
    if not isinstance(config, dict):
        raise DataError(path, "expected a mapping with `names` and one folder per split")
    return config


def _class_names(config: dict[str, Any], path: Path) -> tuple[str, ...]:
    names = config.get("names")
    if isinstance(names, dict):
        if set(names) != set(range(len(names))):
            raise DataError(path, "class ids must be 0, 1, ..., n-1", field="names")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list):
        raise DataError(path, "expected a list or an {id: name} mapping", field="names")
    if not all(isinstance(name, str | int | float) and str(name) for name in names):
        raise DataError(path, "class names must be non-empty strings", field="names")
    names = [str(name) for name in names]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(path, f"duplicate class names {duplicates}", field="names")
    if "nc" in config and config["nc"] != len(names):
        raise DataError(
            path, f"nc is {config['nc']} but names has {len(names)} classes", field="nc"
        )
    return tuple(names)


def _list_images(base: Path, source: str, yaml_path: Path, key: str) -> list[Path]:
    path = base / source
    if path.suffix == ".txt" and is_file(path):
        try:
            lines = read_text_within(path).splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(path, f"cannot read the file ({error})") from None
        return [path.parent / line.strip() for line in lines if line.strip()]
    if is_dir(path):
        found = (p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return sorted(found)
    raise DataError(yaml_path, f"split folder or image list {path} not found", field=key)


def _read_image(
    path: Path,
    class_names: tuple[str, ...],
    problems: Problems,
    verify_images: bool,
    max_pixels: int,
) -> ImageRecord | None:
    try:
        width, height = image_size(path, verify=verify_images, max_pixels=max_pixels)
    except DataError as error:
        problems.add(error)
        return None
    label = label_path(path)
    try:
        text = read_text_within(label) if label.is_file() else ""
    except (OSError, UnicodeDecodeError) as error:
        problems.add(DataError(label, f"cannot read the file ({error})"))
        return None
    except DataError as error:
        problems.add(error)
        return None
    boxes, class_ids, fixes = [], [], []
    problems_before = len(problems)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            class_id, box = _parse_line(line, label, number, len(class_names), width, height)
            box, fix = problems.fit_box(box, width, height, label, line=number)
        except DataError as error:
            problems.add(error)
            continue
        fixes += [fix] if fix else []
        if box is not None:
            class_ids.append(class_id)
            boxes.append(box)
    if len(problems) > problems_before:
        return None
    problems.fixes += fixes
    return ImageRecord(path, width, height, boxes, class_ids, class_names)


def _parse_line(
    line: str, label: Path, number: int, num_classes: int, width: int, height: int
) -> tuple[int, Box]:
    """Class id and absolute-pixel xyxy box (not yet checked against the image) of one line."""
    values = line.split()
    if len(values) != 5:
        raise DataError(
            label, f"expected 5 values (class cx cy w h), got {len(values)}", line=number
        )
    try:
        class_id = int(values[0])
    except ValueError:
        raise DataError(label, f"class id {values[0]!r} is not an integer", line=number) from None
    if not 0 <= class_id < num_classes:
        raise DataError(
            label, f"class id {class_id} is not in names (0..{num_classes - 1})", line=number
        )
    try:
        cx, cy, w, h = (float(value) for value in values[1:])
    except ValueError:
        raise DataError(label, f"non-numeric value in {line.strip()!r}", line=number) from None
    box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
    return class_id, box


def _label_text(record: ImageRecord) -> str:
    lines = []
    for (x1, y1, x2, y2), class_id in zip(
        clipped_boxes_xyxy(record), record.class_ids, strict=True
    ):
        cx, cy = (x1 + x2) / 2 / record.width, (y1 + y2) / 2 / record.height
        w, h = (x2 - x1) / record.width, (y2 - y1) / record.height
        lines.append(f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)
