"""CPU inference on every backend: batch-1 latency, cold start, batch-32 throughput and mAP.

Usage:
  python benchmarks/inference_latency.py [--weights seed_animals] [--rounds 5] [--calls 20]
      [--record]

Exports the weights (f32 ONNX, int8 ONNX, f32 / bf16 / int8 OpenVINO IR; int8 quantised by
NNCF, calibrated on 200 synthetic images; and, but for an NMS-free head, the whole-graph f32
ONNX and f32 / bf16 IR, `--nms`, whose decoding and NMS run in the runtime) into a temporary
folder, then in one process,
visiting
every variant in turn in each round for a block of calls: batch-1 forward alone and end to end
(a 320x320 uint8 image array in, detections out: fitting, forward, decoding, NMS), medians;
batch-32 throughput end to end;
mAP@0.5 (VOC) and mAP@[.5:.95] (COCO) on the fixed 500-image test set of the seed benchmark (the
seed's icons and photos from ../shared/seed_animals when present, else OpenMoji + procedural).
Cold start (Detector.load -> first detection, onestage already imported) is timed in a fresh
process per variant, median of 3. A whole-graph variant's forward column is its plain twin's
forward (the same network on the same runtime and precision): its own forward holds its NMS.
The variant `onestage export` gives by default on this CPU is marked. Prints a Markdown table;
--record appends it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_common import command_line, report, seed_test_set
from onestage.engine.device import machine_description
from onestage.engine.evaluator import EvalSet, evaluate_detector
from onestage.engine.predictor import Detector
from onestage.export.exporter import SUFFIXES, default_target, export_weights
from onestage.runtime import EXPORTED_SUFFIXES
from onestage.runtime.openvino_backend import cpu_supports_bf16

COLD_START = """
import sys, time
import numpy as np
from onestage.engine.predictor import Detector
image = np.load(sys.argv[1])
began = time.perf_counter()
detector = Detector.load(sys.argv[2], "cpu")
{prepare}
detector.detect([image])
print(time.perf_counter() - began)
"""

WARMUP_CALLS = 3
WHOLE_GRAPH = " whole graph"  # the name suffix of a variant exported with --nms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="seed_animals")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per variant per round")
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--seed-assets", type=Path, default=Path("../shared/seed_animals"))
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()

    reference = Detector.load(args.weights, "cpu")
    eval_set, data = seed_test_set(reference.class_names, args.test_images, args.seed_assets)
    image = np.ascontiguousarray(eval_set.load_image(0))
    with tempfile.TemporaryDirectory() as folder:
        files = export_all(args.weights, Path(folder), whole_graph=not reference.coding.one_to_one)
        variants = load_variants(args.weights, files)
        latency = batch1_latency(variants, image, args.rounds, args.calls)
        throughput = batch32_throughput(variants, eval_set)
        scores = {name: evaluate_detector(d, eval_set) for name, d in variants.items()}
        cold = {name: cold_start(args.weights, files, name, image, folder) for name in variants}

    torch_forward = latency["torch fp32 eager"][0]
    for name in variants:
        if name.endswith(WHOLE_GRAPH):
            twin = name.removesuffix(WHOLE_GRAPH)
            latency[name] = (latency[twin][0], latency[name][1])
    lines = [
        "| backend | forward ms | end to end ms | end to end / forward | x torch fp32 forward "
        "| cold start s | batch-32 images/s | mAP@0.5 | mAP@[.5:.95] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt, precision = default_target()
    default = f"{EXPORTED_SUFFIXES[SUFFIXES[fmt]]} {precision}"  # the variant's name
    for name in variants:
        forward, end_to_end = latency[name]
        result = scores[name]
        shown = f"{name} (the default export)" if name == default else name
        lines.append(
            f"| {shown} | {forward:.2f} | {end_to_end:.2f} | {end_to_end / forward:.2f} | "
            f"{end_to_end / torch_forward:.2f} | {cold[name]:.2f} | {throughput[name]:.0f} | "
            f"{result.voc.map:.4f} | {result.coco.ap:.4f} |"
        )
    command = command_line()
    header = (
        f"\n`{command}`: weights {args.weights}; {args.test_images} test images ({data}); "
        f"{machine_description()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; batch 1: medians of {args.rounds} rounds x {args.calls} "
        "calls, each round visiting every variant in turn.\n\n"
    )
    report(header, lines, args.record)


def export_all(weights: str, folder: Path, whole_graph: bool = True) -> dict[str, Path]:
    """Every exported variant of `weights` in `folder`, by variant name (`whole_graph`: the
    `--nms` ones too; an NMS-free head has no NMS to take into the graph)."""
    plan = {
        "onnxruntime f32": ("onnx", "f32", "model.onnx"),
        "onnxruntime int8": ("onnx", "int8", "model_int8.onnx"),
        "openvino f32": ("openvino", "f32", "model.xml"),
        "openvino int8": ("openvino", "int8", "model_int8.xml"),
    }
    if cpu_supports_bf16():
        plan["openvino bf16"] = ("openvino", "bf16", "model_bf16.xml")
    for name in ("onnxruntime f32", "openvino f32", "openvino bf16"):
        if whole_graph and name in plan:
            fmt, precision, filename = plan[name]
            plan[name + WHOLE_GRAPH] = (fmt, precision, filename.replace(".", "_nms."))
    files = {}
    for name, (fmt, precision, filename) in plan.items():
        nms = name.endswith(WHOLE_GRAPH)
        result = export_weights(weights, fmt, precision, folder / filename, nms=nms)
        print(f"{name}: {result.path.name}, max raw difference {result.max_abs_diff:.2g}")
        files[name] = result.path
    return files


def load_variants(weights: str, files: dict[str, Path]) -> dict[str, Detector]:
    """Every variant loaded, warmed up (torch.compile compiles on its first image)."""
    variants = {
        "torch fp32 eager": Detector.load(weights, "cpu"),
        "torch compile (bf16)": Detector.load(weights, "cpu").accelerate(),
    }
    variants.update({name: Detector.load(path) for name, path in sorted(files.items())})
    return variants


def batch1_latency(
    variants: dict[str, Detector], image: np.ndarray, rounds: int, calls: int
) -> dict[str, tuple[float, float]]:
    """Median (forward ms, end-to-end ms) per variant. Each round visits every variant in turn
    for a block of `calls` timed calls after WARMUP_CALLS untimed ones: blocks, so that the
    thread pools of the variant run before have gone quiet (as in a process serving one
    model), rounds, so that drift in the machine's speed reaches every variant alike."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, detector in variants.items():
            for call in range(WARMUP_CALLS + calls):
                timing: dict[str, float] = {}
                began = time.perf_counter()
                detector.detect([image], timing=timing)
                end_to_end = time.perf_counter() - began
                if call >= WARMUP_CALLS:
                    samples[name].append((timing["forward"] * 1e3, end_to_end * 1e3))
    return {
        name: (statistics.median(f for f, _ in rows), statistics.median(e for _, e in rows))
        for name, rows in samples.items()
    }


def batch32_throughput(
    variants: dict[str, Detector], eval_set: EvalSet, rounds: int = 3
) -> dict[str, float]:
    """Images per second end to end on batches of 32 images, median of `rounds`."""
    images = [eval_set.load_image(index) for index in range(32)]
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(1 + rounds):
        for name, detector in variants.items():
            began = time.perf_counter()
            detector.detect(images)
            if round_index >= 1:
                rates[name].append(len(images) / (time.perf_counter() - began))
    return {name: statistics.median(values) for name, values in rates.items()}


def cold_start(
    weights: str, files: dict[str, Path], name: str, image: np.ndarray, folder: str, runs: int = 3
) -> float:
    """Median seconds from Detector.load to the first detection in a fresh process."""
    image_file = Path(folder) / "image.npy"
    np.save(image_file, image)
    prepare = "detector.accelerate()" if "compile" in name else ""
    source = str(files.get(name, weights))
    command = [sys.executable, "-c", COLD_START.format(prepare=prepare), str(image_file), source]
    times = []
    for _ in range(runs):
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


if __name__ == "__main__":
    main()
