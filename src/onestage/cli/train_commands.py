"""`onestage demo`, `train`, `summary` and `anchors`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from onestage.cli.app import app, console
from onestage.cli.options import (
    ConfigFileOption,
    DataOption,
    PluginOption,
    RecipeOption,
    TrainModelOption,
    TrustPluginOption,
    config_values,
    load_user_plugins,
)
from onestage.errors import OnestageError

if TYPE_CHECKING:
    from onestage.engine.trainer import TrainResult


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Demo folder.")] = Path("runs/demo"),
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 8,
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps per epoch.")] = 200,
) -> None:
    """The main job on built-in synthetic data: shipped weights, a short training run, scores."""
    from onestage.config import RECIPES
    from onestage.engine.demo import run_demo

    images = epochs * steps * RECIPES["fast"]["batch"]
    console.print(
        f"[bold]onestage demo[/]: seed architecture, synthetic animals; output in {out}/\n"
        f"1) shipped weights on a fixed synthetic test set, 2) {images:,} training images with "
        "the 'fast' recipe, 3) evaluation of the new weights"
    )
    summary = run_demo(out, RichTrainProgress(), epochs=epochs, steps=steps)
    for note in summary.notes:
        console.print(f"note: {note}")
    table = Table(title="demo results (fixed synthetic test set)")
    for column in ("weights", "VOC mAP@0.5", "COCO AP@[.5:.95]", "report"):
        table.add_column(column)
    for label, result, report in (
        ("shipped seed_animals", summary.shipped, summary.shipped_report),
        ("trained just now", summary.trained, summary.trained_report),
    ):
        if result is not None:
            table.add_row(label, f"{result.voc.map:.4f}", f"{result.coco.ap:.4f}", str(report))
    console.print(table)
    console.print(
        f"training run: [bold]{summary.run_dir}[/] (results.csv, results.png, val/, weights/)\n"
        f"data preview: [bold]{summary.data_preview}[/]; predictions drawn in each report's "
        "predictions_grid.png"
    )


class RichTrainProgress:
    """Draws one progress bar per epoch with loss parts, learning rate and images/s."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, status="")

    def step(self, parts: dict[str, float], lr: float, images_per_s: float) -> None:
        status = " ".join(f"{name} {value:.4f}" for name, value in parts.items())
        status += f" lr {lr:.2e} {images_per_s:.1f} img/s"
        self._progress.update(self._task, advance=1, status=status)

    def end_epoch(self, row: dict[str, float]) -> None:
        self._progress.stop()

    def message(self, text: str) -> None:
        console.print(f"note: {text}", highlight=False)


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
)
def train_command(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Config overrides KEY=VALUE (e.g. lr=0.001 hflip=0.5).", show_default=False
        ),
    ] = None,
    config_file: ConfigFileOption = None,
    recipe: RecipeOption = None,
    model: TrainModelOption = None,
    data: DataOption = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Number of epochs.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimiser steps per epoch.")] = None,
    batch: Annotated[
        int | None, typer.Option("--batch", help="Images per step (all processes).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    amp: Annotated[
        str | None, typer.Option("--amp", help="auto (bf16 where native), none, bf16 or fp16.")
    ] = None,
    channels_last: Annotated[
        bool | None, typer.Option("--channels-last/--no-channels-last", help="Memory format.")
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Data-loader workers.")] = None,
    patience: Annotated[int | None, typer.Option("--patience", help="Early-stop patience.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run folder name.")] = None,
    project: Annotated[str | None, typer.Option("--project", help="Folder of runs.")] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Run folder (or its weights) to continue.")
    ] = None,
    plugin: PluginOption = None,
    trust_plugin: TrustPluginOption = None,
) -> None:
    """Train a detector; writes runs/train/NAME/ (config, results.csv, plots, weights)."""
    from onestage.config import make_config
    from onestage.engine.elastic import continue_restarted_job
    from onestage.engine.run_folder import resume_config
    from onestage.engine.trainer import train

    load_user_plugins(plugin, trust_plugin)

    is_main = int(os.environ.get("RANK", "0")) == 0  # torchrun's rank 0, or a single process
    flags = {
        "model": model,
        "data": data,
        "epochs": epochs,
        "steps": steps,
        "batch": batch,
        "device": device,
        "amp": amp,
        "channels_last": channels_last,
        "workers": workers,
        "patience": patience,
        "name": name,
        "project": project,
    }
    values = config_values(overrides, flags)
    if resume is not None:
        if recipe is not None or config_file is not None:
            raise OnestageError(
                "--resume continues a run with its own config; drop --recipe/--config"
            )
        config = resume_config(resume, values)
    else:
        config = make_config(recipe, config_file, values)
        config, resume, note = continue_restarted_job(config, values)
        if note is not None and is_main:
            console.print(note, highlight=False)
    result = train(config, RichTrainProgress() if is_main else None, resume=resume)
    if is_main and result.run_dir is not None:
        console.print(training_summary(result), highlight=False)


def training_summary(result: TrainResult) -> str:
    """The closing line of a run: epochs, the best epoch with its scores, where things are."""
    line = f"done: {result.epochs_done} epochs" + (
        " (stopped early)" if result.stopped_early else ""
    )
    best = result.best_row
    if best is not None and "val/mAP50-95" in best:
        line += (
            f"; best epoch {result.best_epoch}: mAP@0.5 {best['val/mAP50']:.4f}, "
            f"mAP@[.5:.95] {best['val/mAP50-95']:.4f}"
        )
    elif best is not None:
        line += f"; best epoch {result.best_epoch}: train loss {best['train/loss']:.4f}"
    if result.best_weights is not None:
        line += f"; best weights {result.best_weights}"
    return line + f"; results in {result.run_dir}"
