"""`onestage export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onestage.cli.app import app, console
from onestage.cli.options import (
    PluginOption,
    TrustPluginOption,
    WeightsOption,
    load_user_plugins,
)


@app.command("export")
def export_command(
    weights: WeightsOption = "animals",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="onnx or openvino (default: openvino where the CPU runs bf16, else onnx).",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="f32, int8 (both formats) or bf16 (openvino; its default where the CPU runs it).",
        ),
    ] = None,
    calib: Annotated[
        int, typer.Option("--calib", help="int8: calibrate on N synthetic images.")
    ] = 200,
    calib_data: Annotated[
        Path | None, typer.Option("--calib-data", help="int8: calibrate on a dataset's images.")
    ] = None,
    calib_split: Annotated[
        str | None, typer.Option("--calib-split", help="Split of --calib-data (default train).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output file (.onnx or .xml; default beside the weights)."),
    ] = None,
    nms: Annotated[
        bool,
        typer.Option(
            "--nms", help="Decoding, scores and NMS in the graph: one runtime call, detections out."
        ),
    ] = False,
    plugin: PluginOption = None,
    trust_plugin: TrustPluginOption = None,
) -> None:
    """Export weights to ONNX or OpenVINO: one file that predicts on its own (metadata inside)."""
    from onestage.export.exporter import export_weights

    load_user_plugins(plugin, trust_plugin)
    with console.status("exporting"):
        result = export_weights(
            weights, fmt, precision, out, calib, calib_data, calib_split, nms=nms
        )
    extra = f" and {result.path.with_suffix('.bin').name}" if result.format == "openvino" else ""
    console.print(
        f"exported [bold]{result.path}[/]{extra} ({result.format}, {result.precision}) in "
        f"{result.seconds:.1f} s; "
        f"{'boxes and scores' if nms else 'raw outputs'} within {result.max_abs_diff:.2g} of "
        "torch fp32 on "
        f"{result.parity_images} images",
        highlight=False,
    )
