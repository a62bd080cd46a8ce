"""Training throughput: the bare training step per engine setting, and the Trainer end to end.

Usage: python benchmarks/train_throughput.py [--cases seed@32 fast@4] [--steps 3] [--rounds 3]
                                             [--record]

For each case (a recipe at a batch size) in one process:
- the bare training step: the Trainer's own `_train_step` (targets, forward, loss, backward,
  optimiser, readout) on batches made once, up front, for fp32 eager, bf16 autocast, fp32 +
  channels_last, and bf16 autocast + channels_last;
- the Trainer end to end with the default settings (channels_last, `--amp auto`: one of the
  last two, marked "default here"): `_train_epoch` on fresh synthetic images
  (rendering, pasting, collation, learning-rate schedule and logging included), after a warm-up
  epoch and with the icon render cache filled (a one-off of a few seconds per process).
Variants run interleaved, round after round (`--steps` steps each); medians of the rounds.
Ends with two lines per case: `trainer/step ratio at batch B: R` (end-to-end images/s over the
bare step of the same settings, same run) and `step speed-up over fp32 eager at batch B: S`
(the best step over fp32 eager). --record appends the tables and lines to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch

from bench_common import command_line, report
from onestage.config import make_config
from onestage.engine.device import machine_description
from onestage.engine.trainer import Trainer

STEP_VARIANTS = {
    "fp32 eager": {"amp": "none", "channels_last": False},
    "bf16 autocast": {"amp": "bf16", "channels_last": False},
    "fp32 + channels_last": {"amp": "none", "channels_last": True},
    "bf16 autocast + channels_last": {"amp": "bf16", "channels_last": True},
}
END_TO_END = "Trainer end to end (default settings)"


def make_trainer(recipe: str, batch: int, steps: int, settings: dict) -> Trainer:
    """A Trainer of `recipe` at `batch`, `steps` steps per epoch, no validation, in a temp
    folder."""
    config = make_config(recipe, overrides={"batch": batch, **settings})
    config = dataclasses.replace(
        config, steps=steps, val_every=0, project=tempfile.mkdtemp(), name=recipe
    )
    return Trainer(config)  # which seeds torch with the config's seed


def measure_case(
    recipe: str, batch: int, steps: int, rounds: int
) -> tuple[dict[str, list[float]], str]:
    """images/s per round of every step variant and of the Trainer end to end, and the name of
    the variant the Trainer's default settings are."""
    trainers = {name: make_trainer(recipe, batch, steps, s) for name, s in STEP_VARIANTS.items()}
    end_to_end = make_trainer(recipe, batch, steps, {})
    end_to_end.train_set.generator.render_icons()
    batches = list(end_to_end.loader)  # one epoch: `steps` batches
    end_to_end._train_epoch(0)  # warm-up: allocator, first-call costs
    for trainer in trainers.values():
        trainer._train_step(*batches[0])
    rates: dict[str, list[float]] = {name: [] for name in [*trainers, END_TO_END]}
    for round_index in range(1, rounds + 1):
        for name, trainer in trainers.items():
            began = time.perf_counter()
            for images, boxes_xyxy, class_ids in batches:
                trainer._train_step(images, boxes_xyxy, class_ids)
            rates[name].append(batch * steps / (time.perf_counter() - began))
        rates[END_TO_END].append(end_to_end._train_epoch(round_index)["images_per_s"])
    default = "bf16 autocast" if end_to_end.amp_dtype == torch.bfloat16 else "fp32"
    return rates, f"{default} + channels_last"


def rate_lines(title: str, rates: dict[str, list[float]], default: str) -> list[str]:
    """A Markdown table of the median images/s of each variant and its ratio to fp32 eager."""
    base = statistics.median(rates["fp32 eager"])
    lines = [f"| {title} | images/s median | range | vs fp32 eager |", "|---|---|---|---|"]
    for name, values in rates.items():
        median, spread = statistics.median(values), f"{min(values):.1f}-{max(values):.1f}"
        label = f"{name} (default here)" if name == default else name
        lines.append(f"| {label} | {median:.1f} | {spread} | {median / base:.2f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=["seed@32", "fast@4"], help="RECIPE@BATCH")
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()

    lines: list[str] = []
    summary: list[str] = []
    for case in args.cases:
        recipe, batch = case.split("@")
        rates, default = measure_case(recipe, int(batch), args.steps, args.rounds)
        lines += [*rate_lines(f"`{recipe}` recipe, batch {batch}", rates, default), ""]
        medians = {name: statistics.median(values) for name, values in rates.items()}
        steps_only = {name: medians[name] for name in STEP_VARIANTS}
        summary += [
            f"trainer/step ratio at batch {batch}: {medians[END_TO_END] / medians[default]:.2f}",
            f"step speed-up over fp32 eager at batch {batch}: "
            f"{max(steps_only.values()) / medians['fp32 eager']:.2f}",
        ]
        print("\n".join(lines[-len(rates) - 3 :]), flush=True)
    command = command_line()
    header = (
        f"\n`{command}`: {args.steps} steps x {args.rounds} interleaved rounds; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; {machine_description()}.\n\n"
    )
    report(header, [*lines, *summary], args.record)


if __name__ == "__main__":
    main()
