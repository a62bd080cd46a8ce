"""A tuning study on Optuna: each trial trains one ordinary run with the values its sampler
(TPE by default, or random) drew from the search space, reports every validation to the pruner
(median by default: a trial below the median of earlier trials at the same epoch stops there;
or none) and is scored by the best epoch of its objective column (validation mAP@[.5:.95] by
default, maximised; a loss column is minimised with direction "minimize").

The study lives in `runs/tune/NAME/`: `study.db` (SQLite, the default storage), `trials/` (one
run folder per trial), `leaderboard.csv` and the plots. Any Optuna storage URL (a shared
database, or `journal:FILE` for a journal file on a shared file system) lets workers on several
machines run one study: the same command started on each. Workers send a heartbeat, so a trial
whose worker was killed is marked failed by the next worker that starts a trial.
"""

from __future__ import annotations

import csv
import io
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onestage.config import TrainConfig, make_config
from onestage.engine.progress import SilentProgress
from onestage.errors import OnestageError, first_line
from onestage.fileio import atomic_write_bytes, atomic_write_text
from onestage.tune.choices import DEFAULT_OBJECTIVE, DIRECTIONS, HEARTBEAT_S, PRUNERS, SAMPLERS
from onestage.tune.space import Dimension

STUDY_FILE = "study.db"
LEADERBOARD = "leaderboard.csv"
PLOTS = {"optimisation_history.png": "history", "parameter_importance.png": "importance"}
STORAGE_ATTEMPTS = 4


@dataclass(frozen=True)
class StudySettings:
    """What `run_study` needs besides the search space and the base config."""

    folder: Path  # runs/tune/NAME
    name: str
    trials: int  # run by this worker
    storage: str | None = None  # None: study.db in the folder
    objective: str = DEFAULT_OBJECTIVE  # a results.csv column: its best epoch scores a trial
    direction: str = DIRECTIONS[0]  # maximize, or minimize (a loss column)
    sampler: str = SAMPLERS[0]  # tpe
    pruner: str = PRUNERS[0]  # median
    seed: int | None = None
    heartbeat_s: int = HEARTBEAT_S


def optuna_module() -> Any:
    """Optuna, or a one-line error naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise OnestageError("onestage tune needs Optuna: pip install 'onestage[tune]'") from None
    return optuna


def open_study(settings: StudySettings) -> Any:
    """The study in its storage, created by the first worker, joined by the others."""
    optuna = optuna_module()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for value, valid, what in (
        (settings.sampler, SAMPLERS, "sampler"),
        (settings.pruner, PRUNERS, "pruner"),
        (settings.direction, DIRECTIONS, "direction"),
    ):
        if value not in valid:
            raise OnestageError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    settings.folder.mkdir(parents=True, exist_ok=True)
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if settings.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        study_name=settings.name,
        storage=_storage(optuna, settings),
        direction=settings.direction,
        sampler=samplers[settings.sampler](seed=settings.seed),
        pruner=pruner,
        load_if_exists=True,
    )


def _storage(optuna: Any, settings: StudySettings) -> Any:
    """An RDB storage with a heartbeat (SQLite in the folder by default), or a journal file."""
    url = settings.storage or f"sqlite:///{(settings.folder / STUDY_FILE).resolve()}"
    if url.startswith("journal:"):
        backend = optuna.storages.journal.JournalFileBackend(url.removeprefix("journal:"))
        return optuna.storages.JournalStorage(backend)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}

    def connect() -> Any:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=settings.heartbeat_s,
            grace_period=2 * settings.heartbeat_s,
        )

    # Workers started together race to create a new database's tables: the loser finds them
    # made when it tries again.
    for attempt in range(STORAGE_ATTEMPTS - 1):
        try:
            return connect()
        except Exception:  # SQLAlchemy's and Optuna's own errors
            time.sleep(0.5 * (attempt + 1))
    try:
        return connect()
    except Exception as error:  # a bad URL, an unreachable server
        raise OnestageError(f"storage {url!r}: {first_line(error)}") from None


class TrialProgress(SilentProgress):
    """Reports each validation to the trial and stops a trial the pruner gives up on."""

    def __init__(self, trial: Any, objective: str, optuna: Any) -> None:
        self.trial, self.objective, self.optuna = trial, objective, optuna

    def end_epoch(self, row: dict[str, float]) -> None:
        value = row.get(self.objective, math.nan)
        if math.isnan(value):  # no validation this epoch
            return
        self.trial.report(value, int(row["epoch"]))
        if self.trial.should_prune():
            raise self.optuna.TrialPruned(f"epoch {int(row['epoch'])}: {value:.4f}")


def run_study(settings: StudySettings, space: tuple[Dimension, ...], base: TrainConfig) -> Any:
    """Run `settings.trials` trials of the study on this worker; returns the study."""
    from onestage.engine.trainer import train

    optuna = optuna_module()
    study = open_study(settings)

    def objective(trial: Any) -> float:
        values = {dimension.key: dimension.suggest(trial) for dimension in space}
        run = {"project": str(settings.folder / "trials"), "name": f"trial_{trial.number:04d}"}
        config = make_config(overrides={**base.to_dict(), **values, **run, "exist_ok": True})
        began = time.perf_counter()
        result = train(config, TrialProgress(trial, settings.objective, optuna))
        trial.set_user_attr("run", str(result.run_dir))
        trial.set_user_attr("seconds", round(time.perf_counter() - began, 1))
        column = (row.get(settings.objective, math.nan) for row in result.history)
        scores = [value for value in column if not math.isnan(value)]
        if not scores:
            raise OnestageError(
                f"trial {trial.number}: its run has no {settings.objective!r} column to score "
                "(validation off?)"
            )
        return max(scores) if settings.direction == "maximize" else min(scores)

    study.optimize(objective, n_trials=settings.trials, catch=(OnestageError,))
    write_reports(study, settings.folder)
    return study


def write_reports(study: Any, folder: Path) -> None:
    """The study's leaderboard CSV (best first) and its plots, in `folder`."""
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    trials = sorted(
        study.trials, key=lambda t: (t.value is None, sign * (t.value or 0.0), t.number)
    )
    keys = sorted({key for trial in trials for key in trial.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "state", *keys, "score", "seconds", "run"])
    for trial in trials:
        writer.writerow(
            [
                trial.number,
                trial.state.name.lower(),
                *(trial.params.get(key, "") for key in keys),
                "" if trial.value is None else f"{trial.value:.6g}",
                trial.user_attrs.get("seconds", ""),
                trial.user_attrs.get("run", ""),
            ]
        )
    atomic_write_text(folder / LEADERBOARD, buffer.getvalue())
    _write_plots(study, folder)


def _write_plots(study: Any, folder: Path) -> None:
    """Optimisation history and parameter importance as PNG (importance needs two finished
    trials that differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    finished = [t for t in study.trials if t.value is not None]
    drawers = {"history": optuna_plots.plot_optimization_history}
    if len(finished) >= 2 and len({tuple(t.params.items()) for t in finished}) >= 2:
        drawers["importance"] = optuna_plots.plot_param_importances
    for filename, kind in PLOTS.items():
        if kind not in drawers:
            continue
        with warnings.catch_warnings():  # Optuna's notes on too few trials to rank
            warnings.simplefilter("ignore")
            axes = drawers[kind](study)
        buffer = io.BytesIO()
        axes.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(axes.figure)
        atomic_write_bytes(folder / filename, buffer.getvalue())
