"""Exact resume on a GPU: fp16 with loss scaling and flips drawn from the CUDA generator.

Usage: python benchmarks/cuda_resume_check.py [--epochs 4] [--steps 3] [--batch 8]
Needs a CUDA device. Trains the seed model on small synthetic images (plain PNG icons made
here, procedural backgrounds, no validation) four ways, with deterministic CUDA kernels:

- straight, twice: the same run must give bit-identical weights (else nothing can be compared);
- interrupted after half the epochs and resumed with `--resume`: must equal the straight run;
- the same, but with the CUDA generator left unrestored (what resuming did before): its flips
  replay the first epochs' draws, so its weights must differ.

Prints one line per comparison and exits 1 if an expectation fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from onestage.config import make_config
from onestage.engine.progress import InterruptAfterEpoch
from onestage.engine.run_folder import resume_config
from onestage.engine.trainer import Trainer, TrainResult, train


def make_icons(folder: Path) -> Path:
    """Two RGBA icons (a disc, a bar) as the synthetic classes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (x0, y0, x1, y1) in {"disc": (4, 4, 36, 36), "bar": (0, 12, 40, 24)}.items():
        icon = np.zeros((40, 40, 4), dtype=np.uint8)
        icon[y0:y1, x0:x1, :3] = rng.integers(0, 255, 3)
        icon[y0:y1, x0:x1, 3] = 255
        Image.fromarray(icon).save(folder / f"{name}.png")
    return folder


def same_weights(a: TrainResult, b: TrainResult) -> tuple[bool, float]:
    """Bit-identical state dicts?, and the largest absolute difference."""
    largest = 0.0
    equal = True
    for name, tensor in a.model.state_dict().items():
        other = b.model.state_dict()[name]
        equal &= torch.equal(tensor, other)
        if tensor.is_floating_point():
            largest = max(largest, (tensor - other).abs().max().item())
    return equal, largest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cuda", help="cpu runs the code path, no check")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    gpu = args.device == "cuda"
    print(f"device: {torch.cuda.get_device_name() if gpu else 'cpu'}, torch {torch.__version__}")
    root = Path(tempfile.mkdtemp())
    recipe = {
        "device": args.device,
        "amp": "fp16" if gpu else "none",
        "hflip": 0.5,
        "epochs": args.epochs,
        "steps": args.steps,
        "batch": args.batch,
        "val_every": 0,
        "scheduler": "cosine",
        "lr": 1e-3,
        "warmup_steps": 2,
        "synthetic_icons": str(make_icons(root / "icons")),
        "synthetic_objects": "1-3",
        "imgsz": 320,
        "project": str(root / "runs"),
    }
    half = args.epochs // 2

    def config(name: str):
        return make_config("seed", overrides={**recipe, "name": name})

    straight = train(config("straight"))
    again = train(config("again"))
    checks = []
    equal, largest = same_weights(straight, again)
    print(f"straight twice: bit-identical {equal} (max |diff| {largest:.3g})")
    checks.append(equal)

    for name, restore_cuda in (("resumed", True), ("resumed-old", False)):
        with contextlib.suppress(KeyboardInterrupt):
            train(config(name), InterruptAfterEpoch(half))
        run = root / "runs" / name
        if restore_cuda:
            trainer = Trainer(resume_config(run, {}), None, resume_from=run)
        else:
            with mock.patch.object(torch.cuda, "set_rng_state"):
                trainer = Trainer(resume_config(run, {}), None, resume_from=run)
        scale = trainer.scaler.get_scale()
        result = trainer.run()
        equal, largest = same_weights(straight, result)
        print(
            f"{name} (CUDA generator restored: {restore_cuda}, loss scale after resume "
            f"{scale:g}): bit-identical to straight {equal} (max |diff| {largest:.3g})"
        )
        checks.append(equal == restore_cuda)
    print("all expectations met" if all(checks) else "EXPECTATION FAILED")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
