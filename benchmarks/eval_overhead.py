"""Evaluation overhead beside the model forward, per 1,000 images with 4 objects each.

Usage: python benchmarks/eval_overhead.py --weights W [--images 1000] [--runs 3]
Runs `evaluate_detector` (conf 0.001, NMS IoU 0.5, 100 detections per image: the evaluation
defaults) on a fixed synthetic test set kept in memory and splits the time into image fitting,
model forward, post-processing (decode, top-k, batched NMS) and metrics (VOC AP, COCO via
faster-coco-eval, confusion matrix). Prints the median of the runs per component.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from bench_common import seed_test_set
from onestage.engine.evaluator import evaluate_detector
from onestage.engine.predictor import Detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed-assets", type=Path, default=Path("../shared/seed_animals"))
    args = parser.parse_args()
    detector = Detector.load(args.weights, device="cpu")
    detector.forward.amp_dtype = torch.bfloat16
    detector.forward.channels_last = True
    detector.forward.inference_model.to(memory_format=torch.channels_last)
    eval_set, _ = seed_test_set(detector.class_names, args.images, args.seed_assets)
    runs = [evaluate_detector(detector, eval_set).seconds for _ in range(args.runs)]
    scale = 1000 / args.images
    median = {key: statistics.median(run[key] for run in runs) * scale for key in runs[0]}
    overhead = median["postprocess"] + median["metrics"]
    detections = sum(len(d.scores) for d in evaluate_detector(detector, eval_set).detections)
    print(
        f"per 1,000 images ({args.images} images, {detections / args.images:.1f} detections "
        f"per image, median of {args.runs} runs):"
    )
    print("| component | seconds per 1,000 images |")
    print("|---|---|")
    for key, value in median.items():
        print(f"| {key} | {value:.2f} |")
    print(f"| **overhead beside the forward (postprocess + metrics)** | **{overhead:.2f}** |")


if __name__ == "__main__":
    main()
