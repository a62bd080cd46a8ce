"""The shipped `animals` model: one detector that holds up on both icon sets and both backgrounds.

Usage:
  python benchmarks/animals.py --recipe csp-n --images 40000 [--ship] [--record]

Trains the recipe's architecture on a mixed synthetic distribution (`synthetic_mix`: each image
draws its icons from the seed's folder or OpenMoji and its background from the seed's photos or
the procedural textures) with 1-8 objects per image, then scores the final weights on three fixed
500-image test sets: the seed's distribution with 4 objects (the issue-5 test set), the seed's
with 1-8 objects, and OpenMoji + procedural backgrounds with 4 objects (the demo's test set).
--ship writes the weights as fp16 to src/onestage/weights/animals.safetensors (the default of
`onestage predict`) and scores that file; --record appends the rows to BENCHMARKS.md. Needs the
seed's icons and photos (../shared/seed_animals, or --seed-assets).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench_common import append_to_benchmarks, command_line, epochs_for
from onestage.checkpoint import save_weights
from onestage.config import make_config, parse_override
from onestage.engine.device import machine_description
from onestage.engine.evaluator import evaluate_detector, synthetic_eval_set
from onestage.engine.predictor import WEIGHTS_DIR, Detector
from onestage.engine.trainer import train

STEPS_PER_EPOCH = 50
SHIPPED_NAME = "animals"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="csp-n")
    parser.add_argument("--images", type=int, default=40_000, help="training images seen")
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--seed-assets", type=Path, default=Path("../shared/seed_animals"))
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides KEY=VALUE")
    parser.add_argument("--ship", action="store_true", help="write the shipped fp16 weights")
    parser.add_argument("--record", action="store_true", help="append the rows to BENCHMARKS.md")
    args = parser.parse_args()
    icons, photos = args.seed_assets / "icons", args.seed_assets / "backgrounds"
    if not (icons.is_dir() and photos.is_dir()):
        raise SystemExit(f"{args.seed_assets}: needs the seed's icons/ and backgrounds/ folders")

    extra = dict(parse_override(text) for text in args.set)
    steps = extra.pop("steps", STEPS_PER_EPOCH)
    epochs = epochs_for(args.images, make_config(args.recipe, overrides=extra).batch, steps)
    config = make_config(
        args.recipe,
        overrides={
            "epochs": epochs,
            "steps": steps,
            "val_every": 0,
            "synthetic_icons": str(icons),
            "synthetic_backgrounds": str(photos),
            "synthetic_mix": True,
            "synthetic_objects": "1-8",
            "project": "runs/bench",
            "name": f"animals_{args.recipe}_{args.images}",
            "exist_ok": True,
            **extra,
        },
    )
    began = time.perf_counter()
    result = train(config)
    minutes = (time.perf_counter() - began) / 60
    weights = result.run_dir / "weights" / "last.safetensors"
    if args.ship:
        detector = Detector.load(weights, device="cpu")
        metadata = {
            **detector.metadata,
            "recipe": args.recipe,
            "training_images": args.images,
            "training_data": "mixed: seed icons or OpenMoji, seed photos or procedural, 1-8",
            "command": command_line(),
        }
        weights = WEIGHTS_DIR / f"{SHIPPED_NAME}.safetensors"
        save_weights(weights, detector.model, metadata, half=True)
        print(f"shipped {weights} ({weights.stat().st_size / 2**20:.1f} MiB)")

    detector = Detector.load(weights, device="cpu")
    test_sets = {
        "seed icons+photos, 4 objects": dict(objects=(4, 4), icons=icons, backgrounds=photos),
        "seed icons+photos, 1-8 objects": dict(objects=(1, 8), icons=icons, backgrounds=photos),
        "OpenMoji+procedural, 4 objects": dict(objects=(4, 4)),
    }
    command = command_line()
    lines = [
        f"\n`{command}`: {config.model} ({args.recipe} recipe), {args.images:,} mixed training "
        f"images in {minutes:.1f} min; {machine_description()}, "
        f"torch {torch.__version__}; weights `{weights.name}`.\n",
        f"| test set ({args.test_images} images) | VOC mAP@0.5 | COCO mAP@[.5:.95] |",
        "|---|---|---|",
    ]
    for name, options in test_sets.items():
        eval_set = synthetic_eval_set(detector.class_names, args.test_images, **options)
        scores = evaluate_detector(detector, eval_set)
        lines.append(f"| {name} | {scores.voc.map:.4f} | {scores.coco.ap:.4f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.record:
        append_to_benchmarks(table)


if __name__ == "__main__":
    main()
