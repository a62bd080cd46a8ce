"""`onestage tune`: a tuning study on Optuna, run by as many workers as are started."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
from onestage.tune.choices import DEFAULT_OBJECTIVE, DIRECTIONS, HEARTBEAT_S, PRUNERS, SAMPLERS


@app.command(
    "tune",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
)
def tune_command(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Config overrides KEY=VALUE for every trial.", show_default=False),
    ] = None,
    space: Annotated[
        Path, typer.Option("--space", help="YAML search space: KEY: {range|log_range|...}.")
    ] = Path("space.yaml"),
    trials: Annotated[int, typer.Option("--trials", help="Trials this worker runs.")] = 10,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage URL, or journal:FILE (default: study.db in the study folder).",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Study name and folder.")] = "study",
    project: Annotated[str, typer.Option("--project", help="Folder of studies.")] = "runs/tune",
    objective: Annotated[
        str, typer.Option("--objective", help="results.csv column scoring a trial.")
    ] = DEFAULT_OBJECTIVE,
    direction: Annotated[
        str, typer.Option("--direction", help="maximize or minimize the objective.")
    ] = DIRECTIONS[0],
    sampler: Annotated[str, typer.Option("--sampler", help="tpe or random.")] = SAMPLERS[0],
    pruner: Annotated[
        str, typer.Option("--pruner", help="median (stop poor trials early) or none.")
    ] = PRUNERS[0],
    seed: Annotated[int | None, typer.Option("--seed", help="The sampler's seed.")] = None,
    heartbeat: Annotated[
        int, typer.Option("--heartbeat", help="Seconds between a worker's heartbeats.")
    ] = HEARTBEAT_S,
    config_file: ConfigFileOption = None,
    recipe: RecipeOption = None,
    model: TrainModelOption = None,
    data: DataOption = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs per trial.")] = None,
    plugin: PluginOption = None,
    trust_plugin: TrustPluginOption = None,
) -> None:
    """Tune config keys with Optuna: each trial a training run in runs/tune/NAME/trials."""
    from onestage.config import make_config
    from onestage.errors import OnestageError
    from onestage.tune.space import read_space
    from onestage.tune.study import LEADERBOARD, StudySettings, run_study

    load_user_plugins(plugin, trust_plugin)
    if trials < 1 or heartbeat < 1:
        raise OnestageError("--trials and --heartbeat take a whole number above 0")
    dimensions = read_space(space)
    values = config_values(overrides, {"model": model, "data": data, "epochs": epochs})
    base = make_config(recipe, config_file, values)
    folder = Path(project) / name
    settings = StudySettings(
        folder, name, trials, storage, objective, direction, sampler, pruner, seed, heartbeat
    )
    study = run_study(settings, dimensions, base)
    finished = [trial for trial in study.trials if trial.value is not None]
    line = f"study {name}: {len(study.trials)} trials ({len(finished)} scored)"
    if finished:
        best = study.best_trial
        line += (
            f"; best trial {best.number}: {best.value:.4f} with "
            + ", ".join(f"{key}={value}" for key, value in best.params.items())
            + f" ({best.user_attrs.get('run')})"
        )
    console.print(line + f"; leaderboard {folder / LEADERBOARD}", highlight=False)
