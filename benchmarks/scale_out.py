"""Validation across ranks and sharded prediction: one process against two under torchrun.

Usage:
  python benchmarks/scale_out.py [--images 240] [--repeats 3] [--out runs/scale_out] [--record]

Validation: the shipped `seed_animals` validates a fixed synthetic set of --images images
(`engine.validation.validate`), in one process (2 threads, then 1: one core's work) and under
torchrun in two (1 thread each), timed inside the processes (rank 0's, merging and scoring
included). Prediction: `onestage predict FOLDER` on --images synthetic
PNG files with an ONNX export of `seed_animals`, one process against `torchrun --nproc-per-node
2`, timed from launch to exit (process starts included). On two cores two processes share the
cores one process used: the ratio, not a speed-up, is the figure. Medians of --repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import command_line, report
from onestage.data.images import save_image
from onestage.engine.device import machine_description
from onestage.engine.evaluator import synthetic_eval_set
from onestage.engine.predictor import Detector
from onestage.export.exporter import export_weights

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr",
            "127.0.0.1", "--nproc-per-node", "2"]  # fmt: skip
VALIDATION_RUNS = (  # name, launcher, threads per process
    ("1 process, 2 threads", [sys.executable], "2"),
    ("1 process, 1 thread", [sys.executable], "1"),
    ("2 processes (torchrun), 1 thread each", TORCHRUN, "1"),
)
VALIDATION_WORKER = """
import json, sys, time, torch
from onestage.engine.distributed import init_distributed, shutdown
from onestage.engine.evaluator import synthetic_eval_set
from onestage.engine.predictor import Detector
from onestage.engine.validation import validate
torch.set_num_threads(int(sys.argv[3]))
context = init_distributed("cpu")
detector = Detector.load("seed_animals", "cpu")
val_set = synthetic_eval_set(detector.class_names, int(sys.argv[2]))
validate(detector, val_set, 1, None, context)  # warm-up
began = time.perf_counter()
row = validate(detector, val_set, 1, None, context)
if context.is_main:
    out = {"seconds": time.perf_counter() - began, **row}
    open(sys.argv[1], "w").write(json.dumps(out))
shutdown(context)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/scale_out"))
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    worker = args.out / "validation_worker.py"
    worker.write_text(VALIDATION_WORKER)
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}

    validation: dict[str, list[dict]] = {name: [] for name, _, _ in VALIDATION_RUNS}
    for repeat in range(args.repeats):
        for name, launcher, threads in VALIDATION_RUNS:
            result = args.out / f"validation_{repeat}.json"
            command = [*launcher, str(worker), str(result), str(args.images), threads]
            subprocess.run(command, check=True, capture_output=True, env=env)
            validation[name].append(json.loads(result.read_text()))

    folder = args.out / "images"
    folder.mkdir(exist_ok=True)
    scenes = synthetic_eval_set(Detector.load("seed_animals", "cpu").class_names, args.images)
    for index in range(args.images):
        save_image(scenes.load_image(index), folder / f"{index:05d}.png")
    model = export_weights("seed_animals", "onnx", "f32", args.out / "seed_animals.onnx").path
    prediction: dict[str, list[float]] = {"1 process": [], "2 processes": []}
    for repeat in range(args.repeats):
        for name, launcher in (
            ("1 process", [sys.executable]),
            ("2 processes", TORCHRUN),
        ):
            out = args.out / f"predict_{name[0]}_{repeat}"
            command = [*launcher, "-m", "onestage", "predict", str(folder), "--weights",
                       str(model), "--out", str(out)]  # fmt: skip
            began = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            prediction[name].append(time.perf_counter() - began)
    outputs = [(args.out / f"predict_{n}_0" / "predictions.json").read_text() for n in "12"]

    lines = [
        "| validation | seconds | mAP@[.5:.95] |",
        "|---|---|---|",
        *(
            f"| {name} | {statistics.median(row['seconds'] for row in rows):.2f} | "
            f"{rows[0]['val/mAP50-95']:.4f} |"
            for name, rows in validation.items()
        ),
        "",
        "| prediction | seconds, launch to exit | images/s |",
        "|---|---|---|",
        *(
            f"| {name} | {statistics.median(walls):.1f} | "
            f"{args.images / statistics.median(walls):.1f} |"
            for name, walls in prediction.items()
        ),
    ]
    scores = [{k: v for k, v in rows[0].items() if k != "seconds"} for rows in validation.values()]
    same_scores = all(score == scores[0] for score in scores)
    lines.append(
        f"\nThe two runs' predictions.json identical: {outputs[0] == outputs[1]}; validation "
        f"numbers identical: {same_scores}."
    )
    header = (
        f"\n`{command_line()}`: seed_animals; {args.images} synthetic images; "
        f"{machine_description()}; medians of {args.repeats}.\n\n"
    )
    report(header, lines, args.record)


if __name__ == "__main__":
    main()
