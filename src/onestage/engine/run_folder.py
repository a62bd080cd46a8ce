"""A training run's folder: creating it, finding it from a path, its saved config, its
results.csv."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from onestage.config import TrainConfig, load_yaml, make_config, save_config
from onestage.errors import OnestageError
from onestage.fileio import atomic_write_text, remove_temp_files, unique_run_dir


def new_run_dir(config: TrainConfig, spec: dict[str, Any] | None) -> Path:
    """Create a new run's folder (RUN/weights) under the config's project and name, with its
    config.yaml and, for a model built from a spec (`spec`, as a dict), model.yaml."""
    run_dir = unique_run_dir(config.project, config.name, config.exist_ok)
    remove_run_temp_files(run_dir)  # an exist_ok folder may be a killed run's
    (run_dir / "weights").mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    if spec is not None:
        atomic_write_text(run_dir / "model.yaml", yaml.safe_dump(spec, sort_keys=False))
    return run_dir


def remove_run_temp_files(run_dir: Path) -> None:
    """Delete the temporary files a process killed mid-write left in a run folder."""
    for folder in (run_dir, run_dir / "weights", run_dir / "val"):
        remove_temp_files(folder)


def run_dir_of(path: Path) -> Path:
    """The run folder, with a checkpoint to resume, of a run folder or one of its weights files."""
    path = Path(path)
    run_dir = path.parent.parent if path.is_file() else path
    if not (run_dir / "weights" / "last.state.safetensors").is_file():
        if (run_dir / "config.yaml").is_file():
            raise OnestageError(
                f"{run_dir}: no checkpoint to resume (the run stopped before its first epoch "
                "ended); start it again without --resume"
            )
        raise OnestageError(f"{path}: not a run folder with a checkpoint to resume")
    return run_dir


def resume_config(run: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The run's saved config with allowed overrides (e.g. more epochs) applied."""
    run_dir = run_dir_of(run)
    saved = load_yaml(run_dir / "config.yaml")
    spec_file = run_dir / "model.yaml"  # the run's own copy of its architecture
    if spec_file.is_file() and "model" not in overrides:
        saved["model"] = str(spec_file)
    config = make_config(overrides={**saved, **overrides})
    if config.epochs < int(saved.get("epochs", 0)) and "epochs" in overrides:
        raise OnestageError("--resume can extend the number of epochs, not shorten it")
    for key in ("steps", "batch"):
        if key in overrides and getattr(config, key) != saved.get(key):
            raise OnestageError(
                f"--resume cannot change {key} ({saved.get(key)} -> {getattr(config, key)}): "
                "it moves every epoch boundary; fine-tune from the run's weights in a new run "
                "(weights=RUN/weights/last.safetensors) instead"
            )
    return replace(config, exist_ok=True)


def write_results(path: Path, history: list[dict[str, float]]) -> None:
    """Write results.csv (one row per epoch, floats to 6 significant digits), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def read_results(path: Path) -> list[dict[str, float]]:
    """The rows of results.csv (none when it does not exist yet)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [
            {key: (int(v) if key == "epoch" else float(v)) for key, v in row.items()}
            for row in csv.DictReader(handle)
        ]
