"""Where the time outside the forward goes, for the export `onestage export` gives by default.

Usage:
  python benchmarks/postprocess_profile.py [--weights seed_animals] [--calls 1500] [--record]

Exports the weights as `onestage export` does by default on this CPU (`exporter.default_target`)
into a temporary folder and predicts one 320x320 image of the seed benchmark's test set (the
seed's icons and photos from ../shared/seed_animals when present) in a loop. Each call runs the
forward, then one prefix of the host post-processing (`runtime.postprocess`'s steps: candidate
pairs, their order, decoding and clipping, NMS), timed right after the forward ("after the
forward": what a prediction pays) and once more at once ("warm": the same work with its code and
data in the caches); then the whole post-processing after a 2 ms pause, and the forward alone.
Medians over --calls calls after 100 untimed ones (end-to-end ratios are
`inference_latency.py`'s, whose protocol a serving process follows). Prints a Markdown table;
--record appends it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench_common import command_line, report, seed_test_set
from onestage.engine.device import machine_description
from onestage.engine.predictor import Detector
from onestage.export.exporter import SUFFIXES, default_target, export_weights
from onestage.predict_options import PREDICTION
from onestage.runtime.postprocess import greedy_nms, postprocess

WARMUP_CALLS = 100
PAUSE_S = 0.002


def steps(detector: Detector) -> dict[str, Callable[[np.ndarray], object]]:
    """Cumulative prefixes of one image's post-processing at the default options, by the name
    of their last step."""
    coding, options = detector.coding, PREDICTION

    def split(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return coding.split(np.asarray(raw, dtype=np.float32))

    def pairs(raw: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        box_part, logits = split(raw)
        best_only = options.candidates == "argmax"
        return box_part[0], coding.candidate_pairs(logits[0], options.conf, best_only)

    def ordered(raw: np.ndarray) -> tuple[np.ndarray, ...]:
        box_part, (priors, class_ids, scores) = pairs(raw)
        order = np.argsort(-scores, kind="stable")[: options.pre_nms_topk]
        return box_part, priors[order], class_ids[order], scores[order]

    def decoded(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        box_part, priors, class_ids, _ = ordered(raw)
        boxes = coding.decode(box_part[None, priors], priors[None])[0]
        boxes = np.minimum(np.maximum(boxes, np.float32(0.0)), np.float32(1.0))
        return boxes, class_ids, (boxes[:, 2:] > boxes[:, :2]).all(axis=1)

    def suppressed(raw: np.ndarray) -> np.ndarray:
        return greedy_nms(*decoded(raw), options.iou, options.max_det)

    return {
        "reading the output": split,
        "candidate pairs": pairs,
        "their order": ordered,
        "decoding, clipping": decoded,
        "NMS": suppressed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="seed_animals")
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--seed-assets", type=Path, default=Path("../shared/seed_animals"))
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()

    fmt, precision = default_target()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{SUFFIXES[fmt]}"
        export_weights(args.weights, fmt, precision, path)
        detector = Detector.load(path)
        eval_set, data = seed_test_set(detector.class_names, 20, args.seed_assets)
        image = np.ascontiguousarray(eval_set.load_image(0))
        medians = profile(detector, image, args.calls)

    lines = ["| after the forward | ms after the forward | ms warm |", "|---|---|---|"]
    earlier = (0.0, 0.0)
    for name in steps(detector):
        cold, warm = medians[name]
        lines.append(
            f"| + {name} | {cold:.3f} (+{cold - earlier[0]:.3f}) | {warm:.3f} "
            f"(+{warm - earlier[1]:.3f}) |"
        )
        earlier = (cold, warm)
    lines.append(f"| the whole post-processing after a 2 ms pause | {medians['paused'][0]:.3f} | |")
    lines.append(f"| the forward | {medians['forward'][0]:.3f} | |")
    header = (
        f"\n`{command_line()}`: weights {args.weights}, exported as {fmt} {precision} (the "
        f"default here); one 320x320 image ({data}); {machine_description()}; medians of "
        f"{args.calls} calls.\n\n"
    )
    report(header, lines, args.record)


def profile(detector: Detector, image: np.ndarray, calls: int) -> dict[str, tuple[float, float]]:
    """Median ms per measure: each post-processing prefix (after the forward, warm), the whole
    post-processing after a pause and the forward."""
    batch = detector.fit_batch([image])[0]
    prefixes = steps(detector)
    samples: dict[str, list[tuple[float, float]]] = {
        name: [] for name in [*prefixes, "paused", "forward"]
    }
    for call in range(WARMUP_CALLS + calls):
        timed = call >= WARMUP_CALLS
        for name, step in prefixes.items():
            raw = detector.forward(batch)
            cold = _seconds(step, raw)
            warm = _seconds(step, raw)
            if timed:
                samples[name].append((cold, warm))
        raw = detector.forward(batch)
        time.sleep(PAUSE_S)
        paused = _seconds(lambda output: postprocess(output, detector.coding), raw)
        began = time.perf_counter()
        detector.forward(batch)
        forward = time.perf_counter() - began
        if timed:
            samples["paused"].append((paused, 0.0))
            samples["forward"].append((forward, 0.0))
    return {
        name: tuple(statistics.median(row[i] for row in rows) * 1e3 for i in range(2))
        for name, rows in samples.items()
    }


def _seconds(step: Callable[[object], object], argument: object) -> float:
    began = time.perf_counter()
    step(argument)
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
