"""COCO scoring backends side by side: pycocotools vs faster-coco-eval on the same detections.

Usage: python benchmarks/coco_backends.py [--images 1000] [--runs 3]
Random ground truth (4 boxes per image, 15 classes) and noisy detections (10 per image); prints
the median seconds of `evaluate_coco` per backend and whether the 12 numbers are identical.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from onestage.detections import ImageDetections
from onestage.metrics import ImageGroundTruth
from onestage.metrics.coco import evaluate_coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    truths, found = [], []
    for _ in range(args.images):
        corner = rng.uniform(0, 200, (4, 2))
        boxes = np.hstack([corner, corner + rng.uniform(30, 120, (4, 2))])
        ids = rng.integers(0, 15, 4)
        truths.append(ImageGroundTruth(boxes, ids, np.zeros(4, dtype=bool)))
        picks = rng.integers(0, 4, 10)
        noisy = boxes[picks] + rng.normal(0, 6, (10, 4))
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 1)
        labels = np.where(rng.random(10) < 0.9, ids[picks], rng.integers(0, 15, 10))
        found.append(ImageDetections(noisy, rng.random(10), labels))
    sizes = [(320, 320)] * args.images
    names = [f"c{i}" for i in range(15)]
    results, seconds = {}, {}
    for backend in ("pycocotools", "faster"):
        timings = []
        for _ in range(args.runs):
            began = time.perf_counter()
            results[backend] = evaluate_coco(truths, found, sizes, names, backend=backend)
            timings.append(time.perf_counter() - began)
        seconds[backend] = statistics.median(timings)
    identical = results["pycocotools"].stats == results["faster"].stats
    print(f"{args.images} images, 4 objects and 10 detections each, median of {args.runs} runs:")
    for backend, value in seconds.items():
        print(f"| {backend} | {value:.2f} s | AP {results[backend].ap:.4f} |")
    print(f"all 12 numbers identical: {identical}")


if __name__ == "__main__":
    main()
