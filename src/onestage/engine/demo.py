"""The main job on built-in synthetic data: shipped weights, a short training run, evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from onestage.config import make_config
from onestage.data.images import save_image
from onestage.data.preview import synthetic_grid
from onestage.data.synthetic import SyntheticConfig
from onestage.engine.evaluator import (
    EvaluationResult,
    evaluate_detector,
    synthetic_eval_set,
    write_report,
)
from onestage.engine.predictor import WEIGHTS_DIR, Detector
from onestage.engine.progress import TrainProgress
from onestage.engine.trainer import train

SHIPPED_WEIGHTS = "seed_animals"


@dataclass
class DemoSummary:
    """Where the demo put things and what it measured."""

    out_dir: Path
    data_preview: Path
    shipped: EvaluationResult | None = None
    shipped_report: Path | None = None
    run_dir: Path | None = None
    trained: EvaluationResult | None = None
    trained_report: Path | None = None
    notes: list[str] = field(default_factory=list)


def shipped_weights_available() -> bool:
    return (WEIGHTS_DIR / f"{SHIPPED_WEIGHTS}.safetensors").is_file()


def run_demo(
    out_dir: Path,
    progress: TrainProgress | None = None,
    epochs: int = 8,
    steps: int = 200,
    test_images: int = 200,
) -> DemoSummary:
    """Preview the data, evaluate the shipped weights, train the `fast` recipe briefly and
    evaluate the result on a fixed synthetic test set; everything goes under `out_dir`."""
    summary = DemoSummary(out_dir=out_dir, data_preview=out_dir / "data_preview.png")
    save_image(synthetic_grid(SyntheticConfig(), 16), summary.data_preview)
    if shipped_weights_available():
        detector = Detector.load(SHIPPED_WEIGHTS)
        eval_set = synthetic_eval_set(detector.class_names, test_images)
        summary.shipped = evaluate_detector(detector, eval_set)
        summary.shipped_report = out_dir / "shipped"
        write_report(summary.shipped, summary.shipped_report)
    else:
        summary.notes.append("no shipped weights in this installation; skipped that step")
    config = make_config(
        "fast",
        overrides={
            "epochs": epochs,
            "steps": steps,
            "val_every": epochs,
            "val_images": test_images,
            "project": str(out_dir),
            "name": "train",
            "exist_ok": True,
        },
    )
    result = train(config, progress)
    summary.run_dir = result.run_dir
    detector = Detector.load(result.run_dir / "weights" / "best.safetensors")
    eval_set = synthetic_eval_set(detector.class_names, test_images)
    summary.trained = evaluate_detector(detector, eval_set)
    summary.trained_report = out_dir / "evaluate"
    write_report(summary.trained, summary.trained_report)
    return summary
