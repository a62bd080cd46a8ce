"""Run logging beside results.csv, for the tools people already use (`logger=` in the config):
TensorBoard event files in the run folder (`torch.utils.tensorboard`), or an MLflow run (a local
SQLite store, PROJECT/mlflow.db with artifacts in PROJECT/mlartifacts, unless `logger_uri` or
$MLFLOW_TRACKING_URI names another store or a tracking server). Either gets the config as
parameters, every epoch's results.csv row as scalars, and at the end the run's plots (and, for
MLflow, the best weights) as artifacts. Each is an optional extra: a missing one is a one-line
error before training starts.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any, Protocol

from onestage.config import TrainConfig
from onestage.errors import OnestageError, first_line

EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # logger -> pip extra


class RunLogger(Protocol):
    def log_epoch(self, row: dict[str, float]) -> None: ...

    def finish(self, run_dir: Path, best_weights: Path | None) -> None: ...

    def close(self) -> None: ...


def check_run_logger(logger: str) -> None:
    """A one-line error, before a run starts, when the logger's package is not installed."""
    if logger in EXTRAS and importlib.util.find_spec(EXTRAS[logger]) is None:
        raise _missing(logger)


def open_run_logger(config: TrainConfig, run_dir: Path) -> RunLogger | None:
    """The logger the config names for the run in `run_dir` (None for "none")."""
    if config.logger == "tensorboard":
        return TensorBoardLogger(config, run_dir)
    if config.logger == "mlflow":
        return MlflowLogger(config, run_dir)
    return None


def _missing(logger: str) -> OnestageError:
    return OnestageError(
        f"logger={logger} needs its package: pip install 'onestage[{EXTRAS[logger]}]'"
    )


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """A results.csv row's finite numbers but the epoch (NaN: no validation that epoch)."""
    return {
        key: float(value)
        for key, value in row.items()
        if key != "epoch" and isinstance(value, int | float) and math.isfinite(value)
    }


def _parameters(config: TrainConfig) -> dict[str, str | float | int | bool]:
    """The config as flat parameters: numbers and booleans as they are, None as "none", the
    rest as text."""
    parameters: dict[str, str | float | int | bool] = {}
    for key, value in config.to_dict().items():
        plain = isinstance(value, int | float | bool)
        parameters[key] = value if plain else "none" if value is None else str(value)
    return parameters


class TensorBoardLogger:
    """Event files in the run folder: scalars per epoch, the config as hyperparameters with the
    best scores, the plots as images."""

    def __init__(self, config: TrainConfig, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.parameters = _parameters(config)
        self.best: dict[str, float] = {}

    def log_epoch(self, row: dict[str, float]) -> None:
        for key, value in _scalars(row).items():
            self.writer.add_scalar(key, value, int(row["epoch"]))
            if key.startswith("val/"):
                self.best[key] = max(self.best.get(key, -math.inf), value)
        self.writer.flush()

    def finish(self, run_dir: Path, best_weights: Path | None) -> None:
        import numpy as np
        from PIL import Image

        metrics = {f"best/{key}": value for key, value in self.best.items()}
        self.writer.add_hparams(self.parameters, metrics, run_name=".")
        for plot in sorted(run_dir.glob("*.png")):
            with Image.open(plot) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.writer.add_image(f"plots/{plot.stem}", pixels, dataformats="HWC")
        self.close()

    def close(self) -> None:
        self.writer.close()


class MlflowLogger:
    """One MLflow run per training run (named after its folder, in the experiment named after
    the project folder): parameters, metrics per epoch, plots and best weights as artifacts."""

    def __init__(self, config: TrainConfig, run_dir: Path) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise _missing("mlflow") from None
        from mlflow.entities import Param

        project = Path(config.project).resolve()
        uri = (
            config.logger_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{project / 'mlflow.db'}"
        )
        try:
            self.client = MlflowClient(tracking_uri=uri)
            experiment = self.client.get_experiment_by_name(project.name)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(
                    project.name, artifact_location=(project / "mlartifacts").as_uri()
                )
            )
            self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
            params = [Param(key, str(value)) for key, value in _parameters(config).items()]
            self.client.log_batch(self.run_id, params=params)
        except Exception as error:  # MLflow's own errors, and a tracking server's
            raise OnestageError(f"MLflow at {uri}: {first_line(error)}") from None
        self.finished = False

    def log_epoch(self, row: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(row["epoch"])
        metrics = [Metric(key, value, now, step) for key, value in _scalars(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, run_dir: Path, best_weights: Path | None) -> None:
        for plot in sorted(run_dir.glob("*.png")):
            self.client.log_artifact(self.run_id, str(plot), artifact_path="plots")
        if best_weights is not None and best_weights.is_file():
            self.client.log_artifact(self.run_id, str(best_weights), artifact_path="weights")
        self.client.set_terminated(self.run_id, "FINISHED")
        self.finished = True

    def close(self) -> None:
        if not self.finished:
            self.client.set_terminated(self.run_id, "FAILED")
            self.finished = True
