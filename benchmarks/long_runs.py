"""Long runs: resident memory over many predictions, served requests and training steps.

Usage:
  python benchmarks/long_runs.py [--weights animals] [--predictions 10000] [--requests 10000]
                                 [--steps 2000] [--parts detector serve train] [--record]

- detector: `--predictions` calls of `Detector.predict`, one image each, cycling through 12
  synthetic scenes of 6 sizes (200x300 to 1024x768), on torch and on ONNX Runtime f32 (the
  default backend of `onestage predict`); this process's resident memory is read every
  hundredth of the calls.
- serve: `onestage serve` (default backend, `--concurrency batch`) answers 8 keep-alive
  clients sending `--requests` POST /predict in all; the server's memory is sampled every
  0.5 s.
- train: `onestage train --recipe fast val_every=1` (the seed architecture, batch 4) for
  `--steps` steps in epochs of 200, validated on 200 images after every epoch (the recipe's own
  `val_every=5` would leave the warm-up without a validation), in a subprocess sampled every
  0.5 s.

Warm-up is the first tenth of each run (for serve: a tenth of `--requests` sent before the
load; for train: the first epoch, up to its complete checkpoint, `weights/last.safetensors`).
Growth = the process's peak resident memory (Linux's VmHWM, which no sample can miss) at the
end of the run minus the same at the end of warm-up: a leak raises the peak; a transient the
warm-up already had (a validation's forward) does not. The slope is a least-squares fit of the
resident memory over the second half of the run, in MB per 1,000 calls or steps. Prints a
Markdown table; --record appends it to BENCHMARKS.md with the machine; --samples writes every
sample to a CSV file.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench_common import command_line, report, rss_mb
from onestage.engine.device import machine_description
from onestage.engine.evaluator import synthetic_eval_set
from onestage.engine.predictor import open_detector

SIZES = [(320, 320), (640, 480), (480, 640), (200, 300), (1024, 768), (512, 288)]
TRAIN_STEPS_PER_EPOCH = 200
Sample = tuple[int, float, float]  # (calls or steps, resident MB, peak resident MB so far)
SAMPLES: list[tuple[str, Sample]] = []  # every run's, for --samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="animals")
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--parts", nargs="*", default=["detector", "serve", "train"])
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument("--samples", type=Path, help="write every run's samples to this CSV")
    args = parser.parse_args()

    lines = [
        "| run | calls or steps | errors | peak at warm-up end MB | peak at end MB | final MB "
        "| growth MB | second-half slope MB/1000 | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if "detector" in args.parts:
        for backend, precision in (("torch", None), ("onnxruntime", "f32")):
            lines.append(detector_run(args.weights, backend, precision, args.predictions))
            print(lines[-1], flush=True)
    if "serve" in args.parts:
        lines.append(serve_run(args.weights, args.requests))
        print(lines[-1], flush=True)
    if "train" in args.parts:
        lines.append(train_run(args.steps))
        print(lines[-1], flush=True)
    if args.samples:
        with args.samples.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["run", "calls_or_steps", "rss_mb", "peak_rss_mb"])
            writer.writerows(
                [run, at, f"{mb:.1f}", f"{peak:.1f}"] for run, (at, mb, peak) in SAMPLES
            )
    header = f"\n`{command_line()}`: weights {args.weights}; {machine_description()}.\n\n"
    report(header, lines, args.record)


def scenes(class_names: tuple[str, ...]) -> list[np.ndarray]:
    """12 synthetic scenes, each resized to one of SIZES (width, height)."""
    images = []
    for seed in range(12):
        image = synthetic_eval_set(class_names, 1, seed=seed).load_image(0)
        size = SIZES[seed % len(SIZES)]
        images.append(np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)))
    return images


def detector_run(weights: str, backend: str, precision: str | None, count: int) -> str:
    """`count` predictions, this process's memory read every hundredth of them."""
    detector = open_detector(weights, "cpu", backend, precision)
    images = scenes(detector.class_names)
    samples: list[Sample] = []
    began = time.perf_counter()
    for index in range(count):
        detector.predict(images[index % len(images)])
        if (index + 1) % max(1, count // 100) == 0:
            samples.append((index + 1, rss_mb(), rss_mb(field="VmHWM")))
    seconds = time.perf_counter() - began
    del detector
    warm_index = last_sample_at(samples, count // 10)
    return table_row(f"Detector.predict, {backend}", count, 0, samples, warm_index, seconds)


def serve_run(weights: str, requests: int) -> str:
    """`requests` POST /predict from 8 clients after a tenth as many warm-up requests."""
    from serve_load import SCENES, load_run, png_bytes

    clients = 8
    load = argparse.Namespace(
        weights=weights,
        clients=clients,
        requests=requests // clients,
        timeout=1800.0,
        warmup=requests // 10,
    )
    bodies = [
        png_bytes(synthetic_eval_set(("cat",), 1, seed=seed).load_image(0))
        for seed in range(SCENES)
    ]
    began = time.perf_counter()
    result = load_run(load, "batch", bodies)
    seconds = time.perf_counter() - began
    sent = len(result["latencies"]) + result["errors"]
    during = result["samples"]
    samples = [(0, result["rss_before"], result["hwm_before"])] + [
        (round(sent * at / during[-1][0]), mb, peak) for at, mb, peak in during
    ]
    return table_row("onestage serve, batch", sent, result["errors"], samples, 0, seconds)


def train_run(steps: int) -> str:
    """`onestage train --recipe fast val_every=1` for `steps` steps, sampled every 0.5 s; a
    step count is read off results.csv (its rows are epochs) at each sample; warm-up ends at
    the first sample after the first checkpoint."""
    epochs = max(1, steps // TRAIN_STEPS_PER_EPOCH)
    with tempfile.TemporaryDirectory() as project:
        command = [
            sys.executable,
            "-m",
            "onestage",
            "train",
            "--recipe",
            "fast",
            "--epochs",
            str(epochs),
            "--steps",
            str(TRAIN_STEPS_PER_EPOCH),
            "--project",
            project,
            "--name",
            "long",
            "val_every=1",
        ]
        began = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        results = Path(project) / "long" / "results.csv"
        first_checkpoint = Path(project) / "long" / "weights" / "last.safetensors"
        samples: list[Sample] = []
        warm_index = None
        while child.poll() is None:
            try:
                done = max(0, len(results.read_text().splitlines()) - 1) if results.exists() else 0
                memory = rss_mb(child.pid), rss_mb(child.pid, "VmHWM")
            except (OSError, SystemExit):  # the child ended between poll and read
                break
            samples.append((done * TRAIN_STEPS_PER_EPOCH, *memory))
            if warm_index is None and first_checkpoint.exists():
                warm_index = len(samples) - 1
            time.sleep(0.5)
        seconds = time.perf_counter() - began
        errors = 0 if child.returncode == 0 else 1
    if warm_index is None:
        raise SystemExit(f"training ended (exit {child.returncode}) before its first checkpoint")
    return table_row(
        "onestage train --recipe fast val_every=1",
        epochs * TRAIN_STEPS_PER_EPOCH,
        errors,
        samples,
        warm_index,
        seconds,
    )


def last_sample_at(samples: list[Sample], warmup: int) -> int:
    """The index of the last sample taken at or before `warmup` calls."""
    return max(i for i, (at, _, _) in enumerate(samples) if at <= warmup)


def table_row(
    name: str,
    count: int,
    errors: int,
    samples: list[Sample],
    warm_index: int,
    seconds: float,
) -> str:
    """One row: the peak resident memory at the end of warm-up (`samples[warm_index]`) and at
    the end, their difference (the growth), the final resident memory and the second half's
    slope."""
    SAMPLES.extend((name, sample) for sample in samples)
    warm_peak, end_peak = samples[warm_index][2], samples[-1][2]
    half = samples[len(samples) // 2 :]
    counts = np.array([at for at, _, _ in half], dtype=float)
    resident = [mb for _, mb, _ in half]
    slope = np.polyfit(counts, resident, 1)[0] * 1000 if np.ptp(counts) else 0.0
    return (
        f"| {name} | {count:,} | {errors} | {warm_peak:.0f} | {end_peak:.0f} "
        f"| {samples[-1][1]:.0f} | {end_peak - warm_peak:.1f} | {slope:.2f} | {seconds:.0f} |"
    )


if __name__ == "__main__":
    main()
