"""The torch-free runtime against the full install: installed size and cold start.

Usage:
  python benchmarks/runtime_install.py [--runtime-python .venv-runtime/bin/python]
      [--weights seed_animals] [--runs 5] [--record]

Run with the full environment's Python (it exports the files). `make test-runtime` builds the
runtime environment (requirements-runtime.txt, then onestage without its dependencies). For
each environment: the size of its installed packages (site-packages, bytes on disk), and for an
exported f32 .onnx file (host post-processing and whole graph) and an f32 OpenVINO IR, the cold
start: from starting a new Python process to its first detection on one 320 x 320 image
(`from onestage import Detector; Detector.load(file).detect([image])`), median of --runs, with
whether the process imported torch. Prints a Markdown table; --record appends it to
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_common import command_line, report
from onestage.engine.device import machine_description
from onestage.export.exporter import export_weights

FIRST_DETECTION = """
import sys, time
import numpy as np
from onestage import Detector
Detector.load(sys.argv[1]).detect([np.load(sys.argv[2])])
print(time.time(), "torch" in sys.modules)
"""
FILES = {  # name -> (format, whole graph, file name)
    "ONNX Runtime f32": ("onnx", False, "model.onnx"),
    "ONNX Runtime f32 whole graph": ("onnx", True, "model_nms.onnx"),
    "OpenVINO f32": ("openvino", False, "model.xml"),
}


def site_packages_bytes(python: str) -> int:
    """Bytes on disk of the installed packages of the environment of `python`."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    folder = Path(subprocess.run([python, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.strip())  # fmt: skip
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if not path.is_symlink():
                total += path.stat().st_blocks * 512
    return total


def cold_start(python: str, model: Path, image: Path, runs: int) -> tuple[float, bool]:
    """(median seconds from process start to first detection, whether torch was imported)."""
    seconds, imported = [], set()
    for _ in range(runs):
        began = time.time()
        done = subprocess.run(
            [python, "-c", FIRST_DETECTION, str(model), str(image)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        finished, torch_imported = done.stdout.split()[-2:]
        seconds.append(float(finished) - began)
        imported.add(torch_imported == "True")
    return statistics.median(seconds), any(imported)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-python", default=".venv-runtime/bin/python")
    parser.add_argument("--weights", default="seed_animals")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    environments = {"full (.venv)": sys.executable, "runtime": args.runtime_python}
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "image.npy"
        pixels = np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8)
        np.save(image, pixels)
        files = {
            name: export_weights(
                args.weights, fmt, "f32", out=Path(folder) / filename, nms=nms
            ).path
            for name, (fmt, nms, filename) in FILES.items()
        }
        lines = [
            "| environment | installed packages | "
            + " | ".join(f"cold start, {name}" for name in files)
            + " |",
            "|---|---|" + "---|" * len(files),
        ]
        for label, python in environments.items():
            size = site_packages_bytes(python) / 1024**2
            cells = []
            for path in files.values():
                seconds, torch_imported = cold_start(python, path, image, args.runs)
                cells.append(f"{seconds:.2f} s" + (" (imports torch)" if torch_imported else ""))
            lines.append(f"| {label} | {size:.0f} MiB | " + " | ".join(cells) + " |")
    header = (
        f"\n`{command_line()}`: weights {args.weights}; cold start = new process to first "
        f"detection, median of {args.runs}; {machine_description()}.\n\n"
    )
    report(header, lines, args.record)


if __name__ == "__main__":
    main()
