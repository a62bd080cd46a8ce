"""Prediction over a folder: every image of a file, folder or glob through a `Detector`, written
out as annotated images, predictions.json (COCO results) and optional YOLO label lines."""

from __future__ import annotations

import json
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
from onestage.errors import DataError, OnestageError
from onestage.fileio import atomic_write_text
from onestage.predict_options import PredictOptions


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
) -> PredictSummary:
    """Predict on every image of `source`; write annotated images, predictions.json (COCO
    results format: category_id = the COCO training set's id kept in the weights' metadata,
    else class id + 1; bbox xywh pixels) and, with `save_txt`, YOLO `labels/<stem>.txt` lines
    `class cx cy w h score` (normalised). An unreadable image inside a folder is skipped and
    reported; a single unreadable image is an error."""
    names = detector.class_names
    category_ids = detector.metadata.get("category_ids") or [i + 1 for i in range(len(names))]
    if len(category_ids) != len(names):
        raise OnestageError(
            f"the weights' metadata has {len(category_ids)} category ids for {len(names)} classes"
        )
    paths = list_images(source)
    stems = output_stems(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    total = 0
    for path, stem in zip(paths, stems, strict=True):
        try:
            image = load_image_rgb(path)
        except DataError as error:
            if len(paths) == 1:
                raise
            skipped.append(str(error))
            continue
        found = detector.detect([image], options)[0]
        total += len(found.scores)
        labels = [detector.class_names[int(i)] for i in found.class_ids]
        picture = draw_boxes(
            image, found.boxes_xyxy, found.class_ids, detector.class_names, found.scores
        )
        save_image(np.asarray(picture), out_dir / f"{stem}.png")
        image_id: int | str = int(stem) if stem.isdigit() and str(int(stem)) == stem else stem
        height, width = image.shape[:2]
        lines = []
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
        if on_image is not None:
            on_image()
    atomic_write_text(out_dir / "predictions.json", json.dumps(results, indent=1) + "\n")
    return PredictSummary(out_dir, len(paths) - len(skipped), total, skipped)
