"""Your own data: a small dataset folder trained from scratch, with the pipeline, and fine-tuned.

Usage:
  python benchmarks/own_data.py [--rows a b c] [--sizes 100 300] [--epochs 60]
                                [--model csp-t] [--base base] [--out runs/own_data] [--reuse]
                                [--record]

The stand-in for a user's data: 8 OpenMoji classes that no shipped model knows (CLASSES) pasted
on the seed's photos (--backgrounds; procedural backgrounds when that folder is absent), 416 px
images with 1-8 objects of 8-45 % of the side, overlapping up to --max-overlap (the seed's limit
is 0.01). onestage's generator and writer make YOLO folders under OUT/data (kept for the next
run): one per training size (train: the first N images of one seeded stream, so the 100 are
part of the 300; val: --val-images from the test distribution with another seed) and one test
folder (--test-images, a third seed). Each row trains through `data=FOLDER` as
`onestage train --data FOLDER` would, for --epochs epochs, validating every epoch (row a too,
whose recipe validates every 5th: the wall times then compare):
  a  from scratch, flips only: `--recipe MODEL` with steps=null (the behaviour before the
     augmentation pipeline)
  b  from scratch with the pipeline: no recipe, model=MODEL (config.dataset_defaults)
  c  fine-tuned: no recipe, weights=BASE (dataset defaults; the base's architecture)
The final weights (last.safetensors) are scored on the test folder with `onestage.evaluate`:
COCO mAP@[.5:.95], AP50 and APs (small objects), with the wall time of the run; row c also
gives the wall time until its val mAP@[.5:.95] first reached the final val mAP@[.5:.95] of rows
a and b at the same size. Each row's result is saved as OUT/rows/ROW_SIZE_EPOCHS.json; --reuse
takes a row from there instead of training it again (rows a and b can run before row c's base
exists). Prints a Markdown table; --record appends it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench_common import BENCHMARKS_FILE, append_to_benchmarks, command_line
from onestage import evaluate
from onestage.checkpoint import load_weights
from onestage.config import TrainConfig, architecture_recipe, make_config, parse_override
from onestage.data.formats import write_dataset
from onestage.data.records import DetectionDataset, ImageRecord
from onestage.data.synthesize import synthesize_dataset
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.engine.device import machine_description
from onestage.engine.progress import SilentProgress
from onestage.engine.trainer import train

# Eight held-out OpenMoji classes of distinct shapes and colours (none is an animal).
CLASSES = ("bicycle", "airplane", "umbrella", "tractor", "sailboat", "key", "teddy bear", "crown")
TRAIN_SEED, VAL_SEED, TEST_SEED = 1, 2, 3
ROWS = {"a": "scratch, flips only", "b": "scratch + pipeline", "c": "fine-tuned"}
HEADING = "## Your own data (benchmarks/own_data.py)"


@dataclass
class EpochClock(SilentProgress):
    """Wall seconds since it was made, and val mAP@[.5:.95], at the end of every epoch."""

    began: float = field(default_factory=time.perf_counter)
    curve: list[tuple[float, float]] = field(default_factory=list)

    def end_epoch(self, row: dict[str, float]) -> None:
        self.curve.append((time.perf_counter() - self.began, row["val/mAP50-95"]))


@dataclass
class RowResult:
    """One trained row: its architecture and start, test scores (COCO mAP@[.5:.95], AP50, APs),
    wall time and validation curve (wall seconds, val mAP@[.5:.95] per epoch)."""

    row: str
    size: int
    model: str
    start: str
    ap: float
    ap50: float
    ap_small: float
    wall_s: float
    curve: list[tuple[float, float]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 300], help="train images")
    parser.add_argument("--epochs", type=int, default=60, help="epochs of every row")
    parser.add_argument("--model", default="csp-t", help="architecture of rows a and b")
    parser.add_argument("--base", default="base", help="weights file or name of row c")
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--imgsz", type=int, default=416, help="image side, made and trained")
    parser.add_argument("--max-overlap", type=float, default=0.1, help="generator's limit")
    parser.add_argument(
        "--backgrounds", type=Path, default=Path("../shared/seed_animals/backgrounds")
    )
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("runs/own_data"))
    parser.add_argument("--reuse", action="store_true", help="take saved rows from OUT/rows")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    photos = args.backgrounds.resolve() if args.backgrounds.is_dir() else None
    extra = dict(parse_override(text) for text in args.set)

    def distribution(seed: int) -> SyntheticConfig:
        return SyntheticConfig(
            width=args.imgsz,
            height=args.imgsz,
            objects=(1, 8),
            size_range=(0.08, 0.45),
            max_overlap=args.max_overlap,
            classes=CLASSES,
            backgrounds=photos,
            seed=seed,
        )

    # The folders' names hold a digest of the distribution: other options make other folders.
    tag = hashlib.sha256(repr(distribution(0)).encode()).hexdigest()[:8]
    data = args.out / "data"
    test_folder = write_folder(
        data / f"test{args.test_images}_{tag}",
        {"test": (args.test_images, TEST_SEED)},
        distribution,
    )
    results: list[RowResult] = []
    for size in args.sizes:
        folder = write_folder(
            data / f"train{size}_val{args.val_images}_{tag}",
            {"train": (size, TRAIN_SEED), "val": (args.val_images, VAL_SEED)},
            distribution,
        )
        for row in args.rows:
            saved = args.out / "rows" / f"{row}_{size}_{args.epochs}.json"
            if args.reuse and saved.is_file():
                results.append(RowResult(**json.loads(saved.read_text())))
                continue
            config = row_config(row, folder, size, args, extra)
            print(f"row {row} ({ROWS[row]}), {size} training images", flush=True)
            clock = EpochClock()
            result = train(config, clock)
            wall_s = time.perf_counter() - clock.began
            weights = result.run_dir / "weights" / "last.safetensors"
            coco = evaluate(weights, data=test_folder, split="test").coco
            model = str(load_weights(weights)[1]["model"])
            start = f"`{args.base}`" if row == "c" else "scratch"
            scores = (coco.ap, coco.ap50, coco.ap_small)
            results.append(RowResult(row, size, model, start, *scores, wall_s, clock.curve))
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(asdict(results[-1])))

    backgrounds = f"the photos in {args.backgrounds}" if photos else "procedural backgrounds"
    header = (
        f"\n`{command_line()}`: {len(CLASSES)} OpenMoji classes ({', '.join(CLASSES)}) on "
        f"{backgrounds}, {args.imgsz} px, 1-8 objects at 8-45 % of the side (max overlap "
        f"{args.max_overlap:g}); YOLO folders: train seed {TRAIN_SEED}, val {args.val_images} "
        f"images seed {VAL_SEED}, test {args.test_images} images seed {TEST_SEED}. "
        f"{args.epochs} epochs per row, validated every epoch; scores of last.safetensors on the "
        f"test set; wall time includes validation. {machine_description()}, "
        f"torch {torch.__version__}.\n\n"
    )
    lines = [
        "| row | model | training images | COCO mAP@[.5:.95] | AP50 | APs | wall time "
        "| reaches a / b final val mAP@[.5:.95] after |",
        "|---|---|---|---|---|---|---|---|",
        *(table_line(result, results) for result in results),
    ]
    table = header + "\n".join(lines) + "\n"
    print(table)
    if args.record:
        recorded = BENCHMARKS_FILE.is_file() and HEADING in BENCHMARKS_FILE.read_text()
        append_to_benchmarks(table if recorded else f"\n{HEADING}\n{table}")


def write_folder(
    folder: Path,
    splits: dict[str, tuple[int, int]],
    distribution: Callable[[int], SyntheticConfig],
) -> Path:
    """A YOLO folder of splits (name -> (images, generator seed)) drawn by onestage's generator
    and written by its writer; kept when it is already there."""
    if folder.is_dir():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    records: dict[str, list[ImageRecord]] = {}
    for split, (count, seed) in splits.items():
        generator = SyntheticGenerator(distribution(seed))
        print(f"writing {count} {split} images (seed {seed}) to {folder}", flush=True)
        records |= synthesize_dataset(generator, partial, "yolo", {split: count}, ".jpg").splits
    # each split's call wrote a data.yaml naming that split alone: one naming them all
    write_dataset(
        DetectionDataset(class_names=generator.class_names, splits=records), partial, "yolo"
    )
    partial.rename(folder)
    return folder


def row_config(
    row: str, folder: Path, size: int, args: argparse.Namespace, extra: dict[str, Any]
) -> TrainConfig:
    """The training config of row a, b or c on the dataset folder."""
    common = {
        "data": str(folder),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "val_every": 1,
        "project": str(args.out / "runs"),
        "name": f"{row}_{size}",
        "exist_ok": True,
    }
    if row == "a":
        recipe = architecture_recipe(args.model)
        overrides = {**common, "model": args.model, "steps": None, **extra}
        return make_config(recipe, overrides=overrides)
    source = {"model": args.model} if row == "b" else {"weights": args.base}
    return make_config(overrides={**common, **source, **extra})


def table_line(result: RowResult, results: list[RowResult]) -> str:
    """The Markdown row of one result; row c's last cell compares it with rows a and b."""
    targets = {
        r.row: r.curve[-1][1]
        for r in results
        if result.row == "c" and r.size == result.size and r.row != "c"
    }
    reaches = " / ".join(f"{row}: {time_to_reach(result.curve, at)}" for row, at in targets.items())
    small = f"{result.ap_small:.4f}" if result.ap_small >= 0 else "no small objects"
    name = ROWS[result.row] + (f" from {result.start}" if result.row == "c" else "")
    return (
        f"| {result.row}: {name} | {result.model} | {result.size} | {result.ap:.4f} | "
        f"{result.ap50:.4f} | {small} | {duration(result.wall_s)} | {reaches or '—'} |"
    )


def time_to_reach(curve: list[tuple[float, float]], target: float) -> str:
    """The wall time and epoch at which `curve` first reaches `target`."""
    for epoch, (seconds, score) in enumerate(curve, start=1):
        if score >= target:
            return f"{duration(seconds)} (epoch {epoch})"
    return "not reached"


def duration(seconds: float) -> str:
    """Seconds below two minutes, else minutes."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    main()
