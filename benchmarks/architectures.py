"""Every built-in architecture on the seed's task with the same budget, ranked on one leaderboard.

Usage:
  python benchmarks/architectures.py [--images 12000] [--models seed seed-fpn ...]
                                     [--set KEY=VALUE ...] [--record]
  python benchmarks/architectures.py --forward-only [--rounds 20]

Trains each model with its recipe (`fast` for `seed`; all share `fast`'s optimiser and schedule;
validation off: every model gets the same number of training images and nothing else) on the seed's
data distribution (the seed's icons and photos from ../shared/seed_animals when that folder exists,
else OpenMoji + procedural backgrounds), then ranks the final weights with
`onestage.engine.compare` on the fixed 500-image test set of `benchmarks/seed_animals.py` (4
objects per image, the "test" stream): VOC mAP@0.5, COCO mAP@[.5:.95], parameters, GFLOPs, batch-1
CPU latency interleaved over the models, training images, wall time and images/s. Writes
runs/architectures/<images>/leaderboard.* and prints the Markdown table; --record appends it to
BENCHMARKS.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench_common import append_to_benchmarks, command_line, epochs_for
from onestage.checkpoint import load_weights
from onestage.config import (
    TrainConfig,
    architecture_recipe,
    load_yaml,
    make_config,
    parse_override,
)
from onestage.engine.compare import compare, write_leaderboard
from onestage.engine.device import machine_description
from onestage.engine.evaluator import synthetic_eval_set
from onestage.engine.run_folder import read_results
from onestage.engine.trainer import train
from onestage.models import build_model, model_names
from onestage.models.fuse import fused_for_inference

STEPS_PER_EPOCH = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12_000, help="training images per model")
    parser.add_argument("--models", nargs="*", default=None, help="default: every built-in")
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--seed-assets", type=Path, default=Path("../shared/seed_animals"))
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides KEY=VALUE")
    parser.add_argument("--rounds", type=int, default=20, help="latency rounds per model")
    parser.add_argument("--out", type=Path, default=Path("runs/architectures"))
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep a model's finished run in the output folder when its config is the same",
    )
    parser.add_argument(
        "--forward-only",
        action="store_true",
        help="only time the batch-1 fp32 forward of every built-in (untrained), interleaved",
    )
    args = parser.parse_args()
    if args.forward_only:
        forward_latency(args.models or model_names(), args.rounds)
        return

    models = args.models or [name for name in model_names() if name != "seed-reference"]
    extra = dict(parse_override(text) for text in args.set)
    steps = extra.pop("steps", STEPS_PER_EPOCH)
    epochs = epochs_for(args.images, make_config("fast", overrides=extra).batch, steps)
    # Resolved: the run's config (compared by --reuse) names the same folder however it is given.
    assets = args.seed_assets.resolve() if args.seed_assets.is_dir() else None
    out = args.out / str(args.images)
    weights = []
    for model in models:
        config = make_config(
            architecture_recipe(model),
            overrides={
                "model": model,
                "epochs": epochs,
                "steps": steps,
                "val_every": 0,
                "project": str(out / "runs"),
                "name": model,
                "exist_ok": True,
                "synthetic_icons": str(assets / "icons") if assets else None,
                "synthetic_backgrounds": str(assets / "backgrounds") if assets else None,
                **extra,
            },
        )
        run_dir = out / "runs" / model
        if args.reuse and _finished(run_dir, config):
            print(f"reusing {run_dir} (same config, finished)", flush=True)
            weights.append(run_dir / "weights" / "last.safetensors")
            continue
        print(f"training {model} on {args.images:,} images", flush=True)
        result = train(config)
        weights.append(result.run_dir / "weights" / "last.safetensors")

    eval_set = synthetic_eval_set(
        _class_names(weights[0]),
        args.test_images,
        objects=(4, 4),
        icons=assets / "icons" if assets else None,
        backgrounds=assets / "backgrounds" if assets else None,
    )
    data = "seed icons+backgrounds" if assets else "OpenMoji+procedural"
    test_set = f"{args.test_images} fixed test images, 4 objects, {data}"
    rows = compare(weights, eval_set, rounds=args.rounds)
    write_leaderboard(rows, out, test_set)
    table = (out / "leaderboard.md").read_text()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    command = command_line()
    header = (
        f"\n`{command}`: {args.images:,} training images per model (its recipe; `fast` for "
        f"`seed`; {data}), "
        f"trained on {device}; {machine_description()}.\n\n"
    )
    print(header + table)
    if args.record:
        append_to_benchmarks(header + table)


def forward_latency(models: list[str], rounds: int) -> None:
    """Median fp32 eager forward ms of each model on one 320x320 image, as built and with its
    BatchNorm folded for inference (as `Detector.load` predicts), every variant visited in turn
    in every round (3 warm-up rounds), and each one's ratio to `seed`'s."""
    networks = {}
    for name in models:
        network = build_model(name, num_classes=15).eval()
        networks[name] = network
        networks[f"{name} (fused)"] = fused_for_inference(network)
    image = torch.rand(1, 3, 320, 320)
    times: dict[str, list[float]] = {name: [] for name in networks}
    with torch.inference_mode():
        for round_index in range(3 + rounds):
            for name, network in networks.items():
                began = time.perf_counter()
                network(image)
                if round_index >= 3:
                    times[name].append((time.perf_counter() - began) * 1e3)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{machine_description()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| model | forward ms (median) | x seed | x unfused |\n|---|---|---|---|")
    for name in models:
        unfused, fused = medians[name], medians[f"{name} (fused)"]
        for label, ms in ((name, unfused), (f"{name} (fused)", fused)):
            ratio = f"{ms / medians['seed']:.2f}" if "seed" in medians else ""
            print(f"| {label} | {ms:.2f} | {ratio} | {ms / unfused:.2f} |")


def _finished(run_dir: Path, config: TrainConfig) -> bool:
    """Whether `run_dir` holds a run of exactly `config` that trained all its epochs."""
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "results.csv").is_file():
        return False
    try:  # keys added to TrainConfig since the run take their defaults
        same = TrainConfig(**load_yaml(run_dir / "config.yaml")) == config
    except TypeError:  # a key TrainConfig no longer has
        return False
    return same and len(read_results(run_dir / "results.csv")) == config.epochs


def _class_names(weights: Path) -> tuple[str, ...]:
    _, metadata = load_weights(weights)
    return tuple(metadata["class_names"])


if __name__ == "__main__":
    main()
