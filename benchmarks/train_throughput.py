"""Training-step throughput of the seed model, fp32 vs bf16 autocast, measured side by side.

Usage: python benchmarks/train_throughput.py [--batch 32] [--steps 5] [--rounds 5]
Part 1: batches generated once, up front, so the figures are the model's training step (targets,
forward, loss, backward, optimiser) alone. Part 2: the real Trainer end to end (fresh synthetic
images every step, data loading included), epoch by epoch. In both, variants run interleaved,
round after round, and the median images/s of the rounds is reported with the ratio to fp32.
Also times anchor matching (build_targets) for a batch of 32 images with 4 objects each.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from onestage.anchors import generate_anchors
from onestage.assign import build_targets
from onestage.data.dataset import SyntheticDataset, collate_detections
from onestage.data.synthetic import SyntheticConfig
from onestage.losses import build_loss
from onestage.models import build_model

VARIANTS = {
    "fp32 eager": {"amp": None, "channels_last": False},
    "bf16 autocast": {"amp": torch.bfloat16, "channels_last": False},
    "bf16 autocast + channels_last": {"amp": torch.bfloat16, "channels_last": True},
}


def make_batches(batch: int, count: int) -> list[tuple[torch.Tensor, ...]]:
    dataset = SyntheticDataset(SyntheticConfig(), length=batch * count)
    return [
        collate_detections([dataset[i] for i in range(k * batch, (k + 1) * batch)])
        for k in range(count)
    ]


class Variant:
    def __init__(self, amp: torch.dtype | None, channels_last: bool) -> None:
        torch.manual_seed(0)
        self.model = build_model("seed", 15)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp = amp
        self.anchors = generate_anchors("seed", self.model.feature_sizes)
        self.loss = build_loss("seed")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)

    def step(self, images: torch.Tensor, boxes: torch.Tensor, ids: torch.Tensor) -> None:
        images = images.float().div_(255.0)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = build_targets(self.anchors, boxes, ids, num_classes=15)
        with torch.autocast("cpu", dtype=self.amp or torch.float32, enabled=self.amp is not None):
            predictions = self.model(images)
        parts = self.loss(
            predictions.float(), targets.class_targets, targets.box_targets, targets.positive
        )
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.optimizer.step()


END_TO_END = {
    "fp32 eager, data in the main process": {"amp": "none", "channels_last": False},
    "bf16 + channels_last, data in the main process": {"amp": "bf16", "channels_last": True},
    "bf16 + channels_last, 1 data worker": {"amp": "bf16", "channels_last": True, "workers": 1},
}


def end_to_end(batch: int, steps: int, rounds: int) -> dict[str, list[float]]:
    """images/s per round of the real Trainer (one epoch of `steps` steps per round)."""
    import tempfile

    from onestage.config import make_config
    from onestage.engine.trainer import Trainer

    project = tempfile.mkdtemp()
    trainers = {
        name: Trainer(
            make_config(
                "fast",
                overrides={
                    "batch": batch,
                    "steps": steps,
                    "val_every": 0,
                    "project": project,
                    "name": f"v{index}",
                    **options,
                },
            )
        )
        for index, (name, options) in enumerate(END_TO_END.items())
    }
    for trainer in trainers.values():  # warm-up epoch: icon render caches, allocator
        trainer._train_epoch(0)
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    for round_index in range(1, rounds + 1):
        for name, trainer in trainers.items():
            rates[name].append(trainer._train_epoch(round_index)["images_per_s"])
    return rates


def print_rates(title: str, rates: dict[str, list[float]]) -> None:
    print(f"| {title} | images/s median | range | vs fp32 |")
    print("|---|---|---|---|")
    base = statistics.median(next(iter(rates.values())))
    for name, values in rates.items():
        median, spread = statistics.median(values), f"{min(values):.1f}-{max(values):.1f}"
        print(f"| {name} | {median:.1f} | {spread} | {median / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    batches = make_batches(args.batch, args.steps)
    variants = {name: Variant(**options) for name, options in VARIANTS.items()}
    for variant in variants.values():  # warm-up: one step each
        variant.step(*batches[0])
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, variant in variants.items():
            began = time.perf_counter()
            for batch in batches:
                variant.step(*batch)
            rates[name].append(args.batch * args.steps / (time.perf_counter() - began))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; batch {args.batch}, {args.steps} steps x "
        f"{args.rounds} interleaved rounds"
    )
    print_rates(f"training step (seed model, batch {args.batch})", rates)
    print()
    print_rates(
        f"Trainer end to end (seed model, batch {args.batch}, {args.steps} steps per round)",
        end_to_end(args.batch, args.steps, args.rounds),
    )

    anchors = generate_anchors("seed", ((20, 20), (10, 10), (5, 5), (3, 3), (1, 1)))
    _, boxes, ids = make_batches(32, 1)[0]
    timings = []
    for _ in range(50):
        began = time.perf_counter()
        build_targets(anchors, boxes, ids, num_classes=15)
        timings.append((time.perf_counter() - began) * 1000)
    spread = f"{min(timings):.2f}-{max(timings):.2f} ms"
    print(
        "\n| anchor matching (build_targets), 32 images x 4 objects, 2140 anchors | "
        f"{statistics.median(timings):.2f} ms median of 50 | {spread} |"
    )


if __name__ == "__main__":
    main()
