"""Synthetic generator throughput on one core: 320x320 images, 4 objects, kept in memory.

Usage: python benchmarks/synthetic_throughput.py [--images 1000] [--runs 5] [--seed-assets DIR]
Prints one Markdown table row per configuration (median of the runs) for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.engine.device import machine_description


def images_per_second(generator: SyntheticGenerator, start: int, count: int) -> float:
    began = time.perf_counter()
    for index in range(start, start + count):
        generator.sample(index)
    return count / (time.perf_counter() - began)


def measure(name: str, config: SyntheticConfig, images: int, runs: int) -> str:
    began = time.perf_counter()
    generator = SyntheticGenerator(config)
    cold = images_per_second(generator, 0, images)
    cold_seconds = time.perf_counter() - began
    warm = [images_per_second(generator, images * (run + 1), images) for run in range(runs)]
    return (
        f"| {name} | {statistics.median(warm):.0f} | {min(warm):.0f}-{max(warm):.0f} "
        f"| {cold:.0f} ({cold_seconds:.1f} s for the first {images}) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed-assets", type=Path, default=Path("../shared/seed_animals"))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(
        f"machine: {machine_description()}, pinned to one core; "
        f"{args.images} images x {args.runs} runs"
    )
    print("| generator (320x320, 4 objects) | images/s median | range | first pass (cold caches) |")
    print("|---|---|---|---|")
    print(measure("OpenMoji + procedural", SyntheticConfig(), args.images, args.runs))
    if args.seed_assets.is_dir():
        config = SyntheticConfig(
            icons=args.seed_assets / "icons", backgrounds=args.seed_assets / "backgrounds"
        )
        print(measure("seed icons + backgrounds", config, args.images, args.runs))


if __name__ == "__main__":
    main()
