"""Prediction over a folder: every image of a file, folder or glob through a `Detector`, written
out as annotated images, predictions.json (COCO results) and optional YOLO label lines."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

import numpy as np

from onestage.data.images import IMAGE_SUFFIXES, load_image_rgb, save_image
from onestage.drawing import draw_boxes
from onestage.engine.predictor import Detector
from onestage.engine.shards import WAIT_POLL_S, Shard
from onestage.errors import DataError, OnestageError
from onestage.fileio import atomic_write_text
from onestage.predict_options import PredictOptions

PARTS = "parts"  # OUT/parts/rank<R>.jsonl: a line per image done, until predictions.json


@dataclass
class PredictSummary:
    """What `predict_source` did."""

    out_dir: Path
    images: int
    detections: int
    skipped: list[str]  # one message per unreadable image


def list_images(source: str | Path) -> list[Path]:
    """Image paths of a file, a folder (sorted) or a glob pattern; none found is an error."""
    path = Path(source)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        paths = [path]
    else:
        paths = sorted(Path(p) for p in glob(str(source)) if Path(p).is_file())
    if not paths:
        raise OnestageError(f"{source}: no images found (give an image, a folder or a glob)")
    return paths


def output_stems(paths: list[Path]) -> list[str]:
    """A distinct file stem per image for its outputs: the image's own stem, with its suffix
    added where two images share a stem (a.jpg, a.png -> a_jpg, a_png), then its position."""
    counts = Counter(path.stem for path in paths)
    stems = [
        path.stem if counts[path.stem] == 1 else f"{path.stem}_{path.suffix[1:].lower()}"
        for path in paths
    ]
    repeated = Counter(stems)
    return [stem if repeated[stem] == 1 else f"{stem}_{i}" for i, stem in enumerate(stems)]


def predict_source(
    detector: Detector,
    source: str | Path,
    out_dir: Path,
    options: PredictOptions | None = None,
    save_txt: bool = False,
    on_image: Callable[[], None] | None = None,
    shard: Shard | None = None,
) -> PredictSummary | None:
    """Predict on every image of `source`; write annotated images, predictions.json (COCO
    results format: category_id = the COCO training set's id kept in the weights' metadata,
    else class id + 1; bbox xywh pixels) and, with `save_txt`, YOLO `labels/<stem>.txt` lines
    `class cx cy w h score` (normalised). An unreadable image inside a folder is skipped and
    reported; a single unreadable image is an error.

    Each image done is a line of OUT/parts/rank<R>.jsonl, so a run started again skips the
    images already done. Under torchrun (`shard`, default: from the environment) each process
    takes every world_size-th image from its rank; rank 0 then waits for every image's line and
    merges them into predictions.json (the file one process writes) and returns the summary;
    the other ranks return None."""
    names = detector.class_names
    category_ids = detector.metadata.get("category_ids") or [i + 1 for i in range(len(names))]
    if len(category_ids) != len(names):
        raise OnestageError(
            f"the weights' metadata has {len(category_ids)} category ids for {len(names)} classes"
        )
    shard = shard or Shard.from_environment()
    paths = list_images(source)
    stems = output_stems(paths)
    parts = out_dir / PARTS
    parts.mkdir(parents=True, exist_ok=True)
    done = read_parts(parts)
    part = parts / f"rank{shard.rank}.jsonl"
    with open(part, "a+", encoding="utf-8") as log:
        if log.tell() and not _ends_a_line(part):
            log.write("\n")  # after a line a kill cut short
        for index in shard.indices(len(paths)):
            if stems[index] in done:
                continue
            try:
                image = load_image_rgb(paths[index])
            except DataError as error:
                if len(paths) == 1:
                    raise
                record = {"stem": stems[index], "skipped": str(error)}
            else:
                results = _predict_image(
                    detector, image, paths[index], stems[index], out_dir, category_ids,
                    options, save_txt,
                )  # fmt: skip
                record = {"stem": stems[index], "results": results}
            log.write(json.dumps(record) + "\n")
            log.flush()
            if on_image is not None:
                on_image()
    if not shard.is_main:
        return None
    done = read_parts(parts)
    while shard.world_size > 1 and not done.keys() >= set(stems):
        time.sleep(WAIT_POLL_S)  # the other ranks' shares (torchrun stops the group if one dies)
        done = read_parts(parts)
    return _merge(done, stems, out_dir)


def _predict_image(
    detector: Detector,
    image: np.ndarray,
    path: Path,
    stem: str,
    out_dir: Path,
    category_ids: list[int],
    options: PredictOptions | None,
    save_txt: bool,
) -> list[dict[str, Any]]:
    """One image's annotated copy (and YOLO lines): its COCO result rows."""
    found = detector.detect([image], options)[0]
    labels = [detector.class_names[int(i)] for i in found.class_ids]
    picture = draw_boxes(
        image, found.boxes_xyxy, found.class_ids, detector.class_names, found.scores
    )
    save_image(np.asarray(picture), out_dir / f"{stem}.png")
    image_id: int | str = int(stem) if stem.isdigit() and str(int(stem)) == stem else stem
    height, width = image.shape[:2]
    results, lines = [], []
    for box, score, class_id, label in zip(
        found.boxes_xyxy, found.scores, found.class_ids, labels, strict=True
    ):
        x1, y1, x2, y2 = (float(v) for v in box)
        results.append(
            {
                "image_id": image_id,
                "file_name": path.name,
                "category_id": int(category_ids[int(class_id)]),
                "category_name": label,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(score), 5),
            }
        )
        lines.append(
            f"{int(class_id)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f} {float(score):.5f}"
        )
    if save_txt:
        atomic_write_text(
            out_dir / "labels" / f"{stem}.txt", "".join(f"{line}\n" for line in lines)
        )
    return results


def _ends_a_line(path: Path) -> bool:
    """Whether the file's last byte is a newline."""
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_parts(parts: Path) -> dict[str, dict[str, Any]]:
    """The images done so far, by output stem, from every rank's part file (a line cut short
    by a kill is not one: its image is done again)."""
    done: dict[str, dict[str, Any]] = {}
    for part in sorted(parts.glob("rank*.jsonl")):
        for line in part.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("stem"), str):
                done[record["stem"]] = record
    return done


def _merge(done: dict[str, dict[str, Any]], stems: list[str], out_dir: Path) -> PredictSummary:
    """predictions.json from every image's record, in the images' order; the parts go."""
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    for stem in stems:
        record = done[stem]
        if "skipped" in record:
            skipped.append(record["skipped"])
        else:
            results += record["results"]
    atomic_write_text(out_dir / "predictions.json", json.dumps(results, indent=1) + "\n")
    shutil.rmtree(out_dir / PARTS, ignore_errors=True)
    return PredictSummary(out_dir, len(stems) - len(skipped), len(results), skipped)
