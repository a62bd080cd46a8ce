"""`onestage models`, `summary` and `anchors`: the architectures, their layers and priors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onestage.cli.app import app, console
from onestage.cli.options import ModelOption, PluginOption, load_user_plugins


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

    from onestage.models import build_model, load_spec, model_names, spec_names
    from onestage.models.spec import SPECS_DIR
    from onestage.models.summary import summarize

    load_user_plugins(plugin)
    if yaml_out:
        if name is None:
            raise typer.BadParameter("--yaml needs an architecture name")
        built_in = SPECS_DIR / f"{name}.yaml"
        text = built_in.read_text(encoding="utf-8") if name in spec_names() else None
        text = text or yaml.safe_dump(load_spec(name).to_dict(), sort_keys=False)
        console.print(text, markup=False, highlight=False, end="")
        return
    table = Table(title=f"architectures ({classes} classes)")
    for column in ("name", "head", "kind", "priors/cell", "input", "parameters", "GFLOPs"):
        left = column in ("name", "head", "kind")
        table.add_column(column, justify="left" if left else "right")
    for architecture in [name] if name else model_names():
        model = build_model(architecture, num_classes=classes)
        summary = summarize(model, model.input_size)
        spec = getattr(model, "spec", None)
        head = spec.head[-1].block if spec is not None else type(model).__name__
        kind = "anchor-free" if getattr(model, "box_coding", "anchors") == "points" else "anchors"
        table.add_row(
            architecture,
            head,
            kind,
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
    from onestage.models import build_model
    from onestage.models.summary import format_summary, summarize

    load_user_plugins(plugin)
    network = build_model(model, num_classes=classes, input_size=imgsz)
    console.print(format_summary(summarize(network, input_size=imgsz)), highlight=False)


@app.command("anchors")
def anchors_command(
    model: ModelOption = "seed",
    config_name: Annotated[str, typer.Option("--config", help="Anchor config name.")] = "seed",
    imgsz: Annotated[int, typer.Option("--imgsz", help="Input side in pixels.")] = 320,
    out: Annotated[Path | None, typer.Option("--out", help="Write an (N, 4) .npy file.")] = None,
    plugin: PluginOption = None,
) -> None:
    """Print the priors per level (anchors, or an anchor-free head's cell points); optionally
    save them in model order: normalised xyxy anchors (N, 4), or normalised xy points (N, 2)."""
    import io

    import numpy as np

    from onestage.fileio import atomic_write_bytes
    from onestage.models import build_model
    from onestage.priors.codings import PointCoding, box_coding_for

    load_user_plugins(plugin)
    network = build_model(model, num_classes=1, input_size=imgsz, anchors=config_name)
    coding = box_coding_for(network, imgsz)
    anchor_free = isinstance(coding, PointCoding)
    kind = "cell points" if anchor_free else "anchors"
    title = f"{kind} of {model} at {imgsz}px" + ("" if anchor_free else f" ({config_name})")
    table = Table(title=title)
    table.add_column("level")
    table.add_column(kind, justify="right")
    feature_sizes = network.feature_sizes_for(imgsz)
    for (height, width), count in zip(feature_sizes, coding.level_sizes, strict=True):
        table.add_row(f"{height}x{width}", f"{count:,}")
    table.add_row("total", f"{sum(coding.level_sizes):,}")
    console.print(table)
    if out is not None:
        priors = (coding.points_xy if anchor_free else coding.anchors_xyxy).cpu().numpy()
        buffer = io.BytesIO()
        np.save(buffer, priors)
        atomic_write_bytes(out, buffer.getvalue())
        unit = "normalised xy points" if anchor_free else "normalised xyxy anchors"
        console.print(f"wrote {priors.shape} {unit} to [bold]{out}[/]")
