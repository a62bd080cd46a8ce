"""Export to (and read back) the input folders of the Cartucho/mAP tool, for cross-checking.

Layout, one pair of files per image (both written even when empty):

- ``ground-truth/<image>.txt``: ``<class_name> <left> <top> <right> <bottom>[ difficult]``
- ``detection-results/<image>.txt``: ``<class_name> <confidence> <left> <top> <right> <bottom>``

Coordinates are absolute pixel xyxy. Numbers are written as Python's shortest round-trip repr,
so reading them back gives the same float64 values (IoUs, score order and ties reproduce
exactly). The tool splits lines on whitespace, so spaces in class names become underscores, and
it treats any line containing "difficult" as a difficult object, so class names containing that
word are refused. It sorts files by name: image names that sort like their list positions (e.g.
zero-padded numbers) keep `evaluate_voc`'s tie order for equal scores.
"""

from __future__ import annotations

from pathlib import Path

from onestage.detections import DetectionsLike, ImageDetections
from onestage.fileio import atomic_write_text
from onestage.limits import read_text_within
from onestage.metrics import GroundTruthLike, ImageGroundTruth, as_evaluation_inputs

GROUND_TRUTH_DIR = "ground-truth"
DETECTION_DIR = "detection-results"


def cartucho_class_name(name: str) -> str:
    """The class name as written in the files: whitespace runs become underscores."""
    written = "_".join(name.split())
    if not written or "difficult" in written:
        raise ValueError(f"class name {name!r} cannot be written for the Cartucho tool")
    return written


def export_cartucho(
    out_dir: str | Path,
    ground_truths: list[GroundTruthLike],
    detections: list[DetectionsLike],
    class_names: list[str],
    image_names: list[str],
) -> None:
    """Write the tool's ground-truth/ and detection-results/ folders under `out_dir`.

    Boxes are absolute pixel xyxy; `image_names` (one per image, unique, no path separators)
    become the file stems.
    """
    gts, dets = as_evaluation_inputs(ground_truths, detections, len(class_names))
    if len(image_names) != len(gts):
        raise ValueError(f"{len(image_names)} image names for {len(gts)} images")
    if len(set(image_names)) != len(image_names):
        raise ValueError("image names must be unique")
    for name in image_names:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"image name {name!r} cannot be a file stem")
    written = [cartucho_class_name(name) for name in class_names]
    if len(set(written)) != len(written):
        raise ValueError(f"class names collide once written: {written}")

    out_dir = Path(out_dir)
    for image_name, gt, det in zip(image_names, gts, dets, strict=True):
        gt_lines = [
            " ".join([written[c], *map(repr, box)]) + (" difficult" if difficult else "")
            for box, c, difficult in zip(
                gt.boxes_xyxy.tolist(), gt.class_ids.tolist(), gt.difficult.tolist(), strict=True
            )
        ]
        det_lines = [
            " ".join([written[c], repr(score), *map(repr, box)])
            for box, c, score in zip(
                det.boxes_xyxy.tolist(), det.class_ids.tolist(), det.scores.tolist(), strict=True
            )
        ]
        atomic_write_text(out_dir / GROUND_TRUTH_DIR / f"{image_name}.txt", _text(gt_lines))
        atomic_write_text(out_dir / DETECTION_DIR / f"{image_name}.txt", _text(det_lines))


def read_cartucho(
    folder: str | Path,
) -> tuple[list[ImageGroundTruth], list[ImageDetections], list[str], list[str]]:
    """Read a tool folder -> (ground truths, detections, class names, image names).

    Images come in file-name order (as the tool reads them), class names sorted alphabetically
    (class id = position in that list). Every image needs both files.
    """
    folder = Path(folder)
    gt_files = {p.stem: p for p in (folder / GROUND_TRUTH_DIR).glob("*.txt")}
    det_files = {p.stem: p for p in (folder / DETECTION_DIR).glob("*.txt")}
    if gt_files.keys() != det_files.keys():
        unpaired = sorted(gt_files.keys() ^ det_files.keys())
        raise ValueError(f"{folder}: images without both files: {unpaired[:10]}")
    image_names = sorted(gt_files)
    gt_rows = {name: _read_ground_truth(gt_files[name]) for name in image_names}
    det_rows = {name: _read_detections(det_files[name]) for name in image_names}
    class_names = sorted(
        {row[0] for rows in gt_rows.values() for row in rows}
        | {row[0] for rows in det_rows.values() for row in rows}
    )
    class_id = {name: i for i, name in enumerate(class_names)}

    ground_truths = [
        ImageGroundTruth(
            [row[1] for row in gt_rows[name]],
            [class_id[row[0]] for row in gt_rows[name]],
            [row[2] for row in gt_rows[name]],
        )
        for name in image_names
    ]
    detections = [
        ImageDetections(
            [row[2] for row in det_rows[name]],
            [row[1] for row in det_rows[name]],
            [class_id[row[0]] for row in det_rows[name]],
        )
        for name in image_names
    ]
    return ground_truths, detections, class_names, image_names


def _text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _read_ground_truth(path: Path) -> list[tuple[str, list[float], bool]]:
    """Rows (class name, xyxy box, difficult) of one ground-truth file."""
    rows = []
    for number, line in _lines(path):
        fields = line.split()
        difficult = len(fields) == 6 and fields[5] == "difficult"
        if len(fields) != 5 and not difficult:
            raise ValueError(f"{path}:{number}: expected '<class> <l> <t> <r> <b> [difficult]'")
        rows.append((fields[0], _floats(fields[1:5], path, number), difficult))
    return rows


def _read_detections(path: Path) -> list[tuple[str, float, list[float]]]:
    """Rows (class name, confidence, xyxy box) of one detection-results file."""
    rows = []
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise ValueError(f"{path}:{number}: expected '<class> <confidence> <l> <t> <r> <b>'")
        score, *box = _floats(fields[1:], path, number)
        rows.append((fields[0], score, box))
    return rows


def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) of the non-blank lines of a file."""
    lines = read_text_within(path).splitlines()
    return [(i, line.strip()) for i, line in enumerate(lines, start=1) if line.strip()]


def _floats(fields: list[str], path: Path, number: int) -> list[float]:
    try:
        return [float(f) for f in fields]
    except ValueError:
        raise ValueError(f"{path}:{number}: not a number in {fields}") from None
