"""Run logging beside results.csv (`logger=`, `engine.run_logging`): TensorBoard event files in
the run folder and an MLflow run in a local SQLite store hold the config, every epoch's scalars
and the plots (MLflow: the best weights too); a missing package is a one-line error before the
run folder exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from helpers import TINY_FIVE_LEVEL_SSD_SPEC, TINY_TRAINING_OVERRIDES
from onestage.config import make_config
from onestage.engine import run_logging
from onestage.engine.trainer import train
from onestage.errors import OnestageError


def tiny_run(tmp_path: Path, logger: str, **extra) -> Path:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_FIVE_LEVEL_SSD_SPEC, encoding="utf-8")
    overrides = {**TINY_TRAINING_OVERRIDES, "epochs": 2, "val_every": 1, "model": str(spec),
                 "logger": logger, "project": str(tmp_path / "runs"), "name": "run"}  # fmt: skip
    overrides.update(extra)
    return train(make_config("seed", overrides=overrides)).run_dir


def test_tensorboard_gets_each_epochs_scalars_the_config_and_the_plots(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = tiny_run(tmp_path, "tensorboard", lr=0.0005)
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "val/mAP50", "val/mAP50-95", "lr"} <= set(tags["scalars"])
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2]
    assert "plots/results" in tags["images"]
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["lr"].number_value == 0.0005 and hparams["logger"].string_value == "tensorboard"


def test_mlflow_gets_parameters_metrics_plots_and_best_weights(tmp_path):
    from mlflow import MlflowClient

    run_dir = tiny_run(tmp_path, "mlflow", lr=0.0005)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("runs")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.0005" and run.data.params["logger"] == "mlflow"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(metric.step for metric in history) == [1, 2]
    artifacts = {
        item.path
        for folder in ("plots", "weights")
        for item in client.list_artifacts(run.info.run_id, folder)
    }
    assert artifacts == {"plots/results.png", "weights/best.safetensors"}
    assert (tmp_path / "runs" / "mlartifacts").is_dir()


@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_missing_logger_package_is_one_line_before_the_run_starts(tmp_path, monkeypatch, logger):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        run_logging.importlib.util,
        "find_spec",
        lambda name, *args: None if name == logger else real(name, *args),
    )
    with pytest.raises(OnestageError) as raised:
        tiny_run(tmp_path, logger)
    assert str(raised.value) == (
        f"logger={logger} needs its package: pip install 'onestage[{logger}]'"
    )
    assert not (tmp_path / "runs").exists()


def test_an_unknown_logger_is_refused_by_the_config():
    with pytest.raises(OnestageError, match="logger"):
        make_config(overrides={"logger": "wandb"})
