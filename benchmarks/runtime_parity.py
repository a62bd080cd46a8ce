"""The runtime path against the torch path: the same detections on the seed benchmark's test set.

Usage:
  python benchmarks/runtime_parity.py [--weights seed_animals] [--test-images 500] [--record]

Exports the weights (f32 ONNX, f32 OpenVINO IR, and the whole-graph f32 ONNX of `--nms`) and
runs each, and the weights on torch (fp32 eager, BatchNorm folded, as `Detector.load`), over the
fixed test set of the seed benchmark (`benchmarks/seed_animals.py`), image by image, at the
prediction defaults and at the evaluation ones (conf 0.001). For each runtime: the images whose
detections are identical to torch's (the same classes in the same order, boxes within 1e-4 of
the image side, scores within 1e-5), the largest box difference over all detections, and, but
for the whole graph, the largest raw-output difference. Prints a Markdown table; --record appends
it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench_common import command_line, report, seed_test_set
from onestage.detections import ImageDetections
from onestage.engine.device import machine_description
from onestage.engine.predictor import Detector
from onestage.export.exporter import export_weights
from onestage.predict_options import EVALUATION, PREDICTION, PredictOptions

BOX_TOLERANCE = 1e-4  # of the image side
SCORE_TOLERANCE = 1e-5
VARIANTS = {  # name -> (format, whole graph, file name)
    "ONNX Runtime f32": ("onnx", False, "model.onnx"),
    "OpenVINO f32": ("openvino", False, "model.xml"),
    "ONNX Runtime f32 whole graph": ("onnx", True, "model_nms.onnx"),
}


def identical(mine: ImageDetections, theirs: ImageDetections, side: float) -> bool:
    """Whether two images' detections agree (see the module docstring)."""
    return (
        mine.class_ids.tolist() == theirs.class_ids.tolist()
        and np.abs(mine.boxes_xyxy - theirs.boxes_xyxy).max(initial=0.0) <= BOX_TOLERANCE * side
        and np.abs(mine.scores - theirs.scores).max(initial=0.0) <= SCORE_TOLERANCE
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="seed_animals")
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--seed-assets", type=Path, default=Path("../shared/seed_animals"))
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    reference = Detector.load(args.weights, "cpu")
    eval_set, data = seed_test_set(reference.class_names, args.test_images, args.seed_assets)
    images = [eval_set.load_image(index) for index in range(len(eval_set))]
    side = float(reference.input_size)
    settings: dict[str, PredictOptions] = {"predict": PREDICTION, "evaluate": EVALUATION}
    expected = {name: reference.detect(images, options) for name, options in settings.items()}
    lines = [
        "| runtime | identical images, predict defaults | identical images, conf 0.001 | "
        "largest box difference (px) | largest raw-output difference |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for name, (fmt, nms, filename) in VARIANTS.items():
            out = Path(folder) / filename
            path = export_weights(args.weights, fmt, "f32", out=out, nms=nms).path
            runtime = Detector.load(path)
            cells, box_difference = [], 0.0
            for setting, options in settings.items():
                found = runtime.detect(images, options)
                same = sum(
                    identical(mine, theirs, side)
                    for mine, theirs in zip(found, expected[setting], strict=True)
                )
                cells.append(f"{same} / {len(images)}")
                box_difference = max(
                    box_difference,
                    *(
                        float(np.abs(mine.boxes_xyxy - theirs.boxes_xyxy).max(initial=0.0))
                        for mine, theirs in zip(found, expected[setting], strict=True)
                        if mine.class_ids.tolist() == theirs.class_ids.tolist()
                    ),
                )
            raw = "—" if nms else f"{raw_difference(runtime, reference, images):.2g}"
            lines.append(f"| {name} | {' | '.join(cells)} | {box_difference:.2g} | {raw} |")
    header = (
        f"\n`{command_line()}`: weights {args.weights} against its torch fp32 eager forward "
        f"(BatchNorm folded); {args.test_images} test images ({data}); "
        f"{machine_description()}.\n\n"
    )
    report(header, lines, args.record)


def raw_difference(runtime: Detector, reference: Detector, images: list[np.ndarray]) -> float:
    """The largest raw-output difference of two detectors over `images`, 32 at a time."""
    largest = 0.0
    for start in range(0, len(images), 32):
        batch = reference.fit_batch(images[start : start + 32])[0]
        mine, theirs = runtime.forward(batch), reference.forward(batch)
        largest = max(largest, float(np.abs(mine - theirs).max()))
    return largest


if __name__ == "__main__":
    main()
