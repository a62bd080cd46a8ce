"""The Typer apps and the consoles every command module shares."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    help="Build, train, evaluate and ship one-stage object detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Make, check, convert, split and view detection datasets.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)

FORMAT_HELP = "Dataset format: yolo, voc or coco."
