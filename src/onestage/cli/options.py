"""Option types shared by several commands, and the loading of the plugins they name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

# Synthetic generator options: `data synth`, `data show --synthetic`, `evaluate --synthetic`.
SizeOption = Annotated[int, typer.Option("--size", help="Image side in pixels (square images).")]
ObjectsOption = Annotated[str, typer.Option("--objects", help="Objects per image: N or MIN-MAX.")]
SizeRangeOption = Annotated[
    str,
    typer.Option(
        "--size-range",
        help="Icon side as a fraction of the image side, MIN-MAX (seed: 50-160 px at 320).",
    ),
]
OverlapOption = Annotated[
    float, typer.Option("--max-overlap", help="Placement limit: max IoU x normalised area.")
]
ClassesOption = Annotated[
    str | None,
    typer.Option(
        "--classes",
        help="Comma-separated emoji: seed animal names, Unicode names ('giraffe face'), "
        "code points (U+1F992), optionally NAME=EMOJI. Default: the seed's 15 animals.",
    ),
]
IconsOption = Annotated[
    Path | None, typer.Option("--icons", help="Folder of RGBA PNG icons (class = file stem).")
]
BackgroundsOption = Annotated[
    Path | None,
    typer.Option("--backgrounds", help="Folder of background photos (default: procedural)."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")]

WeightsOption = Annotated[
    str, typer.Option("--weights", help="Weights file, or shipped weights by name.")
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
StrictOption = Annotated[
    bool, typer.Option("--strict", help="Refuse boxes slightly outside the image (no clipping).")
]
ModelOption = Annotated[
    str, typer.Option("--model", help="Built-in architecture name or spec file (.yaml).")
]
# The config a training run starts from: `train` and `tune`.
ConfigFileOption = Annotated[
    Path | None, typer.Option("--config", help="YAML file of config keys.")
]
RecipeOption = Annotated[str | None, typer.Option("--recipe", help="Named recipe, e.g. seed.")]
TrainModelOption = Annotated[
    str | None, typer.Option("--model", help="Built-in architecture name or spec file (.yaml).")
]
DataOption = Annotated[
    str | None, typer.Option("--data", help="Dataset folder (default: synthetic).")
]
PluginOption = Annotated[
    list[Path] | None,
    typer.Option("--plugin", help="Python file registering your own blocks (repeatable)."),
]
TrustPluginOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--trust-plugin",
        help="As --plugin, and used even where its source differs from the one the weights "
        "were trained with (repeatable).",
    ),
]


def load_user_plugins(plugin: list[Path] | None, trust_plugin: list[Path] | None = None) -> None:
    """Run the plugin files named by --plugin and --trust-plugin (the only code onestage runs
    that is not its own); with none named, nothing is imported (an exported file's run needs
    no torch)."""
    if not (plugin or trust_plugin):
        return
    from onestage.models import load_plugins

    load_plugins(plugin or [])
    load_plugins(trust_plugin or [], trusted=True)


def config_values(overrides: list[str] | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The config keys a training command was given: its KEY=VALUE overrides, then the flags
    that were set (None: not given)."""
    from onestage.config import parse_override

    values = dict(parse_override(text) for text in overrides or [])
    values.update({key: value for key, value in flags.items() if value is not None})
    return values


BackendOption = Annotated[
    str | None,
    typer.Option("--backend", help="torch, onnxruntime or openvino (exported files: their own)."),
]
PrecisionOption = Annotated[
    str | None,
    typer.Option("--precision", help="openvino: f32 or bf16 (exported files: their own)."),
]
