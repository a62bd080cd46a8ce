"""The leaderboard: several detectors scored and timed the same way on one test set.

Every model is scored by the same evaluator (VOC mAP@0.5 and COCO mAP@[.5:.95]) on the same
images, and its batch-1 latency (forward, then post-processing, on one fitted image) is timed in
rounds that visit every model in turn, so that a slower or busier moment of the machine touches
all of them alike. Size (parameters, GFLOPs per image) comes from `models.summary`; training
cost from the run folder when one is given (or found above the weights file).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from onestage.config import load_yaml
from onestage.engine.device import cpu_model
from onestage.engine.evaluator import EvalSet, evaluate_detector
from onestage.engine.predictor import Detector, resolve_weights
from onestage.engine.run_folder import read_results
from onestage.errors import OnestageError
from onestage.metrics import ImageGroundTruth
from onestage.models.summary import summarize

COLUMNS = (
    "name",
    "parameters",
    "gflops",
    "input_size",
    "backend",
    "map50",
    "map50_95",
    "forward_ms",
    "postprocess_ms",
    "training_images",
    "training_seconds",
    "training_images_per_s",
    "cpu",
    "threads",
    "flags",
)


@dataclass
class LeaderboardRow:
    """One model's figures; `flags` names what makes the row not comparable with the others."""

    name: str
    weights: str
    parameters: int
    gflops: float
    input_size: int
    map50: float
    map50_95: float
    backend: str = "torch"
    forward_ms: float = math.nan
    postprocess_ms: float = math.nan
    training_images: int | None = None
    training_seconds: float | None = None
    training_images_per_s: float | None = None
    training_threads: int | None = None
    cpu: str = ""
    threads: int = 0
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """A model to compare: its display name, weights file and run folder (if known)."""

    name: str
    weights: Path
    run_dir: Path | None


def resolve_entry(source: str | Path) -> Entry:
    """A run folder (its best weights, else last), a weights file, or shipped weights by name."""
    path = Path(source)
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (path / "weights" / name).is_file():
                return Entry(path.name, path / "weights" / name, path)
        raise OnestageError(f"{path}: no weights/best.safetensors or last.safetensors in it")
    weights = resolve_weights(source)
    run_dir = weights.parent.parent if weights.parent.name == "weights" else None
    if run_dir is not None and not (run_dir / "results.csv").is_file():
        run_dir = None
    name = run_dir.name if run_dir is not None else weights.stem
    return Entry(name, weights, run_dir)


def training_record(run_dir: Path) -> tuple[int, float, float, int | None]:
    """(images, wall seconds, images/s, threads) of a run's training, from its results.csv
    (epochs' images/s x seconds, validation excluded) and config.yaml."""
    rows = read_results(run_dir / "results.csv")
    if not rows:
        raise OnestageError(f"{run_dir}: results.csv has no epochs")
    seconds = sum(row["time_s"] for row in rows)
    images = round(sum(row["images_per_s"] * row["time_s"] for row in rows))
    config = load_yaml(run_dir / "config.yaml")
    return images, seconds, images / max(seconds, 1e-9), config.get("threads")


def for_classes(eval_set: EvalSet, class_names: tuple[str, ...]) -> EvalSet:
    """The same images with class ids mapped (by name) to another model's class list."""
    if tuple(class_names) == tuple(eval_set.class_names):
        return eval_set
    missing = [name for name in eval_set.class_names if name not in class_names]
    if missing:
        raise OnestageError(
            f"the test set has classes the model does not know: {', '.join(missing)}"
        )
    to_model = np.array([class_names.index(name) for name in eval_set.class_names])
    ground_truths = [
        ImageGroundTruth(gt.boxes_xyxy, to_model[gt.class_ids], gt.difficult)
        for gt in eval_set.ground_truths
    ]
    return replace(eval_set, ground_truths=ground_truths, class_names=tuple(class_names))


def batch1_latency_ms(
    detectors: list[Detector], image: np.ndarray, rounds: int = 20, warmup: int = 3
) -> list[tuple[float, float]]:
    """Median (forward ms, post-processing ms) per detector for one (H, W, 3) uint8 image,
    the detectors visited in turn in every round."""
    timings: list[list[tuple[float, float]]] = [[] for _ in detectors]
    for round_index in range(warmup + rounds):
        for index, detector in enumerate(detectors):
            timing: dict[str, float] = {}
            batch, transforms, sizes = detector.fit_batch([image])
            detector.detect_fitted(batch, transforms, sizes, timing=timing)
            if round_index >= warmup:
                timings[index].append((timing["forward"] * 1e3, timing["postprocess"] * 1e3))
    return [
        (statistics.median(f for f, _ in rows), statistics.median(p for _, p in rows))
        for rows in timings
    ]


def compare(
    sources: list[str | Path],
    eval_set: EvalSet,
    rounds: int = 20,
    device: str = "cpu",
    backend: str | None = None,
    precision: str | None = None,
) -> list[LeaderboardRow]:
    """Score and time every model on `eval_set`; rows sorted by mAP@[.5:.95], best first.
    `backend` and `precision` as `Detector.load`'s (exported files: their own by default)."""
    if not sources:
        raise OnestageError("compare needs at least one weights file or run folder")
    entries = [resolve_entry(source) for source in sources]
    detectors = [Detector.load(entry.weights, device, backend, precision) for entry in entries]
    cpu, threads = cpu_model(), torch.get_num_threads()
    rows = []
    for entry, detector in zip(entries, detectors, strict=True):
        result = evaluate_detector(detector, for_classes(eval_set, detector.class_names))
        parameters, gflops = model_cost(detector)
        row = LeaderboardRow(
            name=entry.name,
            weights=str(entry.weights),
            parameters=parameters,
            gflops=gflops,
            input_size=detector.input_size,
            map50=result.voc.map,
            map50_95=result.coco.ap,
            backend=detector.runtime_description,
            cpu=cpu,
            threads=threads,
        )
        if entry.run_dir is not None:
            images, seconds, rate, training_threads = training_record(entry.run_dir)
            row.training_images, row.training_seconds = images, seconds
            row.training_images_per_s, row.training_threads = rate, training_threads
        rows.append(row)
    image = eval_set.load_image(0)
    for row, (forward, post) in zip(rows, batch1_latency_ms(detectors, image, rounds), strict=True):
        row.forward_ms, row.postprocess_ms = forward, post
    flag_incomparable(rows)
    return sorted(rows, key=lambda row: -row.map50_95 if not math.isnan(row.map50_95) else 0.0)


def model_cost(detector: Detector) -> tuple[int, float]:
    """(parameters, GFLOPs per image) of a detector's model; an exported one's from its
    metadata."""
    if detector.model is None:
        return int(detector.metadata["parameters"]), float(detector.metadata["gflops"])
    summary = summarize(detector.model, detector.input_size)
    return summary.total_params, summary.gflops


def flag_incomparable(rows: list[LeaderboardRow]) -> None:
    """Flag rows whose input size or training thread count differs from the most common one."""
    for attribute, label in (("input_size", "input size"), ("training_threads", "trained with")):
        values = [getattr(row, attribute) for row in rows if getattr(row, attribute) is not None]
        if len(set(values)) < 2:
            continue
        usual = max(set(values), key=values.count)
        for row in rows:
            value = getattr(row, attribute)
            if value is not None and value != usual:
                unit = " threads" if attribute == "training_threads" else " px"
                row.flags.append(f"{label} {value}{unit}, most rows {usual}{unit}")


def write_leaderboard(rows: list[LeaderboardRow], out_dir: Path, test_set: str) -> None:
    """leaderboard.csv, .md and .json, and speed_accuracy.png, under `out_dir` (atomically)."""
    import csv
    import io

    from onestage.fileio import atomic_write_text
    from onestage.plots import plot_speed_accuracy

    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(getattr(row, column)) for column in COLUMNS])
    atomic_write_text(out_dir / "leaderboard.csv", buffer.getvalue())
    lines = [
        f"Test set: {test_set}. Latency: batch 1, median of interleaved rounds, "
        f"{rows[0].threads} threads, {rows[0].cpu}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(_cell(getattr(row, c)) for c in COLUMNS) + " |" for row in rows),
    ]
    atomic_write_text(out_dir / "leaderboard.md", "\n".join(lines) + "\n")
    document = {"test_set": test_set, "rows": [asdict(row) for row in rows]}
    atomic_write_text(out_dir / "leaderboard.json", json.dumps(document, indent=2) + "\n")
    plot_speed_accuracy(
        [row.name for row in rows],
        [row.forward_ms + row.postprocess_ms for row in rows],
        [row.map50_95 for row in rows],
        out_dir / "speed_accuracy.png",
    )


def _cell(value: object) -> str:
    if isinstance(value, list):
        return "; ".join(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
