"""`onestage models`, `summary` and `anchors`: the architectures, their layers and priors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onestage.cli.app import app, console
from onestage.cli.options import ModelOption, PluginOption


@app.command("models")
def models_command(
    name: Annotated[str | None, typer.Argument(help="A built-in architecture or spec.")] = None,
    yaml_out: Annotated[
        bool, typer.Option("--yaml", help="Print the spec as YAML, to copy and edit.")
    ] = False,
    classes: Annotated[int, typer.Option("--classes", help="Number of classes.")] = 15,
    plugin: PluginOption = None,
) -> None:
    """List the built-in architectures (head, parameters, GFLOPs), or print one's spec."""
    import yaml

    from onestage.models import build_model, import_plugins, load_spec, model_names, spec_names
    from onestage.models.spec import SPECS_DIR
    from onestage.models.summary import summarize

    import_plugins(plugin or [])
    if yaml_out:
        if name is None:
            raise typer.BadParameter("--yaml needs an architecture name")
        built_in = SPECS_DIR / f"{name}.yaml"
        text = built_in.read_text(encoding="utf-8") if name in spec_names() else None
        text = text or yaml.safe_dump(load_spec(name).to_dict(), sort_keys=False)
        console.print(text, markup=False, highlight=False, end="")
        return
    table = Table(title=f"architectures ({classes} classes)")
    for column in ("name", "head", "priors/cell", "input", "parameters", "GFLOPs"):
        table.add_column(column, justify="left" if column in ("name", "head") else "right")
    for architecture in [name] if name else model_names():
        model = build_model(architecture, num_classes=classes)
        summary = summarize(model, model.input_size)
        spec = getattr(model, "spec", None)
        head = spec.head[-1].block if spec is not None else type(model).__name__
        table.add_row(
            architecture,
            head,
            str(model.anchors_per_cell),
            f"{model.input_size}",
            f"{summary.total_params:,}",
            f"{summary.gflops:.2f}",
        )
    console.print(table)


@app.command("summary")
def summary_command(
    model: ModelOption = "seed",
    classes: Annotated[int, typer.Option("--classes", help="Number of classes.")] = 15,
    imgsz: Annotated[int, typer.Option("--imgsz", help="Input side in pixels.")] = 320,
    plugin: PluginOption = None,
) -> None:
    """Print a Keras-style layer table with parameter totals and GFLOPs per image."""
    from onestage.models import build_model, import_plugins
    from onestage.models.summary import format_summary, summarize

    import_plugins(plugin or [])
    network = build_model(model, num_classes=classes, input_size=imgsz)
    console.print(format_summary(summarize(network, input_size=imgsz)), highlight=False)


@app.command("anchors")
def anchors_command(
    model: ModelOption = "seed",
    config_name: Annotated[str, typer.Option("--config", help="Anchor config name.")] = "seed",
    imgsz: Annotated[int, typer.Option("--imgsz", help="Input side in pixels.")] = 320,
    out: Annotated[Path | None, typer.Option("--out", help="Write an (N, 4) .npy file.")] = None,
) -> None:
    """Print anchor counts per level; optionally save normalised xyxy anchors in model order."""
    import io

    import numpy as np

    from onestage.anchors import anchor_counts_per_level, generate_anchors
    from onestage.fileio import atomic_write_bytes
    from onestage.models import build_model

    feature_sizes = build_model(model, num_classes=1, input_size=imgsz).feature_sizes_for(imgsz)
    counts = anchor_counts_per_level(config_name, feature_sizes)
    table = Table(title=f"{config_name} anchors for {model} at {imgsz}px")
    table.add_column("level")
    table.add_column("anchors", justify="right")
    for (height, width), count in zip(feature_sizes, counts, strict=True):
        table.add_row(f"{height}x{width}", f"{count:,}")
    table.add_row("total", f"{sum(counts):,}")
    console.print(table)
    if out is not None:
        anchors = generate_anchors(config_name, feature_sizes).numpy()
        buffer = io.BytesIO()
        np.save(buffer, anchors)
        atomic_write_bytes(out, buffer.getvalue())
        console.print(f"wrote {anchors.shape} normalised xyxy anchors to [bold]{out}[/]")
