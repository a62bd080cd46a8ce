"""The shipped `base` model: a pretrained start for your own classes, trained on OpenMoji.

Usage:
  python benchmarks/base.py [--model csp-t] [--images 192000] [--out runs/base]
                            [--start base] [--set KEY=VALUE ...] [--ship] [--record]

Trains the model on synthetic images of every single-code-point OpenMoji emoji but the held-out
ones (`onestage.data.emoji_catalog.base_emoji`: the 40 classes of HELD_OUT_EMOJI and every emoji
whose name holds one of them as whole words), one class per emoji: each icon rendered once at
ICON_PX into OUT/icons, then each image draws its icons from that folder or OpenMoji rendered at
paste size and its background from the seed's photos (--backgrounds) or procedural textures,
with 1-10 objects of 5-50 % of the side. Then scores the final weights on a fixed 300-image test
set of the same distribution. --ship writes them as fp16 to src/onestage/weights/base.safetensors
with the training data, the held-out list and the command in the metadata; --record appends the
line to BENCHMARKS.md. --start continues from earlier weights of the same classes (the shipped
`base`, say, at another --set imgsz): the shipped metadata then counts both stages' images and
minutes and joins their commands. Its transfer to unseen classes is measured by
benchmarks/own_data.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench_common import append_to_benchmarks, command_line, epochs_for
from onestage.checkpoint import save_weights
from onestage.config import make_config, parse_override
from onestage.data.emoji_catalog import HELD_OUT_EMOJI, base_emoji
from onestage.data.icons import OpenMojiIcons
from onestage.data.synthetic import parse_count_range, parse_fraction_range
from onestage.engine.device import machine_description
from onestage.engine.evaluator import evaluate_detector, synthetic_eval_set
from onestage.engine.predictor import WEIGHTS_DIR, Detector
from onestage.engine.trainer import train

SHIPPED_NAME = "base"
ICON_PX = 160  # the side each emoji is rendered at once; pasted icons are resized from it
OBJECTS = "1-10"
SIZES = "0.05-0.5"
STEPS_PER_EPOCH = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="csp-t")
    parser.add_argument("--images", type=int, default=192_000, help="training images seen")
    parser.add_argument("--test-images", type=int, default=300)
    parser.add_argument(
        "--backgrounds", type=Path, default=Path("../shared/seed_animals/backgrounds")
    )
    parser.add_argument("--out", type=Path, default=Path("runs/base"))
    parser.add_argument("--start", help="weights to continue from (a file or a shipped name)")
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides KEY=VALUE")
    parser.add_argument("--ship", action="store_true", help="write the shipped fp16 weights")
    parser.add_argument("--record", action="store_true", help="append the line to BENCHMARKS.md")
    args = parser.parse_args()
    if not args.backgrounds.is_dir():
        raise SystemExit(f"{args.backgrounds}: needs the seed's photos (--backgrounds)")
    icons = render_icons(args.out / "icons")
    extra = dict(parse_override(text) for text in args.set)
    overrides = {
        "model": args.model,
        "batch": 16,
        "steps": STEPS_PER_EPOCH,
        "warmup_steps": 300,
        "ema": 0.9999,
        "ema_tau": 2000.0,
        "val_every": 0,
        "synthetic_icons": str(icons),
        "synthetic_backgrounds": str(args.backgrounds.resolve()),
        "synthetic_mix": True,
        "synthetic_objects": OBJECTS,
        "synthetic_sizes": SIZES,
        "project": str(args.out / "runs"),
        "name": f"{args.model}_{args.images}",
        "exist_ok": True,
        "weights": args.start,
        **extra,
    }
    recipe = args.model
    batch = make_config(recipe, overrides=overrides).batch
    overrides["epochs"] = epochs_for(args.images, batch, overrides["steps"])
    config = make_config(recipe, overrides=overrides)
    began = time.perf_counter()
    result = train(config)
    minutes = (time.perf_counter() - began) / 60
    weights = result.run_dir / "weights" / "last.safetensors"
    detector = Detector.load(weights, device="cpu")
    if args.ship:
        earlier = earlier_stages(args.start)
        metadata = {
            **detector.metadata,
            "recipe": recipe,
            "training_images": earlier.get("training_images", 0) + args.images,
            "training_minutes": round(earlier.get("training_minutes", 0) + minutes, 1),
            "training_data": (
                f"{len(detector.class_names)} OpenMoji emoji (one class each), icons from a "
                f"{ICON_PX} px rendering or OpenMoji at paste size, on the seed's photos or "
                f"procedural textures, {OBJECTS} objects of {SIZES} of the side"
            ),
            "held_out": list(HELD_OUT_EMOJI),
            "command": " then ".join(filter(None, [earlier.get("command"), command_line()])),
        }
        weights = WEIGHTS_DIR / f"{SHIPPED_NAME}.safetensors"
        save_weights(weights, detector.model, metadata, half=True)
        print(f"shipped {weights} ({weights.stat().st_size / 2**20:.1f} MiB)")
        detector = Detector.load(weights, device="cpu")

    eval_set = synthetic_eval_set(
        detector.class_names,
        args.test_images,
        size=config.imgsz,
        objects=parse_count_range(OBJECTS),
        size_range=parse_fraction_range(SIZES),
        icons=icons,
        backgrounds=args.backgrounds.resolve(),
        mix=True,
    )
    scores = evaluate_detector(detector, eval_set)
    line = (
        f"\n`{command_line()}`: {config.model}, {len(detector.class_names)} classes, "
        f"{args.images:,} training images in {minutes:.1f} min; {machine_description()}, "
        f"torch {torch.__version__}; weights `{weights.name}`. On {args.test_images} test images "
        f"of its own distribution: VOC mAP@0.5 {scores.voc.map:.4f}, COCO mAP@[.5:.95] "
        f"{scores.coco.ap:.4f}.\n"
    )
    print(line)
    if args.record:
        append_to_benchmarks(line)


def earlier_stages(start: str | None) -> dict:
    """The shipped metadata of the weights this run continued from (empty without --start)."""
    if start is None:
        return {}
    return Detector.load(start, device="cpu").metadata


def render_icons(folder: Path) -> Path:
    """Every base emoji rendered once at ICON_PX into `folder` (file stem = class name); kept
    when it is already there."""
    emoji = base_emoji()
    if folder.is_dir() and len(list(folder.glob("*.png"))) == len(emoji):
        return folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    source = OpenMojiIcons([f"{item.name}={item.code}" for item in emoji])
    for class_id, item in enumerate(emoji):
        image, _ = source.icon(class_id, ICON_PX)
        image.save(folder / f"{item.name}.png")
    print(f"rendered {len(emoji)} emoji at {ICON_PX} px into {folder}", flush=True)
    return folder.resolve()


if __name__ == "__main__":
    main()
