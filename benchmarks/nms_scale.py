"""NMS at scale (issue 8, point 5): the old batched NMS against the current one, side by side.

Usage: python benchmarks/nms_scale.py [--runs 7] [--images 16] [--no-memory]
The old version (a private copy below) shifted each class by class x extent and settled one
(B, N, N) matrix by repeated passes; the current one is `onestage.runtime.postprocess.greedy_nms`
(numpy, one image at a time in score order; `current_nms` below gives it the same interface).
1. Exactness: keep decisions that differ from greedy per-class NMS done one box at a time, on
   1-4 px boxes in a 640 px image (50 objects x 8 jittered candidates per image), 80 and 1,000
   classes. The greedy reference tests IoU > 0.5 in float32 exactly as the implementations do,
   and again in float64 (the boxes are the same float32 numbers; only values at the threshold
   can differ between the two).
2. Memory: rise of the peak resident set during one call (after a small warm-up call), each
   case in 3 fresh subprocesses (Linux /proc/self/clear_refs and VmHWM), the largest reported:
   random boxes, batch 32 x 400 candidates, 1 x 3,000, and, for the current version only (the
   old one needs about 5 GB), 32 x 3,000.
3. Time: a suppression chain of 400 boxes (each overlaps the next with IoU 0.6, scores falling)
   and random boxes (16-128 px at 640 px: batch 32 x 400 candidates with 80 classes or 1 class,
   1 x 3,000 with 80 classes); the two versions alternate, median of --runs calls each.
Runs on one thread (torch.set_num_threads(1)).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench_common import rss_mb
from onestage.engine.device import machine_description
from onestage.runtime.postprocess import greedy_nms

PIXELS = 640
IOU_THRESHOLD = 0.5
NmsFunction = Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]


def _old_batched_nms(
    boxes_xyxy: Tensor, scores: Tensor, class_ids: Tensor, valid: Tensor, iou_threshold: float
) -> Tensor:
    """The batched NMS before issue 8: class-offset trick, one (B, N, N) matrix, up to N passes."""
    count = scores.shape[1]
    if scores.numel() == 0:
        return torch.zeros_like(valid)
    order = scores.argsort(dim=1, descending=True, stable=True)
    sorted_boxes = boxes_xyxy.gather(1, order[:, :, None].expand(-1, -1, 4))
    sorted_classes = class_ids.gather(1, order)
    sorted_valid = valid.gather(1, order)
    extent = sorted_boxes.abs().amax().clamp(min=1.0) * 2 + 1
    shifted = sorted_boxes + (sorted_classes.to(sorted_boxes.dtype) * extent)[:, :, None]
    earlier = torch.ones(count, count, dtype=torch.bool, device=scores.device).triu(1)
    suppresses = (
        _old_iou_exceeds(shifted, iou_threshold)
        & (sorted_valid[:, :, None] & sorted_valid[:, None, :])
        & earlier
    )
    keep = sorted_valid
    for _ in range(count):
        suppressed = (keep[:, :, None] & suppresses).any(dim=1)
        new_keep = sorted_valid & ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return torch.zeros_like(valid).scatter(1, order, keep)


def _old_iou_exceeds(boxes_xyxy: Tensor, threshold: float) -> Tensor:
    """The old version's (B, N, 4) -> (B, N, N) test: intersection > threshold x union."""
    x0, y0, x1, y1 = boxes_xyxy.unbind(-1)
    width = (
        torch.minimum(x1[:, :, None], x1[:, None, :])
        - torch.maximum(x0[:, :, None], x0[:, None, :])
    ).clamp_(min=0)
    height = (
        torch.minimum(y1[:, :, None], y1[:, None, :])
        - torch.maximum(y0[:, :, None], y0[:, None, :])
    ).clamp_(min=0)
    intersection = width.mul_(height)
    area = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    union = area[:, :, None] + area[:, None, :] - intersection
    return intersection > threshold * union


def current_nms(
    boxes: Tensor, scores: Tensor, classes: Tensor, valid: Tensor, threshold: float
) -> Tensor:
    """`greedy_nms` over each image of a padded (B, N) batch -> (B, N) bool kept, input order."""
    keep = np.zeros(tuple(valid.shape), dtype=bool)
    for image in range(keep.shape[0]):
        order = np.argsort(-scores[image].numpy(), kind="stable")
        keep[image, order] = greedy_nms(
            boxes[image].numpy()[order],
            classes[image].numpy()[order],
            valid[image].numpy()[order],
            threshold,
        )
    return torch.from_numpy(keep)


VERSIONS: dict[str, NmsFunction] = {"old": _old_batched_nms, "current": current_nms}


def greedy_reference(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, dtype: type
) -> np.ndarray:
    """Per-class greedy NMS of one image, one box at a time: (N, 4) xyxy -> (N,) bool kept.

    IoU > threshold is tested as intersection > threshold x union in `dtype`, in the same order
    of operations as the implementations (ties in score: lower index first)."""
    boxes = boxes.astype(dtype)
    zero, threshold = dtype(0), dtype(IOU_THRESHOLD)
    area = np.maximum(boxes[:, 2] - boxes[:, 0], zero) * np.maximum(boxes[:, 3] - boxes[:, 1], zero)
    keep = np.zeros(len(scores), dtype=bool)
    for box in np.argsort(-scores, kind="stable"):
        rivals = np.flatnonzero(keep & (classes == classes[box]))
        other = boxes[rivals]
        width = np.maximum(
            np.minimum(other[:, 2], boxes[box, 2]) - np.maximum(other[:, 0], boxes[box, 0]), zero
        )
        height = np.maximum(
            np.minimum(other[:, 3], boxes[box, 3]) - np.maximum(other[:, 1], boxes[box, 1]), zero
        )
        intersection = width * height
        union = (area[rivals] + area[box]) - intersection
        keep[box] = not (intersection > threshold * union).any()
    return keep


def tiny_boxes(images: int, num_classes: int, seed: int) -> tuple[Tensor, ...]:
    """(images, 400) candidates: 50 objects x 8 candidates, each 1-4 px wide and high on a
    quarter-pixel grid, jittered by up to 1 px around its object, in a 640 px image."""
    rng = np.random.default_rng(seed)
    objects, per_object = 50, 8
    centre = rng.integers(8 * 4, (PIXELS - 8) * 4, (images, objects, 1, 2))  # quarter px
    jitter = rng.integers(-4, 5, (images, objects, per_object, 2))
    size = rng.integers(4, 17, (images, objects, per_object, 2))
    corner = centre + jitter
    quarters = np.concatenate((corner, corner + size), axis=-1).reshape(images, -1, 4)
    boxes = torch.from_numpy(quarters / (4 * PIXELS)).float()  # (images, 400, 4) normalised
    object_class = rng.integers(0, num_classes, (images, objects, 1))
    classes = torch.from_numpy(np.repeat(object_class, per_object, axis=2).reshape(images, -1))
    scores = torch.from_numpy(rng.random((images, objects * per_object))).float()
    return boxes, scores, classes, torch.ones_like(scores, dtype=torch.bool)


def random_boxes(batch: int, count: int, num_classes: int, seed: int) -> tuple[Tensor, ...]:
    """(batch, count) random candidates: 16-128 px boxes in a 640 px image, normalised."""
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(batch, count, 2, generator=generator) * PIXELS
    size = 16 + torch.rand(batch, count, 2, generator=generator) * 112
    boxes = torch.cat((corner, corner + size), dim=-1).clamp(0, PIXELS) / PIXELS
    scores = torch.rand(batch, count, generator=generator)
    classes = torch.randint(0, num_classes, (batch, count), generator=generator)
    return boxes, scores, classes, torch.ones(batch, count, dtype=torch.bool)


def chain(count: int) -> tuple[Tensor, ...]:
    """One image of `count` boxes in a row, each overlapping the next with IoU 0.6, scores
    falling: greedy NMS keeps every other box, after a chain of `count` suppressions."""
    x = torch.arange(count, dtype=torch.float32) * 0.1
    boxes = torch.stack((x, torch.zeros(count), x + 0.4, torch.full((count,), 0.1)), dim=-1)
    boxes = boxes / (0.1 * count + 0.4)  # normalised
    scores = torch.linspace(1.0, 0.01, count)
    return boxes[None], scores[None], torch.zeros(1, count, dtype=torch.int64), scores[None] > 0


def exactness(images: int) -> None:
    print(f"\n1. Keep decisions that differ from one-box-at-a-time greedy NMS ({images} images")
    print("   x 400 candidates of 1-4 px at 640 px, IoU > 0.5):")
    print("| classes | kept (greedy, float32) | old vs float32 | old vs float64 |", end="")
    print(" current vs float32 | current vs float64 |")
    print("|---|---|---|---|---|---|")
    for num_classes in (80, 1000):
        boxes, scores, classes, valid = tiny_boxes(images, num_classes, seed=num_classes)
        references = {
            dtype: np.stack(
                [
                    greedy_reference(b.numpy(), s.numpy(), c.numpy(), dtype)
                    for b, s, c in zip(boxes, scores, classes, strict=True)
                ]
            )
            for dtype in (np.float32, np.float64)
        }
        row = [f"{num_classes:,}", f"{int(references[np.float32].sum()):,}"]
        for function in VERSIONS.values():
            keep = function(boxes, scores, classes, valid, IOU_THRESHOLD).numpy()
            row += [f"{int((keep != references[dtype]).sum())}" for dtype in references]
        print("| " + " | ".join(row) + " |")


def peak_memory_mib(version: str, batch: int, count: int) -> float:
    """Rise of the peak resident set during one call, in MiB (run in a fresh process)."""
    torch.set_num_threads(1)
    function = VERSIONS[version]
    function(*random_boxes(2, 64, 80, seed=1), IOU_THRESHOLD)  # load the code paths first
    function(*chain(64), IOU_THRESHOLD)
    inputs = random_boxes(batch, count, num_classes=80, seed=0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM restarts from the current VmRSS
    before = rss_mb()
    function(*inputs, IOU_THRESHOLD)
    return rss_mb(field="VmHWM") - before


def memory(repeats: int) -> None:
    print(f"\n2. Peak memory of one call (rise of the peak resident set; largest of {repeats}")
    print("   fresh processes):")
    print("| candidates | old | current |")
    print("|---|---|---|")
    for batch, count in ((32, 400), (1, 3000), (32, 3000)):
        row = [f"batch {batch} x {count:,}"]
        for version in VERSIONS:
            if version == "old" and batch * count * count > 50_000_000:
                row.append("not run (about 5 GB)")
                continue
            command = [sys.executable, __file__, "--memory-case", version, str(batch), str(count)]
            peaks = [
                float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
                for _ in range(repeats)
            ]
            row.append(f"{max(peaks):.1f} MiB")
        print("| " + " | ".join(row) + " |")


def timing(runs: int) -> None:
    cases = {
        "chain of 400 boxes, 1 image": chain(400),
        "random boxes, 32 x 400, 80 classes": random_boxes(32, 400, 80, seed=1),
        "random boxes, 32 x 400, 1 class": random_boxes(32, 400, 1, seed=2),
        "random boxes, 1 x 3,000, 80 classes": random_boxes(1, 3000, 80, seed=3),
    }
    print(f"\n3. Time per call, median of {runs} (the versions alternate):")
    print("| case | old | current | old / current | same keep decisions |")
    print("|---|---|---|---|---|")
    for name, inputs in cases.items():
        timings: dict[str, list[float]] = {version: [] for version in VERSIONS}
        results = {}
        for _ in range(runs):
            for version, function in VERSIONS.items():
                began = time.perf_counter()
                results[version] = function(*inputs, IOU_THRESHOLD)
                timings[version].append(time.perf_counter() - began)
        old, current = (statistics.median(timings[version]) * 1000 for version in VERSIONS)
        same = torch.equal(results["old"], results["current"])
        print(f"| {name} | {old:.1f} ms | {current:.1f} ms | {old / current:.1f}x | {same} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--memory-case", nargs=3, help=argparse.SUPPRESS)  # VERSION BATCH COUNT
    args = parser.parse_args()
    if args.memory_case:
        version, batch, count = args.memory_case
        print(peak_memory_mib(version, int(batch), int(count)))
        return
    torch.set_num_threads(1)
    print(
        f"{machine_description()}, torch {torch.__version__}, "
        f"Python {platform.python_version()}, 1 thread"
    )
    exactness(args.images)
    if not args.no_memory:
        memory(repeats=3)
    timing(args.runs)


if __name__ == "__main__":
    main()
