"""Evaluation: run a Detector over a test set, score VOC and COCO metrics, write a report."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onestage.data.formats import read_dataset
from onestage.data.images import load_image_rgb, save_image
from onestage.data.records import DetectionDataset
from onestage.data.synthetic import (
    SEED_SIZE_RANGE,
    SyntheticConfig,
    SyntheticGenerator,
    split_stream,
)
from onestage.data.transforms import fit_image
from onestage.detections import ImageDetections
from onestage.drawing import draw_boxes, image_grid
from onestage.engine.predictor import Detector
from onestage.engine.shards import Shard, collect, hand_in
from onestage.errors import OnestageError
from onestage.fileio import atomic_write_text
from onestage.metrics import ImageGroundTruth
from onestage.metrics.cartucho import export_cartucho
from onestage.metrics.coco import CocoResult, evaluate_coco
from onestage.metrics.confusion import confusion_matrix
from onestage.metrics.voc import IOU_CONVENTIONS, IouConvention, VocResult, evaluate_voc
from onestage.predict_options import EVALUATION, PREDICTION, PredictOptions


@dataclass
class EvalSet:
    """A test set: ground truth per image (absolute pixel xyxy) and a way to load each image.

    A COCO dataset's own ids go to predictions.json (and order COCO ties as pycocotools does);
    without them, image id = position + 1 and category id = class id + 1.
    """

    names: list[str]
    ground_truths: list[ImageGroundTruth]
    sizes: list[tuple[int, int]]  # (width, height) per image
    class_names: tuple[str, ...]
    load_image: Callable[[int], np.ndarray]  # index -> (H, W, 3) uint8 RGB
    image_ids: list[int] | None = None  # COCO image id per image
    category_ids: dict[str, int] | None = None  # COCO category id per class name

    def __len__(self) -> int:
        return len(self.names)


def synthetic_eval_set(
    class_names: tuple[str, ...],
    count: int,
    size: int = 320,
    objects: tuple[int, int] = (4, 4),
    seed: int = 0,
    icons: Path | None = None,
    backgrounds: Path | None = None,
    stream_name: str = "test",
    mix: bool = False,
    size_range: tuple[float, float] = SEED_SIZE_RANGE,
) -> EvalSet:
    """A fixed synthetic set drawn from the named split's stream (never a training stream),
    kept in memory; `mix` and `size_range` (icon side / image side) as in `SyntheticConfig`."""
    config = SyntheticConfig(
        width=size,
        height=size,
        objects=objects,
        size_range=size_range,
        classes=class_names,
        icons=icons,
        backgrounds=backgrounds,
        seed=seed,
        mix=mix,
    )
    generator = SyntheticGenerator(config)
    if generator.class_names != tuple(class_names):
        raise OnestageError(
            f"the synthetic icons give classes {generator.class_names}, but the weights know "
            f"{tuple(class_names)}"
        )
    stream = split_stream(stream_name)
    samples = [generator.sample(index, stream=stream) for index in range(count)]
    return EvalSet(
        names=[f"{stream_name}_{index:06d}" for index in range(count)],
        ground_truths=[
            ImageGroundTruth(s.boxes_xyxy, s.class_ids, np.zeros(len(s.class_ids), dtype=bool))
            for s in samples
        ],
        sizes=[(size, size)] * count,
        class_names=generator.class_names,
        load_image=lambda index: samples[index].image,
    )


def dataset_eval_set(
    root: Path,
    class_names: tuple[str, ...],
    split: str | None = None,
    dataset: DetectionDataset | None = None,
    strict: bool = False,
) -> EvalSet:
    """A split of a dataset folder (default: val, else test, else the first split); `dataset`
    is the folder already read, when the caller has it; `strict` refuses boxes slightly outside
    their image instead of clipping them.

    Dataset class ids are mapped to the weights' class ids by name; a class the weights do not
    know is an error.
    """
    if dataset is None:
        dataset, _ = read_dataset(root, strict=strict)
    if split is None:
        split = next(
            (s for s in ("val", "test") if s in dataset.splits), next(iter(dataset.splits))
        )
    if split not in dataset.splits:
        raise OnestageError(f"{root}: no split {split!r}; found {', '.join(dataset.splits)}")
    unknown = [name for name in dataset.class_names if name not in class_names]
    if unknown:
        raise OnestageError(
            f"{root}: classes {', '.join(map(repr, unknown))} are not known to the weights "
            f"(they know {', '.join(class_names)})"
        )
    to_weights = np.array([class_names.index(name) for name in dataset.class_names], dtype=np.int64)
    records = dataset.splits[split]
    image_ids = [record.image_id for record in records]
    category_ids = dataset.category_ids
    return EvalSet(
        names=[record.image_path.stem for record in records],
        ground_truths=[
            ImageGroundTruth(r.boxes_xyxy, to_weights[r.class_ids], r.difficult) for r in records
        ],
        sizes=[(record.width, record.height) for record in records],
        class_names=class_names,
        load_image=lambda index: load_image_rgb(records[index].image_path),
        image_ids=image_ids if None not in image_ids else None,
        category_ids=dict(zip(dataset.class_names, category_ids, strict=True))
        if category_ids is not None
        else None,
    )


@dataclass
class EvaluationResult:
    """Scores of one evaluation, the detections behind them, and where the time went."""

    voc: VocResult
    coco: CocoResult
    confusion: np.ndarray  # (C + 1, C + 1): rows predicted, columns true, last = background
    eval_set: EvalSet
    detections: list[ImageDetections]
    options: PredictOptions  # the post-processing the detections came from
    seconds: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The JSON-ready summary written as metrics.json."""
        counts = self.voc.counts
        return {
            "images": len(self.eval_set),
            "voc": {
                "definition": "Pascal VOC AP@0.5, all-point interpolation (Cartucho/mAP); "
                f"IoU convention {self.voc.iou_convention}",
                "iou_convention": self.voc.iou_convention,
                "mAP50": self.voc.map,
                "ap_per_class": self.voc.ap_per_class,
            },
            "coco": {
                "definition": "COCO AP@[.5:.95] (101-point interpolation), pycocotools rules; "
                f"max detections per image {self.coco.max_dets}",
                **{name: value for name, value in zip(COCO_NAMES, self.coco.stats, strict=True)},
                "ap_per_class": self.coco.ap_per_class,
            },
            "counts": {
                name: {
                    "ground_truths": c.ground_truths,
                    "detections": c.detections,
                    "true_positives": c.true_positives,
                    "false_positives": c.false_positives,
                }
                for name, c in counts.items()
            },
            "seconds": self.seconds,
        }


COCO_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR_max_dets",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def evaluate_detector(
    detector: Detector,
    eval_set: EvalSet,
    options: PredictOptions = EVALUATION,
    batch_size: int = 32,
    iou_convention: IouConvention = "continuous",
) -> EvaluationResult:
    """Detect on every image of `eval_set` and score VOC AP@0.5, COCO metrics and confusion
    (the latter from `shown_conf(options)`)."""
    detections, seconds = detect_images(
        detector, eval_set, range(len(eval_set)), options, batch_size
    )
    return score_detections(
        eval_set, detections, options, iou_convention, seconds, detector.class_names
    )


def detect_images(
    detector: Detector,
    eval_set: EvalSet,
    indices: Sequence[int],
    options: PredictOptions = EVALUATION,
    batch_size: int = 32,
) -> tuple[list[ImageDetections], dict[str, float]]:
    """The detections of the images of `eval_set` at `indices` (in that order), boxes in each
    image's pixels, and the seconds spent loading and fitting, in the forward and after it."""
    detections: list[ImageDetections] = []
    seconds = {"load_and_fit": 0.0, "forward": 0.0, "postprocess": 0.0}
    for start in range(0, len(indices), batch_size):
        began = time.perf_counter()
        chunk = indices[start : start + batch_size]
        fitted = [
            fit_image(eval_set.load_image(i), detector.input_size, detector.letterbox)
            for i in chunk
        ]
        batch = np.stack([image for image, _ in fitted]).transpose(0, 3, 1, 2)  # (B, 3, S, S)
        seconds["load_and_fit"] += time.perf_counter() - began
        timing: dict[str, float] = {}
        detections += detector.detect_fitted(
            batch,
            [transform for _, transform in fitted],
            [eval_set.sizes[i] for i in chunk],
            options,
            timing=timing,
        )
        seconds["forward"] += timing["forward"]
        seconds["postprocess"] += timing["postprocess"]
    return detections, seconds


def score_detections(
    eval_set: EvalSet,
    detections: list[ImageDetections],
    options: PredictOptions = EVALUATION,
    iou_convention: IouConvention = "continuous",
    seconds: dict[str, float] | None = None,
    class_names: Sequence[str] | None = None,
) -> EvaluationResult:
    """VOC AP@0.5, COCO metrics and confusion of `detections`, one per image of `eval_set`,
    over `class_names` (default: the set's)."""
    began = time.perf_counter()
    class_names = list(class_names or eval_set.class_names)
    voc = evaluate_voc(
        eval_set.ground_truths, detections, class_names, iou_convention=iou_convention
    )
    coco = evaluate_coco(
        eval_set.ground_truths,
        detections,
        eval_set.sizes,
        class_names,
        max_dets=options.max_det,
        image_ids=eval_set.image_ids,
    )
    confusion = confusion_matrix(
        eval_set.ground_truths, detections, len(class_names), conf_threshold=shown_conf(options)
    )
    seconds = {**(seconds or {}), "metrics": time.perf_counter() - began}
    return EvaluationResult(voc, coco, confusion, eval_set, detections, options, seconds)


def shown_conf(options: PredictOptions) -> float:
    """The score from which an evaluation shows detections (confusion matrix, prediction grid):
    its own threshold, but at least prediction's, as the low scores kept for AP would bury both
    under false alarms."""
    return max(options.conf, PREDICTION.conf)


def write_report(
    result: EvaluationResult, out_dir: Path, cartucho_dir: Path | None = None, grid_images: int = 16
) -> list[Path]:
    """Write metrics.json, per_class.csv, predictions.json (COCO results), plots and a grid."""
    from onestage import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    eval_set = result.eval_set
    class_names = list(eval_set.class_names)
    atomic_write_text(out_dir / "metrics.json", json.dumps(result.metrics(), indent=2) + "\n")
    atomic_write_text(out_dir / "per_class.csv", _per_class_csv(result))
    atomic_write_text(
        out_dir / "predictions.json", json.dumps(coco_results(eval_set, result.detections))
    )
    plots.plot_ap_per_class(
        result.voc.ap_per_class, out_dir / "ap_per_class.png", "VOC AP@0.5 per class"
    )
    plots.plot_pr_curves(
        result.voc.precision, result.voc.recall, result.voc.ap_per_class, out_dir / "pr_curves.png"
    )
    plots.plot_pr_grid(
        result.voc.precision,
        result.voc.recall,
        result.voc.ap_per_class,
        out_dir / "pr_per_class.png",
    )
    plots.plot_confusion_matrix(result.confusion, class_names, out_dir / "confusion_matrix.png")
    grid = prediction_grid(result, grid_images)
    save_image(grid, out_dir / "predictions_grid.png")
    if cartucho_dir is not None:
        export_cartucho(
            cartucho_dir, eval_set.ground_truths, result.detections, class_names, eval_set.names
        )
    return sorted(out_dir.iterdir())


def prediction_grid(result: EvaluationResult, count: int = 16) -> np.ndarray:
    """(H, W, 3) grid of the first `count` test images with their detections scoring at least
    `shown_conf(result.options)`."""
    conf = shown_conf(result.options)
    tiles = []
    for index in range(min(count, len(result.eval_set))):
        found = result.detections[index]
        keep = found.scores >= conf
        tiles.append(
            draw_boxes(
                result.eval_set.load_image(index),
                found.boxes_xyxy[keep],
                found.class_ids[keep],
                result.eval_set.class_names,
                found.scores[keep],
            )
        )
    return np.asarray(image_grid(tiles))


def coco_results(eval_set: EvalSet, detections: list[ImageDetections]) -> list[dict[str, Any]]:
    """COCO results format, bbox absolute pixel xywh, numbers unrounded (pycocotools then gives
    the report's COCO numbers). A COCO dataset's own image and category ids (by class name;
    detections of classes it lacks are left out), else position + 1 and class id + 1."""
    image_ids = eval_set.image_ids or list(range(1, len(eval_set) + 1))
    known = eval_set.category_ids
    category_ids = {
        class_id: known[name] if known is not None else class_id + 1
        for class_id, name in enumerate(eval_set.class_names)
        if known is None or name in known
    }
    results = []
    for image_id, found in zip(image_ids, detections, strict=True):
        for (x1, y1, x2, y2), score, class_id in zip(
            found.boxes_xyxy.tolist(), found.scores.tolist(), found.class_ids.tolist(), strict=True
        ):
            if class_id in category_ids:
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": category_ids[class_id],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": score,
                    }
                )
    return results


def _per_class_csv(result: EvaluationResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "class",
            "ground_truths",
            "detections",
            "true_positives",
            "false_positives",
            "voc_ap50",
            "coco_ap",
            "coco_ap50",
        ]
    )
    for name in result.eval_set.class_names:
        counts = result.voc.counts.get(name)
        writer.writerow(
            [
                name,
                counts.ground_truths if counts else 0,
                counts.detections if counts else 0,
                counts.true_positives if counts else 0,
                counts.false_positives if counts else 0,
                _fmt(result.voc.ap_per_class.get(name)),
                _fmt(result.coco.ap_per_class.get(name)),
                _fmt(result.coco.ap50_per_class.get(name)),
            ]
        )
    return buffer.getvalue()


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def evaluate(
    weights: str | Path = "seed_animals",
    data: Path | None = None,
    split: str | None = None,
    synthetic: int | None = None,
    synthetic_options: dict[str, Any] | None = None,
    options: PredictOptions = EVALUATION,
    batch_size: int = 32,
    iou_convention: IouConvention = "continuous",
    device: str = "auto",
    strict_labels: bool = False,
    backend: str | None = None,
    precision: str | None = None,
    shard: Shard | None = None,
    parts: Path | None = None,
) -> EvaluationResult | None:
    """Score weights on a dataset split or on `synthetic` fixed synthetic images (the Python API
    behind `onestage evaluate`); `synthetic_options` go to `synthetic_eval_set`; `strict_labels`
    refuses dataset boxes slightly outside their image instead of clipping them; `backend` and
    `precision` as `Detector.load`'s. With a `shard` of several (torchrun), this process
    detects its share and hands it in to `parts`, a folder every process reaches; rank 0
    scores them all and returns the result, the others None."""
    if (data is None) == (synthetic is None):
        raise OnestageError("give either a dataset folder or a number of synthetic images")
    if iou_convention not in IOU_CONVENTIONS:
        raise OnestageError(
            f"unknown IoU convention {iou_convention!r}; valid: {', '.join(IOU_CONVENTIONS)}"
            + (" ('voc' was the former name of cartucho)" if iou_convention == "voc" else "")
        )
    detector = Detector.load(weights, device, backend, precision)
    if data is not None:
        eval_set = dataset_eval_set(Path(data), detector.class_names, split, strict=strict_labels)
    else:
        eval_set = synthetic_eval_set(
            detector.class_names, synthetic, size=detector.input_size, **(synthetic_options or {})
        )
    if shard is None or shard.world_size == 1:
        return evaluate_detector(detector, eval_set, options, batch_size, iou_convention)
    if parts is None:
        raise OnestageError("a sharded evaluation needs a folder to hand detections in to")
    parts.mkdir(parents=True, exist_ok=True)
    mine, seconds = detect_images(
        detector, eval_set, shard.indices(len(eval_set)), options, batch_size
    )
    hand_in(parts, shard, mine)
    if not shard.is_main:
        return None
    detections = collect(parts, shard, len(eval_set))
    with contextlib.suppress(OSError):
        parts.rmdir()  # emptied by `collect`
    return score_detections(
        eval_set, detections, options, iou_convention, seconds, detector.class_names
    )
