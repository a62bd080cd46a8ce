"""The seed's own task: train the `seed` architecture, score it on a fixed test set, time it.

Usage:
  python benchmarks/seed_animals.py --recipe fast --images 12000 [--record] [--ship]

Trains on the seed's data distribution (icons and backgrounds from ../shared/seed_animals when
that folder exists, else the built-in OpenMoji + procedural generator), evaluates the best
weights on 500 fixed test images with 4 objects each (VOC mAP@0.5 all-point, COCO AP@[.5:.95]),
times batch-1 inference end to end, and prints one Markdown row (appended to BENCHMARKS.md with
--record). --ship also writes the weights as fp16 to src/onestage/weights/seed_animals.safetensors
and scores that file.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench_common import append_to_benchmarks, command_line, epochs_for
from onestage.checkpoint import load_model_weights, save_weights
from onestage.config import make_config, parse_override
from onestage.engine.device import machine_description
from onestage.engine.evaluator import evaluate_detector, synthetic_eval_set
from onestage.engine.predictor import WEIGHTS_DIR, Detector
from onestage.engine.trainer import train
from onestage.models import build_model

STEPS_PER_EPOCH = 50  # default; --set steps=N changes it (epochs = images / (batch x steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--images", type=int, default=12_000, help="training images seen")
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--seed-assets", type=Path, default=Path("../shared/seed_animals"))
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides KEY=VALUE")
    parser.add_argument("--name", default=None)
    parser.add_argument("--record", action="store_true", help="append the row to BENCHMARKS.md")
    parser.add_argument("--ship", action="store_true", help="write the shipped fp16 weights")
    parser.add_argument(
        "--latency-only", metavar="WEIGHTS", help="only time batch-1 inference of these weights"
    )
    args = parser.parse_args()
    if args.latency_only:
        detector = Detector.load(args.latency_only, device="cpu")
        eval_set = synthetic_eval_set(detector.class_names, 1, objects=(4, 4))
        runs = [batch1_latency_ms(Path(args.latency_only), eval_set) for _ in range(3)]
        print(
            f"batch-1 latency, median of 100 after warm-up, 3 repeats: "
            f"{', '.join(f'{ms:.2f}' for ms in runs)} ms"
        )
        return

    extra = dict(parse_override(text) for text in args.set)
    batch = make_config(args.recipe, overrides=extra).batch
    steps = extra.pop("steps", STEPS_PER_EPOCH)
    epochs = epochs_for(args.images, batch, steps)
    assets = args.seed_assets if args.seed_assets.is_dir() else None
    overrides = {
        "epochs": epochs,
        "steps": steps,
        "project": "runs/bench",
        "name": args.name or f"{args.recipe}_{args.images}",
        "exist_ok": True,
        "synthetic_icons": str(assets / "icons") if assets else None,
        "synthetic_backgrounds": str(assets / "backgrounds") if assets else None,
        **extra,
    }
    config = make_config(args.recipe, overrides=overrides)
    began = time.perf_counter()
    result = train(config)
    train_seconds = time.perf_counter() - began
    rates = [row["images_per_s"] for row in result.history]

    best = result.run_dir / "weights" / "best.safetensors"
    weights = best
    if args.ship:
        weights = WEIGHTS_DIR / "seed_animals.safetensors"
        model = build_model("seed", result.model.num_classes)
        metadata = load_model_weights(model, best, {})
        metadata["recipe"] = args.recipe
        metadata["training_images"] = args.images
        metadata["command"] = shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv])
        save_weights(weights, model, metadata, half=True)
    detector = Detector.load(weights, device="cpu")
    eval_set = synthetic_eval_set(
        detector.class_names,
        args.test_images,
        objects=(4, 4),
        icons=assets / "icons" if assets else None,
        backgrounds=assets / "backgrounds" if assets else None,
    )
    scores = evaluate_detector(detector, eval_set)
    latency = batch1_latency_ms(weights, eval_set)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = "seed icons+backgrounds" if assets else "OpenMoji+procedural"
    command = command_line()
    row = (
        f"| {args.recipe} | {data} | {args.images:,} | "
        f"{scores.voc.map:.4f} ({scores.voc.iou_convention}) | "
        f"{scores.coco.ap:.4f} | {train_seconds / 60:.1f} min | {statistics.median(rates):.1f} | "
        f"{latency:.2f} ms | {peak_mib:,.0f} MiB | {machine_description()} | `{command}` |"
    )
    print(row)
    print(f"weights: {weights}  run: {result.run_dir}")
    if args.record:
        append_to_benchmarks(row)


def batch1_latency_ms(weights: Path, eval_set, runs: int = 100) -> float:
    """Median ms of `Detector.predict` on one 320x320 image: fit, compiled bf16 forward
    (`Detector.accelerate`), decode, NMS (the predict defaults)."""
    detector = Detector.load(weights, device="cpu").accelerate()
    image = np.ascontiguousarray(eval_set.load_image(0))
    for _ in range(10):
        detector.predict(image)
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        detector.predict(image)
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


if __name__ == "__main__":
    main()
