"""A training run's checkpoint in its folder: what every epoch writes, and `--resume` reading it.

After each epoch the trainer writes best.safetensors (when the epoch improved), results.csv,
the training state (weights/last.state.safetensors: optimiser, RNG, loop counters, the raw and
the averaged weights), then last.safetensors. The training state is the epoch's commit: a run
killed before it resumes from the epoch before (redoing the rows and best weights written past
it), a run killed after it resumes from this epoch and rewrites last.safetensors. The files'
format is `onestage.checkpoint`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from onestage.checkpoint import (
    load_fitting,
    load_model_weights,
    load_training_state,
    read_metadata,
    save_training_state,
    save_weights,
)
from onestage.config import load_yaml
from onestage.engine.ema import ModelEMA
from onestage.engine.run_folder import read_results, write_results
from onestage.engine.schedule import CosineSegment, initial_segments
from onestage.errors import OnestageError
from onestage.models.plugins import check_recorded_plugins


def save_epoch(
    run_dir: Path,
    *,
    metadata: dict[str, Any],
    improved: bool,
    history: list[dict[str, float]],
    model: torch.nn.Module,
    ema: ModelEMA | None,
    optimizer: torch.optim.Optimizer,
    counters: dict[str, Any],
    device: torch.device,
) -> None:
    """Write an epoch's checkpoint in commit order (see the module docstring): the weights
    (the EMA's when enabled) with `metadata`, results.csv from `history`, and the training
    state with the loop's `counters` (and `device`'s RNG state, when it is a GPU)."""
    weights_dir = run_dir / "weights"
    deployed = ema.module if ema is not None else model
    if improved:
        save_weights(weights_dir / "best.safetensors", deployed, metadata)
    write_results(run_dir / "results.csv", history)
    save_training_state(
        weights_dir / "last.state.safetensors",
        optimizer,
        counters,
        raw_weights=model.state_dict(),
        device=device,
        averaged_weights=ema.module.state_dict() if ema else None,
    )
    save_last_weights(run_dir, deployed, metadata)


def save_last_weights(run_dir: Path, model: torch.nn.Module, metadata: dict[str, Any]) -> None:
    """Write RUN/weights/last.safetensors, the file an epoch's checkpoint ends with."""
    save_weights(run_dir / "weights" / "last.safetensors", model, metadata)


def restore_weights(
    run_dir: Path,
    *,
    model: torch.nn.Module,
    ema: ModelEMA | None,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    identity: dict[str, Any],
) -> tuple[dict[str, Any], ModelEMA | None]:
    """Load the run's training state: the optimiser and RNG state, the raw weights into
    `model` and the averaged ones into a new EMA (when `ema` is given). Returns the loop
    counters and that EMA. A state file from before it kept the weights takes them from
    last.safetensors, which must be of the same epoch and fit `identity` (model, num_classes)."""
    weights_dir = run_dir / "weights"
    state_path = weights_dir / "last.state.safetensors"
    last = weights_dir / "last.safetensors"
    if last.is_file():
        check_recorded_plugins(read_metadata(last).get("plugins"), last)
    counters, raw_weights, averaged_weights = load_training_state(state_path, optimizer, device)
    if raw_weights and (averaged_weights or ema is None):
        load_fitting(model, averaged_weights or raw_weights, state_path)
    else:  # a state file from before it kept the weights: they are in last.safetensors
        metadata = load_model_weights(model, last, identity)
        if metadata.get("epoch") != counters["epoch"]:
            raise OnestageError(f"{weights_dir}: weights and training state disagree on the epoch")
    if ema is not None:
        ema = ModelEMA(model, ema.decay, ema.tau, counters["ema"])
        model.load_state_dict(raw_weights)
    return counters, ema


def resumed_history(run_dir: Path, epoch: int) -> list[dict[str, float]]:
    """The results.csv rows up to `epoch`, the committed one: the file is written before the
    commit, so rows past it are redone."""
    return [row for row in read_results(run_dir / "results.csv") if row["epoch"] <= epoch]


def saved_schedule(
    run_dir: Path, counters: dict[str, Any], steps_per_epoch: int
) -> tuple[tuple[CosineSegment, ...], int]:
    """The run's cosine segments and the number of epochs it was set to train, from its
    training state (or config.yaml, for a state from before it kept them). A resumed config
    that gives another number of steps per epoch is an error."""
    saved_steps = counters.get("steps_per_epoch", steps_per_epoch)
    if saved_steps != steps_per_epoch:
        raise OnestageError(
            f"{run_dir}: the run took {saved_steps} steps per epoch, the resumed config "
            f"gives {steps_per_epoch}; steps, batch and the training set cannot change "
            "on --resume"
        )
    saved_epochs = counters.get("epochs") or int(load_yaml(run_dir / "config.yaml")["epochs"])
    if "cosine_segments" in counters:
        segments = tuple(CosineSegment(*s) for s in counters["cosine_segments"])
    else:
        segments = initial_segments(saved_epochs, steps_per_epoch)
    return segments, saved_epochs
