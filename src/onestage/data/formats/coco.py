"""COCO layout: annotations/instances_<split>.json, images/<split>/.

bbox is [x, y, w, h] in absolute pixels. Category ids are 1..K in class order when written; when
read, categories sorted by id become class indices 0..K-1, and the dataset keeps their ids
(`DetectionDataset.category_ids`) and each image's id (`ImageRecord.image_id`), so results can be
written back in the dataset's own ids. `iscrowd: 1` maps to `difficult`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onestage.data.formats._common import (
    Problems,
    claim,
    clipped_boxes_xyxy,
    image_size,
    place_image,
)
from onestage.data.images import DEFAULT_MAX_PIXELS
from onestage.data.paths import is_file
from onestage.data.records import Box, DetectionDataset, ImageRecord, LabelFix
from onestage.errors import DataError
from onestage.fileio import atomic_write_text
from onestage.limits import MAX_ANNOTATIONS_BYTES, read_text_within
from onestage.parsing import MalformedText, parse_json

_PREFIX = "instances_"


@dataclass
class _Image:
    field: str
    file_name: str
    width: int
    height: int
    boxes_xyxy: list[Box] = field(default_factory=list)
    class_ids: list[int] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    fixes: list[LabelFix] = field(default_factory=list)
    ok: bool = True


def annotation_files(root: Path) -> dict[str, Path]:
    """JSON file per split: annotations/instances_<split>.json, else annotations/<split>.json."""
    files = sorted((root / "annotations").glob("*.json"))
    instances = [path for path in files if path.stem.startswith(_PREFIX)]
    if instances:
        return {path.stem.removeprefix(_PREFIX): path for path in instances}
    return {path.stem: path for path in files}


def image_dir(out_dir: Path, split: str) -> Path:
    """Folder the writer puts the images of `split` in."""
    return out_dir / "images" / split


def read(
    root: Path, problems: Problems, *, verify_images: bool, max_pixels: int
) -> DetectionDataset:
    """Read a COCO dataset; bad files, entries or images go to `problems`."""
    files = annotation_files(root)
    if not files:
        raise DataError(root, "no annotations/*.json found")
    class_names: tuple[str, ...] | None = None
    category_ids: tuple[int, ...] | None = None
    first_file = None
    splits: dict[str, list[ImageRecord]] = {}
    for split, path in files.items():
        try:
            content = _load_json(path)
            names, category_index = _categories(content, path)
            if class_names is not None and names != class_names:
                raise DataError(path, f"categories differ from {first_file}", field="categories")
            images = _images(content, path, problems)
            _add_annotations(content, path, images, category_index, problems)
        except DataError as error:
            problems.add(error)
            continue
        class_names, first_file = names, first_file or path
        category_ids = tuple(category_index)  # ids in class order
        splits[split] = []
        for image_id, image in images.items():
            if image is None or not image.ok:
                continue
            record = _record(
                image, image_id, root, split, path, names, problems, verify_images, max_pixels
            )
            if record is not None:
                splits[split].append(record)
    return DetectionDataset(class_names or (), splits, category_ids=category_ids)


def write(dataset: DetectionDataset, out_dir: Path) -> None:
    """Write images and annotations/instances_<split>.json under `out_dir`."""
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(dataset.class_names)]
    claimed: dict[Path, Path] = {}
    plan = []
    for split, records in dataset.splits.items():
        for record in records:
            dest = image_dir(out_dir, split) / record.image_path.name
            claim(claimed, dest, record.image_path)
            plan.append((record, dest))
    for split in dataset.splits:
        image_dir(out_dir, split).mkdir(parents=True, exist_ok=True)
    for record, dest in plan:
        place_image(record.image_path, dest)
    for split, records in dataset.splits.items():
        content = {
            "images": [
                {"id": i, "file_name": r.image_path.name, "width": r.width, "height": r.height}
                for i, r in enumerate(records, start=1)
            ],
            "annotations": _annotations(records),
            "categories": categories,
        }
        text = json.dumps(content, indent=1, ensure_ascii=False) + "\n"
        atomic_write_text(out_dir / "annotations" / f"{_PREFIX}{split}.json", text)


def _annotations(records: list[ImageRecord]) -> list[dict[str, Any]]:
    annotations = []
    for image_id, record in enumerate(records, start=1):
        for (x1, y1, x2, y2), class_id, difficult in zip(
            clipped_boxes_xyxy(record), record.class_ids, record.difficult, strict=True
        ):
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(class_id) + 1,
                    "bbox": [round(float(v), 6) for v in (x1, y1, w, h)],
                    "area": round(float(w * h), 6),
                    "iscrowd": int(difficult),
                }
            )
    return annotations


def _load_json(path: Path) -> dict[str, Any]:
    try:
        content = parse_json(read_text_within(path, MAX_ANNOTATIONS_BYTES))
    except MalformedText as error:
        raise DataError(path, f"malformed JSON: {error.problem}", line=error.line) from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read the file ({error})") from None
    if not isinstance(content, dict):
        raise DataError(path, "expected an object with images, annotations and categories")
    return content


def _get(entry: Any, key: str, path: Path, field: str) -> Any:
    if not isinstance(entry, dict):
        raise DataError(path, "expected an object", field=field)
    if key not in entry:
        raise DataError(path, "missing field", field=f"{field}.{key}")
    return entry[key]


def _list(content: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = content.get(key)
    if not isinstance(value, list):
        raise DataError(path, "expected a list", field=key)
    return value


def _int(value: Any, path: Path, field: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(path, f"expected an integer, got {value!r}", field=field)
    return value


def _size(entry: dict[str, Any], key: str, path: Path, field: str) -> int:
    size = _int(_get(entry, key, path, field), path, f"{field}.{key}")
    if not 0 < size <= DEFAULT_MAX_PIXELS:  # no side of an image onestage reads is longer
        raise DataError(
            path,
            f"expected a positive size up to {DEFAULT_MAX_PIXELS}, got {size!s:.20}",
            field=f"{field}.{key}",
        )
    return size


def _categories(content: dict[str, Any], path: Path) -> tuple[tuple[str, ...], dict[int, int]]:
    """Class names ordered by category id, and category id -> class index."""
    by_id: dict[int, str] = {}
    for i, entry in enumerate(_list(content, "categories", path)):
        category_id = _int(_get(entry, "id", path, f"categories[{i}]"), path, f"categories[{i}].id")
        name = _get(entry, "name", path, f"categories[{i}]")
        if not isinstance(name, str) or not name:
            raise DataError(
                path, f"expected a non-empty string, got {name!r}", field=f"categories[{i}].name"
            )
        if category_id in by_id or name in by_id.values():
            raise DataError(
                path, f"duplicate category {category_id} {name!r}", field=f"categories[{i}]"
            )
        by_id[category_id] = name
    ids = sorted(by_id)
    return tuple(by_id[i] for i in ids), {category_id: i for i, category_id in enumerate(ids)}


def _images(content: dict[str, Any], path: Path, problems: Problems) -> dict[int, _Image | None]:
    """Image entries by id; None for an entry with a valid id but bad other fields."""
    images: dict[int, _Image | None] = {}
    for i, entry in enumerate(_list(content, "images", path)):
        field = f"images[{i}]"
        try:
            image_id = _int(_get(entry, "id", path, field), path, f"{field}.id")
        except DataError as error:
            problems.add(error)
            continue
        if image_id in images:
            problems.add(DataError(path, f"duplicate image id {image_id}", field=f"{field}.id"))
            continue
        images[image_id] = None
        try:
            file_name = _get(entry, "file_name", path, field)
            if not isinstance(file_name, str) or not file_name:
                raise DataError(
                    path, f"expected a file name, got {file_name!r}", field=f"{field}.file_name"
                )
            width, height = (_size(entry, key, path, field) for key in ("width", "height"))
        except DataError as error:
            problems.add(error)
            continue
        images[image_id] = _Image(field, file_name, width, height)
    return images


def _add_annotations(
    content: dict[str, Any],
    path: Path,
    images: dict[int, _Image | None],
    category_index: dict[int, int],
    problems: Problems,
) -> None:
    """Attach each annotation's box to its image; a bad annotation marks its image bad."""
    for i, entry in enumerate(_list(content, "annotations", path)):
        field = f"annotations[{i}]"
        try:
            image_id = _int(_get(entry, "image_id", path, field), path, f"{field}.image_id")
            if image_id not in images:
                raise DataError(path, f"unknown image id {image_id}", field=f"{field}.image_id")
        except DataError as error:
            problems.add(error)
            continue
        image = images[image_id]
        if image is None:
            continue
        try:
            class_id, box, crowd = _parse_annotation(entry, path, field, category_index)
            box, fix = problems.fit_box(box, image.width, image.height, path, field=f"{field}.bbox")
        except DataError as error:
            problems.add(error)
            image.ok = False
            continue
        image.fixes += [fix] if fix else []
        if box is None:
            continue
        image.boxes_xyxy.append(box)
        image.class_ids.append(class_id)
        image.difficult.append(crowd)


def _parse_annotation(
    entry: dict[str, Any], path: Path, field: str, category_index: dict[int, int]
) -> tuple[int, Box, bool]:
    """Class index, absolute-pixel xyxy box (unchecked) and crowd flag of one annotation."""
    category_id = _int(_get(entry, "category_id", path, field), path, f"{field}.category_id")
    if category_id not in category_index:
        raise DataError(path, f"unknown category id {category_id}", field=f"{field}.category_id")
    bbox = _get(entry, "bbox", path, field)
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
    ):
        raise DataError(
            path, f"expected [x, y, w, h] numbers, got {bbox!r:.80}", field=f"{field}.bbox"
        )
    try:
        x, y, w, h = (float(v) for v in bbox)
    except OverflowError:  # an integer beyond float's range
        raise DataError(path, "a coordinate is too large", field=f"{field}.bbox") from None
    box = (x, y, x + w, y + h)
    crowd = entry.get("iscrowd", 0)
    if type(crowd) is not int or crowd not in (0, 1):
        raise DataError(path, f"expected 0 or 1, got {crowd!r}", field=f"{field}.iscrowd")
    return category_index[category_id], box, crowd == 1


def _record(
    image: _Image,
    image_id: int,
    root: Path,
    split: str,
    json_path: Path,
    class_names: tuple[str, ...],
    problems: Problems,
    verify_images: bool,
    max_pixels: int,
) -> ImageRecord | None:
    """The checked record of one image entry; None (problem reported) if the image is bad."""
    image_path = _resolve(image.file_name, root, split, json_path)
    try:
        actual = image_size(image_path, verify=verify_images, max_pixels=max_pixels)
        if actual != (image.width, image.height):
            key, stored = (
                ("width", image.width) if actual[0] != image.width else ("height", image.height)
            )
            message = f"{key} is {stored} but the image {image_path} is {actual[0]}x{actual[1]}"
            raise DataError(json_path, message, field=f"{image.field}.{key}")
    except DataError as error:
        problems.add(error)
        return None
    problems.fixes += image.fixes
    return ImageRecord(
        image_path,
        image.width,
        image.height,
        image.boxes_xyxy,
        image.class_ids,
        class_names,
        image.difficult,
        image_id,
    )


def _resolve(file_name: str, root: Path, split: str, json_path: Path) -> Path:
    """Find `file_name` under images/<split>/, <split>/, the json's grandparent or the root."""
    candidates = [
        root / "images" / split / file_name,
        root / split / file_name,
        json_path.parent.parent / file_name,
        root / file_name,
    ]
    return next((path for path in candidates if is_file(path)), candidates[0])
