"""Pascal VOC layout: JPEGImages/, Annotations/<stem>.xml, ImageSets/Main/<split>.txt, classes.txt.

VOC boxes are 1-based inclusive pixels: continuous (x1, y1, x2, y2) = (xmin - 1, ymin - 1, xmax,
ymax). classes.txt (one name per line, in index order) keeps the class order; without it the
classes are the sorted names found.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from onestage.data.formats._common import (
    Problems,
    claim,
    clipped_boxes_xyxy,
    image_size,
    place_image,
)
from onestage.data.images import IMAGE_SUFFIXES
from onestage.data.paths import is_file
from onestage.data.records import Box, DetectionDataset, ImageRecord
from onestage.errors import DataError
from onestage.fileio import atomic_write_text
from onestage.limits import MAX_TEXT_BYTES, read_bytes_within, read_text_within

CLASSES_TXT = "classes.txt"
_DEFAULT_SPLIT = "train"
_FORBIDDEN_XML = (b"<!DOCTYPE", b"<!ENTITY")


@dataclass
class _Annotation:
    image_path: Path
    width: int
    height: int
    boxes_xyxy: list[Box]  # absolute pixels, continuous
    names: list[str]
    difficult: list[bool]


def image_dir(out_dir: Path, split: str) -> Path:
    """Folder the writer puts the images of `split` in (all splits share it)."""
    return out_dir / "JPEGImages"


def read(
    root: Path, problems: Problems, *, verify_images: bool, max_pixels: int
) -> DetectionDataset:
    """Read a VOC dataset; bad annotations or images go to `problems`."""
    annotations_dir = root / "Annotations"
    if not annotations_dir.is_dir():
        raise DataError(root, "Annotations/ folder not found")
    known = _read_classes(root / CLASSES_TXT)
    members = _split_members(root, problems)
    parsed: dict[Path, _Annotation | None] = {}
    for xml_path in (path for paths in members.values() for path in paths):
        if xml_path not in parsed:
            parsed[xml_path] = _read_annotation(
                xml_path, root, known, problems, verify_images, max_pixels
            )
    if known is None:
        found = {name for a in parsed.values() if a is not None for name in a.names}
        known = tuple(sorted(found))
    index = {name: i for i, name in enumerate(known)}
    splits = {
        split: [
            ImageRecord(
                a.image_path,
                a.width,
                a.height,
                a.boxes_xyxy,
                [index[name] for name in a.names],
                known,
                a.difficult,
            )
            for a in (parsed[path] for path in xml_paths)
            if a is not None
        ]
        for split, xml_paths in members.items()
    }
    return DetectionDataset(known, splits)


def write(dataset: DetectionDataset, out_dir: Path) -> None:
    """Write images, XML annotations, ImageSets/Main/<split>.txt and classes.txt under `out_dir`."""
    claimed: dict[Path, Path] = {}
    plan = []
    for records in dataset.splits.values():
        for record in records:
            dest = out_dir / "JPEGImages" / record.image_path.name
            xml_path = out_dir / "Annotations" / f"{dest.stem}.xml"
            claim(claimed, xml_path, record.image_path)
            plan.append((record, dest, xml_path))
    for folder in ("JPEGImages", "Annotations"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    for record, dest, xml_path in plan:
        place_image(record.image_path, dest)
        atomic_write_text(xml_path, _annotation_xml(record, dest.name, dataset.class_names))
    for split, records in dataset.splits.items():
        stems = "".join(f"{record.image_path.stem}\n" for record in records)
        atomic_write_text(out_dir / "ImageSets" / "Main" / f"{split}.txt", stems)
    atomic_write_text(out_dir / CLASSES_TXT, "".join(f"{n}\n" for n in dataset.class_names))


def _read_classes(path: Path) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    try:
        lines = read_text_within(path).splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read the file ({error})") from None
    names: list[str] = []
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if name in names:
            raise DataError(path, f"duplicate class name {name!r}", line=number)
        if name:
            names.append(name)
    return tuple(names)


def _split_members(root: Path, problems: Problems) -> dict[str, list[Path]]:
    """Annotation files per split, from ImageSets/Main/<split>.txt, else all as "train".

    Class-specific lists (`<class>_<split>.txt`) are ignored, and so is trainval.txt when
    train.txt and val.txt exist (it is their union).
    """
    main = root / "ImageSets" / "Main"
    lists = {path.stem: path for path in sorted(main.glob("*.txt"))} if main.is_dir() else {}
    lists = {
        stem: path
        for stem, path in lists.items()
        if not any(stem.endswith(f"_{other}") for other in lists)
    }
    if {"train", "val", "trainval"} <= lists.keys():
        del lists["trainval"]
    if not lists:
        return {_DEFAULT_SPLIT: sorted((root / "Annotations").glob("*.xml"))}
    members: dict[str, list[Path]] = {}
    for split, list_path in lists.items():
        members[split] = []
        try:
            lines = read_text_within(list_path).splitlines()
        except (OSError, UnicodeDecodeError) as error:
            problems.add(DataError(list_path, f"cannot read the file ({error})"))
            continue
        except DataError as error:
            problems.add(error)
            continue
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            xml_path = root / "Annotations" / f"{line.split()[0]}.xml"
            if is_file(xml_path):
                members[split].append(xml_path)
            else:
                problems.add(DataError(list_path, f"annotation {xml_path} not found", line=number))
    return members


def _read_annotation(
    xml_path: Path,
    root: Path,
    known: tuple[str, ...] | None,
    problems: Problems,
    verify_images: bool,
    max_pixels: int,
) -> _Annotation | None:
    """Parse and check one annotation file and its image; None (problems reported) if bad."""
    problems_before = len(problems)
    try:
        tree = _parse_xml(xml_path)
        filename = _text(tree, "filename", xml_path)
        width = _size(tree, "size/width", xml_path)
        height = _size(tree, "size/height", xml_path)
    except DataError as error:
        problems.add(error)
        return None
    annotation = _Annotation(_image_path(root, filename, xml_path), width, height, [], [], [])
    fixes = []
    for number, obj in enumerate(tree.findall("object"), start=1):
        field = f"object[{number}]"
        try:
            name, difficult, box = _parse_object(obj, field, xml_path, known)
            box, fix = problems.fit_box(box, width, height, xml_path, field=f"{field}/bndbox")
        except DataError as error:
            problems.add(error)
            continue
        fixes += [fix] if fix else []
        if box is None:
            continue
        annotation.names.append(name)
        annotation.difficult.append(difficult)
        annotation.boxes_xyxy.append(box)
    try:
        actual = image_size(annotation.image_path, verify=verify_images, max_pixels=max_pixels)
    except DataError as error:
        problems.add(error)
        return None
    if actual != (width, height):
        message = (
            f"size is {width}x{height} but the image {annotation.image_path} is "
            f"{actual[0]}x{actual[1]}"
        )
        problems.add(DataError(xml_path, message, field="size"))
    if len(problems) > problems_before:
        return None
    problems.fixes += fixes
    return annotation


def _parse_xml(path: Path) -> ET.Element:
    try:
        data = read_bytes_within(path, MAX_TEXT_BYTES)
    except OSError as error:
        raise DataError(path, f"cannot read the file ({error})") from None
    if b"\x00" in data:
        raise DataError(path, "not an ASCII or UTF-8 XML file")
    for forbidden in _FORBIDDEN_XML:
        at = data.find(forbidden)
        if at >= 0:
            line = data.count(b"\n", 0, at) + 1
            message = f"{forbidden.decode()} declarations are not allowed (entity expansion risk)"
            raise DataError(path, message, line=line)
    try:
        return ET.fromstring(data)
    except ET.ParseError as error:
        raise DataError(path, f"malformed XML: {error}", line=error.position[0]) from None


def _text(element: ET.Element, tag_path: str, xml_path: Path, field: str | None = None) -> str:
    found = element.find(tag_path)
    if found is None or not (found.text or "").strip():
        raise DataError(xml_path, "missing field", field=field or tag_path)
    return found.text.strip()


def _number(element: ET.Element, tag_path: str, xml_path: Path, field: str) -> float:
    text = _text(element, tag_path, xml_path, field)
    try:
        return float(text)
    except ValueError:
        raise DataError(xml_path, f"not a number: {text!r}", field=field) from None


def _size(tree: ET.Element, tag_path: str, xml_path: Path) -> int:
    value = _number(tree, tag_path, xml_path, tag_path)
    if not (value.is_integer() and value > 0):
        raise DataError(xml_path, f"expected a positive integer, got {value:g}", field=tag_path)
    return int(value)


def _parse_object(
    obj: ET.Element, field: str, xml_path: Path, known: tuple[str, ...] | None
) -> tuple[str, bool, Box]:
    """Class name, difficult flag and absolute-pixel xyxy box (unchecked) of one <object>."""
    name = _text(obj, "name", xml_path, f"{field}/name")
    if known is not None and name not in known:
        raise DataError(
            xml_path, f"unknown class name {name!r} (not in {CLASSES_TXT})", field=f"{field}/name"
        )
    difficult = (obj.findtext("difficult") or "0").strip()
    if difficult not in ("0", "1"):
        raise DataError(xml_path, f"expected 0 or 1, got {difficult!r}", field=f"{field}/difficult")
    xmin, ymin, xmax, ymax = (
        _number(obj, f"bndbox/{tag}", xml_path, f"{field}/bndbox/{tag}")
        for tag in ("xmin", "ymin", "xmax", "ymax")
    )
    return name, difficult == "1", (xmin - 1, ymin - 1, xmax, ymax)


def _image_path(root: Path, filename: str, xml_path: Path) -> Path:
    """JPEGImages/<filename>, else an image named like the annotation (filename without suffix)."""
    images = root / "JPEGImages"
    path = images / filename
    if is_file(path):
        return path
    for suffix in IMAGE_SUFFIXES:
        candidate = images / f"{xml_path.stem}{suffix}"
        if is_file(candidate):
            return candidate
    return path


def _annotation_xml(record: ImageRecord, filename: str, class_names: tuple[str, ...]) -> str:
    annotation = ET.Element("annotation")
    ET.SubElement(annotation, "folder").text = "JPEGImages"
    ET.SubElement(annotation, "filename").text = filename
    size = ET.SubElement(annotation, "size")
    for tag, value in (("width", record.width), ("height", record.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    boxes = clipped_boxes_xyxy(record)
    for (x1, y1, x2, y2), class_id, difficult in zip(
        boxes, record.class_ids, record.difficult, strict=True
    ):
        obj = ET.SubElement(annotation, "object")
        ET.SubElement(obj, "name").text = class_names[class_id]
        ET.SubElement(obj, "difficult").text = str(int(difficult))
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, tag).text = _coordinate(value)
    ET.indent(annotation)
    return ET.tostring(annotation, encoding="unicode") + "\n"


def _coordinate(value: float) -> str:
    """Integral values as integers, others with up to 3 decimals."""
    rounded = round(float(value), 3)
    if rounded.is_integer():
        return str(int(rounded))
    return f"{rounded:.3f}".rstrip("0")
