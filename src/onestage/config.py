"""Training configuration: every knob in one typed place, recipes by name, YAML and overrides.

Precedence, lowest first: field defaults < recipe < YAML file < command-line overrides. Every
value is checked against its knob's type and valid names, range or form as it is read, so a
mistake is one line before a run writes anything. Importing this module loads no torch.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onestage.engine.schedule import SCHEDULERS
from onestage.errors import OnestageError, first_line
from onestage.limits import read_text_within
from onestage.parsing import MalformedText, parse_yaml
from onestage.priors.anchor_configs import ANCHOR_CONFIGS
from onestage.train_choices import (
    AMP_MODES,
    ANCHOR_LOSSES,
    ASSIGNER_NAMES,
    BOX_LOSSES,
    BOX_TERMS,
    CLASS_TERMS,
    DEVICES,
    OPTIMIZERS,
    POINT_LOSS,
    RUN_LOGGERS,
)


@dataclass(frozen=True)
class Range:
    """The numbers a knob takes: from `low` up to `high` (None: no bound), each end excluded
    when open; never NaN or infinite."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if value < self.low or (self.low_open and value == self.low):
            return False
        if self.high is None:
            return True
        return value < self.high or (not self.high_open and value == self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return (
            f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
            f"{')' if self.high_open else ']'}"
        )


@dataclass(frozen=True)
class Form:
    """The strings a knob takes: those `pattern` matches in full, described by `text`."""

    pattern: str
    text: str

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None

    def __str__(self) -> str:
        return self.text


POSITIVE = Range(0, low_open=True)
AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
PROBABILITY = Range(0, 1)
DECAY = Range(0, 1, high_open=True)  # momenta and EMA decays
FREEZE = Form(r"backbone|[0-9]+", "backbone or N (the first N layers)")
# a knob's valid values: a range, names, a form, or anything
Valid = Range | tuple[str, ...] | Form | None
DEFAULT_MODEL = "seed"  # the architecture of a config that names none and has no weights


def _knob(default: Any, meaning: str, valid: Valid = None) -> Any:
    return field(default=default, metadata={"help": meaning, "valid": valid})


@dataclass
class TrainConfig:
    """All training settings; `help` metadata is the one-line meaning shown by the CLI."""

    # model and data
    model: str | None = _knob(
        None, "architecture name or spec file; none = the weights' own, else seed"
    )
    anchors: str = _knob(
        "seed",
        "anchor config: seed | seed-intended (the weights' own model: theirs)",
        tuple(ANCHOR_CONFIGS),
    )
    weights: str | None = _knob(
        None, "initial weights (.safetensors, or a shipped name) to fine-tune or transfer from"
    )
    bn_momentum: float | None = _knob(
        None, "BatchNorm running-average momentum; none = model's", PROBABILITY
    )
    width_multiple: float = _knob(
        1.0, "a spec model's channels x this (multiples of 8), as YOLO's width multiple", POSITIVE
    )
    depth_multiple: float = _knob(
        1.0, "a spec model's block repeats (n) x this (at least 1), as YOLO's depth", POSITIVE
    )
    data: str | None = _knob(None, "dataset folder (yolo/voc/coco); none = synthetic animals")
    imgsz: int | None = _knob(
        320, "model input side in pixels; none = from the dataset folder's images", AT_LEAST_1
    )
    letterbox: bool = _knob(False, "keep aspect ratio with padding when resizing dataset images")
    strict_labels: bool = _knob(False, "refuse boxes slightly outside the image (default: clip)")
    synthetic_objects: str = _knob("4", "synthetic objects per image: N or MIN-MAX")
    synthetic_sizes: str | None = _knob(
        None, "synthetic icon side / image side: MIN-MAX; none = the seed's 50-160 px at 320"
    )
    synthetic_seed: int = _knob(0, "seed of the synthetic training stream", AT_LEAST_0)
    synthetic_icons: str | None = _knob(None, "folder of RGBA PNG icons; none = OpenMoji")
    synthetic_backgrounds: str | None = _knob(None, "folder of photos; none = procedural")
    synthetic_mix: bool = _knob(
        False, "each image: the icon folder or OpenMoji, the photos or procedural (needs both)"
    )
    train_images: int | None = _knob(
        None, "fixed synthetic training set size; none = fresh", AT_LEAST_1
    )
    # starting from weights= (fine-tuning and transfer to other classes)
    freeze: str | None = _knob(
        None, "layers kept fixed: backbone or N (the first N layers); none = train all", FREEZE
    )
    pretrained_lr: float = _knob(
        1.0,
        "learning-rate multiplier of the tensors loaded from weights",
        Range(0, 1, low_open=True),
    )
    # schedule
    epochs: int = _knob(100, "number of epochs", AT_LEAST_1)
    steps: int | None = _knob(
        100, "optimiser steps per epoch; none = one pass over the data", AT_LEAST_1
    )
    batch: int = _knob(32, "images per optimiser step, over all processes", AT_LEAST_1)
    optimizer: str = _knob("adam", "adam | adamw | sgd", OPTIMIZERS)
    lr: float = _knob(1e-4, "initial learning rate", POSITIVE)
    weight_decay: float = _knob(0.0, "weight decay", AT_LEAST_0)
    momentum: float = _knob(0.9, "SGD momentum (adam: beta1)", DECAY)
    scheduler: str = _knob("step", "step | cosine | constant", SCHEDULERS)
    step_every: int = _knob(5, "step scheduler: epochs between decays", AT_LEAST_1)
    step_gamma: float = _knob(0.8, "step scheduler: decay factor", Range(0, 1, low_open=True))
    min_lr: float = _knob(3e-7, "learning-rate floor", AT_LEAST_0)
    warmup_steps: int = _knob(0, "linear warm-up steps", AT_LEAST_0)
    grad_clip: float | None = _knob(
        None, "clip gradient norm to this value; none or 0 = off", AT_LEAST_0
    )
    # objective
    loss: str | None = _knob(
        None,
        "seed | ssd | focal (anchor heads), quality (anchor-free); none = the head's own",
        (*ANCHOR_LOSSES, POINT_LOSS),
    )
    box_loss: str | None = _knob(
        None,
        "ssd, focal: smooth_l1 | giou; quality: ciou | giou; none = the loss's own",
        tuple(dict.fromkeys((*BOX_LOSSES, *BOX_TERMS))),
    )
    cls_loss: str | None = _knob(None, "quality loss: bce | vfl | qfl; none = bce", CLASS_TERMS)
    assigner: str | None = _knob(
        None,
        "maxiou (anchor heads) | atss | tal; none = the head's own (maxiou, tal)",
        ASSIGNER_NAMES,
    )
    iou_threshold: float = _knob(0.4, "maxiou assigner: anchor matching IoU threshold", PROBABILITY)
    hflip: float = _knob(0.0, "probability of a horizontal flip", PROBABILITY)
    ema: float = _knob(0.0, "weight EMA decay (validated and saved instead); 0 = off", DECAY)
    ema_tau: float = _knob(100.0, "EMA warm-up: decay x (1 - exp(-updates / tau))", POSITIVE)
    # augmentation of dataset folders' training images (Ultralytics' names); all off by default
    mosaic: float = _knob(0.0, "probability of a 2 x 2 mosaic of four images", PROBABILITY)
    degrees: float = _knob(0.0, "random rotation: uniform in +-degrees", Range(0, 180))
    translate: float = _knob(0.0, "random shift: uniform in +-translate x the side", Range(0, 0.5))
    scale: float = _knob(0.0, "random zoom: uniform in 1 +- scale", Range(0, 1, high_open=True))
    shear: float = _knob(
        0.0, "random shear: uniform in +-shear degrees along x and y", Range(0, 45)
    )
    hsv_h: float = _knob(
        0.0, "hue shift: uniform in +-hsv_h turns of the colour circle", Range(0, 0.5)
    )
    hsv_s: float = _knob(0.0, "saturation gain: uniform in 1 +- hsv_s", PROBABILITY)
    hsv_v: float = _knob(0.0, "value (brightness) gain: uniform in 1 +- hsv_v", PROBABILITY)
    mixup: float = _knob(0.0, "probability of blending in a second augmented image", PROBABILITY)
    copy_paste: float = _knob(
        0.0, "probability of pasting the boxed objects of another image", PROBABILITY
    )
    close_mosaic: int = _knob(
        0, "last epochs without mosaic, mixup and copy-paste; 0 = none", AT_LEAST_0
    )
    cache: str = _knob(
        "auto",
        "training images: ram (decoded once, kept) | none (read each time) | auto (ram when "
        "they fit in half the memory available)",
        ("auto", "ram", "none"),
    )
    # engine
    device: str = _knob("auto", "auto | cpu | cuda", DEVICES)
    amp: str = _knob(
        "auto",
        "mixed precision: auto (bf16 where native) | none | bf16 | fp16 (CUDA only)",
        AMP_MODES,
    )
    channels_last: bool = _knob(True, "channels_last memory format")
    workers: int = _knob(0, "data-loader worker processes", AT_LEAST_0)
    threads: int | None = _knob(
        None, "torch intra-op threads; none or 0 = torch's default", AT_LEAST_0
    )
    seed: int = _knob(0, "seed for initial weights and data order", AT_LEAST_0)
    val_every: int = _knob(1, "validate every this many epochs; 0 = never", AT_LEAST_0)
    val_images: int = _knob(
        200, "synthetic validation images (fixed set of its own stream)", AT_LEAST_1
    )
    val_split: str = _knob("val", "dataset split to validate on (dataset folders)")
    patience: int = _knob(
        0, "stop after this many validations without improvement; 0 = never", AT_LEAST_0
    )
    logger: str = _knob(
        "none", "also log each run to: none | tensorboard (RUN/events...) | mlflow", RUN_LOGGERS
    )
    logger_uri: str | None = _knob(
        None, "MLflow tracking URI; none = $MLFLOW_TRACKING_URI, else PROJECT/mlflow.db (SQLite)"
    )
    project: str = _knob("runs/train", "folder of run folders")
    name: str = _knob("exp", "run folder name (made unique unless resuming)")
    exist_ok: bool = _knob(False, "reuse the run folder if it exists")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The budget, optimiser and schedule of the `fast` recipe, which every built-in architecture's
# recipe shares: AdamW with warm-up and cosine decay, batch 4, flips.
FAST_SCHEDULE: dict[str, Any] = {
    "epochs": 15,
    "steps": 200,
    "batch": 4,
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 0.05,
    "scheduler": "cosine",
    "warmup_steps": 50,
    "min_lr": 1e-5,
    "hflip": 0.5,
    "val_every": 5,
}

# Named recipes: the values that differ from the defaults, applied on top of them. Each names its
# architecture; a config that names none trains the weights' own (weights=), else seed.
RECIPES: dict[str, dict[str, Any]] = {
    # The seed system. The defaults are its schedule (Adam 1e-4, x0.8 every 5 epochs, floor 3e-7,
    # batch 32, 100 x 100 steps, IoU-0.4 matching with the seed's anchors, no flips); the recipe
    # names the architecture and its loss, softmax CE over all anchors + MSE offsets.
    "seed": {"model": DEFAULT_MODEL, "loss": "seed"},
    # The best built-in recipe for the seed architecture on CPU: the per-level anchor sizes the
    # seed meant to use, IoU-0.5 matching plus the forced best anchor, SSD hard negatives (3:1)
    # with smooth-L1, AdamW with warm-up and cosine decay, flips (bf16 and channels_last: defaults).
    "fast": {
        "model": DEFAULT_MODEL,
        "anchors": "seed-intended",
        "loss": "ssd",
        "iou_threshold": 0.5,
        "bn_momentum": 0.1,
        **FAST_SCHEDULE,
    },
}
# The other built-in architectures start from `fast` (the same budget, optimiser and schedule,
# so that the leaderboard compares architectures, not recipes).
RECIPES["seed-fpn"] = {**RECIPES["fast"], "model": "seed-fpn"}
RECIPES["nano"] = {**RECIPES["fast"], "model": "nano"}
# The anchor-free ones take their head's loss (TAL, BCE on soft targets, CIoU, DFL).
RECIPES["csp-n"] = {**RECIPES["fast"], "model": "csp-n", "loss": "quality"}
RECIPES["csp-s"] = {**RECIPES["fast"], "model": "csp-s", "loss": "quality"}
RECIPES["csp-t"] = {**RECIPES["fast"], "model": "csp-t", "loss": "quality"}
RECIPES["csp-t-nms-free"] = {**RECIPES["fast"], "model": "csp-t-nms-free", "loss": "quality"}


# What training on a dataset folder with no recipe named adds to the model's own recipe (the
# `fast` schedule where no model is named): one pass over the data per epoch, 100 epochs, the
# input size from the data (`engine.training_data.input_size_from_data`), letterboxed images,
# weight EMA averaging over about the last 200 updates (decay 0.995, warm-up tau 100 updates: with
# Ultralytics' 0.9999 and tau 2000, a few hundred images give too few updates for the average to
# act, and fine-tuning from `base` on 300 images passed 0.808 val mAP@[.5:.95] at epoch 21 rather
# than 9), Ultralytics' default augmentation plus copy-paste on every image (measured on
# BENCHMARKS.md's own-data task: 300 images, copy_paste 0 / 0.3 / 0.5 / 0.7 / 0.85 / 1.0 gave
# 0.840 / 0.854 / 0.856 / 0.859 / 0.858 / 0.860 mAP@[.5:.95]), mosaic and copy-paste switched off
# for the last 10 epochs, validation every epoch. `epochs` is the one number most users set.
DATASET_DEFAULTS: dict[str, Any] = {
    "epochs": 100,
    "steps": None,
    "imgsz": None,
    "val_every": 1,
    "letterbox": True,
    "ema": 0.995,  # with the default warm-up, ema_tau 100
    "mosaic": 1.0,
    "translate": 0.1,
    "scale": 0.5,
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "copy_paste": 1.0,
    "close_mosaic": 10,
}


def dataset_defaults(model: str | None) -> dict[str, Any]:
    """The values a dataset-folder run with no recipe starts from: a built-in `model`'s recipe
    (a spec file or none named: the `fast` schedule alone, leaving the loss to the head and the
    architecture to the weights or the default), then DATASET_DEFAULTS."""
    base = RECIPES[architecture_recipe(model)] if model in RECIPES else FAST_SCHEDULE
    return {**base, **DATASET_DEFAULTS}


def architecture_recipe(model: str) -> str:
    """The recipe an architecture is compared with: its own, or `fast` for `seed` (whose
    `seed` recipe is the seed's own schedule)."""
    return model if model in RECIPES and model != "seed" else "fast"


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def config_keys() -> list[str]:
    return list(_FIELDS)


def make_config(
    recipe: str | None = None,
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Build a config from a recipe name, a YAML file and overrides (later wins). A dataset
    folder (`data`) with no recipe named starts from `dataset_defaults(model)`."""
    values: dict[str, Any] = {}
    if recipe is not None:
        if recipe not in RECIPES:
            raise OnestageError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
        values.update(_coerced(RECIPES[recipe], f"recipe {recipe}"))
    if yaml_path is not None:
        values.update(_coerced(_check_keys(load_yaml(yaml_path), str(yaml_path)), str(yaml_path)))
    if overrides:
        values.update(_coerced(_check_keys(overrides, "override"), "override"))
    if recipe is None and values.get("data") is not None:
        base = dataset_defaults(values.get("model"))
        values = {**_coerced(base, "dataset defaults"), **values}
    if "imgsz" in values and values["imgsz"] is None and values.get("data") is None:
        raise OnestageError("imgsz=null (the input size from the data) needs a dataset (data=DIR)")
    return TrainConfig(**values)


def _coerced(values: dict[str, Any], source: str) -> dict[str, Any]:
    """`coerce_value` for each value; an error names `source` (the file, say)."""
    try:
        return {key: coerce_value(key, value) for key, value in values.items()}
    except OnestageError as error:
        raise OnestageError(f"{source}: {error}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a malformed file is a one-line error naming it."""
    path = Path(path)
    try:
        loaded = parse_yaml(read_text_within(path))
    except FileNotFoundError:
        raise OnestageError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise OnestageError(f"{path}: cannot read the config file ({first_line(error)})") from None
    except MalformedText as error:
        where = f":{error.line}" if error.line is not None else ""
        raise OnestageError(f"{path}{where}: malformed YAML ({error.problem})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise OnestageError(f"{path}: expected a mapping of config keys")
    return loaded


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value parsed as YAML (`lr=1e-3`, `hflip=0.5`, `data=null`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise OnestageError(f"override {text!r}: expected KEY=VALUE")
    try:
        return key.strip(), parse_yaml(raw)  # an empty value reads as None
    except MalformedText as error:
        raise OnestageError(f"override {text!r}: malformed YAML ({error.problem})") from None


def coerce_value(key: str, value: Any) -> Any:
    """Check a value against the field's type (ints accepted for floats, None where optional)
    and against its valid names or range; the value, as the field's type."""
    typed = _typed(key, value)
    _check_valid(key, typed)
    return typed


def _check_valid(key: str, value: Any) -> None:
    """Refuse a value outside the knob's valid names or range (None passed the type check)."""
    valid: Valid = _FIELDS[key].metadata["valid"]
    if value is None or valid is None or value in valid:
        return
    null = " or null" if type(None) in _field_types()[key] else ""
    if isinstance(valid, Range):
        raise OnestageError(
            f"config key {key!r}: {_shortened(value)} is out of range; valid: {valid}{null}"
        )
    names = ", ".join(valid) if isinstance(valid, tuple) else str(valid)
    raise OnestageError(
        f"config key {key!r}: unknown value {_shortened(value)}; valid: {names}{null}"
    )


def _typed(key: str, value: Any) -> Any:
    """The value as the field's type (ints accepted for floats, None where optional)."""
    kinds = _field_types()[key]
    if value is None:
        if type(None) in kinds:
            return None
        raise OnestageError(f"config key {key!r} cannot be empty")
    for kind in kinds:
        if kind is float and isinstance(value, str):
            try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                return float(value)
            except ValueError:
                continue
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise OnestageError(
                    f"config key {key!r}: {_shortened(value)} is out of range"
                ) from None
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is bool and isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    names = " or ".join(k.__name__ for k in kinds)
    raise OnestageError(f"config key {key!r} expects {names}, got {_shortened(value)}")


def _shortened(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _check_keys(values: dict[str, Any], source: str) -> dict[str, Any]:
    valid = config_keys()
    unknown = [key for key in values if key not in valid]
    if unknown:
        raise OnestageError(
            f"{source}: unknown config key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(valid)}"
        )
    return values


def _field_types() -> dict[str, tuple[type, ...]]:
    hints = typing.get_type_hints(TrainConfig)
    result = {}
    for name, hint in hints.items():
        if isinstance(hint, types.UnionType):  # `X | None`, as every optional field is written
            result[name] = typing.get_args(hint)
        else:
            result[name] = (hint,)
    return result


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the config as YAML (atomically)."""
    from onestage.fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
