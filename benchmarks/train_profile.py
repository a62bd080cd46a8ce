"""Where the Trainer's time goes: milliseconds per training step, phase by phase.

Usage: python benchmarks/train_profile.py [--steps 4] [--epochs 3] [--cases seed@32 fast@4 ...]
                                          [--set KEY=VALUE ...] [--data DIR] [--record]

Each case is a recipe at a batch size, trained by the real Trainer on fresh synthetic images,
or on a dataset folder's train split with `--data` (augmented as `--set` asks: mosaic=1.0 ...)
(the recipe's engine settings, validation and checkpoints as the recipe has them). After a
warm-up epoch, `--epochs` epochs of `--steps` steps are timed with
`onestage.engine.phases.PhaseTimer`: data (the loader's next batch: rendering, pasting,
collation; with `--data`, reading and augmenting), input (to float, channels_last, flips),
forward, loss (target assignment and loss), backward, optimizer, readout (the loss values to
Python), logging; validation and checkpoint are timed once and charged per step as the recipe
spends them (every `val_every` epochs of `steps` steps; every epoch). Each phase's figure is
its median over the timed epochs. The cases cover the three head types: separate SSD heads
(`seed`, `fast`), one shared SSD head over an FPN (`seed-fpn`), the decoupled anchor-free head
with TAL (`csp-n`).
The icon render cache is filled first (steady state; a long run fills it in its first few
thousand images).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch

from bench_common import command_line, report
from onestage.config import make_config, parse_override
from onestage.engine.device import machine_description
from onestage.engine.phases import STEP_PHASES, PhaseTimer
from onestage.engine.trainer import Trainer

MODEL_PHASES = ("forward", "loss", "backward", "optimizer")
CASES = ("seed@32", "fast@4", "seed-fpn@4", "csp-n@4")


def profile_case(recipe: str, batch: int, steps: int, epochs: int, extra: dict) -> dict[str, float]:
    """Milliseconds per step of each phase of `recipe` at `batch` (see the module doc)."""
    recipe_config = make_config(recipe, overrides={"batch": batch, **extra})
    config = dataclasses.replace(
        recipe_config, steps=steps, project=tempfile.mkdtemp(), name=recipe, val_images=50
    )
    trainer = Trainer(config)
    if config.data is None:
        trainer.train_set.generator.render_icons()  # steady state: every icon size rendered
    trainer._train_epoch(0)  # warm-up: allocator, first calls
    timer = PhaseTimer(trainer.device)
    trainer.phases = timer
    rounds: dict[str, list[float]] = {name: [] for name in (*STEP_PHASES, "other")}
    for epoch in range(1, epochs + 1):
        timer.reset()
        began = time.perf_counter()
        trainer._train_epoch(epoch)
        wall_ms = (time.perf_counter() - began) * 1e3 / steps
        for name in STEP_PHASES:
            rounds[name].append(timer.seconds.get(name, 0.0) * 1e3 / steps)
        rounds["other"].append(wall_ms - sum(rounds[name][-1] for name in STEP_PHASES))
    per_step = {name: statistics.median(values) for name, values in rounds.items()}

    timer.reset()
    with timer("validation"):
        trainer._validate(config.val_every or 1)
    with timer("checkpoint"):
        row = {"epoch": 2, "train/loss": 1.0}
        trainer.history.append(row)
        trainer._save_epoch(2, row, improved=True)
    recipe_steps = recipe_config.steps or steps
    synthetic_share = recipe_config.val_images / config.val_images if config.data is None else 1
    validation_ms = timer.seconds["validation"] * 1e3 * synthetic_share
    every = recipe_config.val_every * recipe_steps
    per_step["validation"] = validation_ms / every if every else 0.0
    per_step["checkpoint"] = timer.seconds["checkpoint"] * 1e3 / recipe_steps
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), help="RECIPE@BATCH")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (median per phase)")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides KEY=VALUE")
    parser.add_argument("--data", help="dataset folder to train on (default: synthetic)")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    extra = dict(parse_override(text) for text in args.set)
    if args.data:
        extra["data"] = args.data
    profiles = {}
    for case in args.cases:
        recipe, batch = case.split("@")
        profiles[case] = profile_case(recipe, int(batch), args.steps, args.epochs, extra)
        print(f"{case}: {sum(profiles[case].values()):.1f} ms per step", flush=True)

    lines = [
        "| ms per step | " + " | ".join(profiles) + " |",
        "|---|" + "---|" * len(profiles),
    ]
    for phase in (*STEP_PHASES, "other", "validation", "checkpoint"):
        cells = []
        for profile in profiles.values():
            share = profile[phase] / sum(profile.values())
            cells.append(f"{profile[phase]:.1f} ({share:.0%})")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    totals = [sum(profile.values()) for profile in profiles.values()]
    lines.append("| **total** | " + " | ".join(f"**{total:.1f}**" for total in totals) + " |")
    model_ms = [sum(p[name] for name in MODEL_PHASES) for p in profiles.values()]
    lines.append(
        "| model share (forward, loss, backward, optimizer) | "
        + " | ".join(f"{m / t:.0%}" for m, t in zip(model_ms, totals, strict=True))
        + " |"
    )
    command = command_line()
    header = (
        f"\n`{command}`: median per phase of {args.epochs} epochs of {args.steps} steps after a "
        f"warm-up epoch; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; {machine_description()}.\n\n"
    )
    report(header, lines, args.record)


if __name__ == "__main__":
    main()
