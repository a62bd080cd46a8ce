"""The inner loop of training: an epoch of steps, and each step's input, forward, loss,
backward, optimiser update and EMA, every phase timed by `phases` (`engine.phases`).

`StepLoop` is the base of `engine.trainer.Trainer`, which builds the attributes declared here
(the model, criterion, optimiser, loader, ...) and runs the epochs; the loop advances
`global_step` and sets each step's learning rate from the schedule (times each parameter
group's "lr_multiplier", `train_settings.parameter_groups`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from onestage.config import TrainConfig
from onestage.engine import distributed
from onestage.engine.augment import random_hflip
from onestage.engine.ema import ModelEMA
from onestage.engine.phases import Phases, timed_iteration
from onestage.engine.progress import TrainProgress
from onestage.engine.sampler import EpochSampler
from onestage.engine.schedule import CosineSegment, ScheduleSettings, learning_rate
from onestage.errors import OnestageError
from onestage.losses.criterion import Criterion


class TrainingDiverged(OnestageError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class StepLoop:
    """Trains an epoch of steps (`_train_epoch`), one step at a time (`_train_step`)."""

    config: TrainConfig
    progress: TrainProgress
    device: torch.device
    context: distributed.DistContext
    amp_dtype: torch.dtype | None  # autocast's, None for fp32
    model: torch.nn.Module
    frozen_norms: tuple[torch.nn.Module, ...]  # BatchNorm layers of frozen layers: kept in eval
    ddp_model: torch.nn.Module  # what the forward runs: the model, or DDP around it
    criterion: Criterion
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    schedule: ScheduleSettings
    cosine_segments: tuple[CosineSegment, ...]
    steps_per_epoch: int
    global_step: int  # steps taken since the run began
    sampler: EpochSampler
    loader: DataLoader
    phases: Phases
    run_dir: Path | None

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch `epoch` (0-based); its results.csv row: the mean loss parts, the last
        step's learning rate, the throughput and the time taken."""
        config = self.config
        self.model.train()
        for norm in self.frozen_norms:
            norm.eval()
        self.sampler.set_epoch(epoch)
        self.progress.start_epoch(epoch, config.epochs, self.steps_per_epoch)
        sums: dict[str, float] = {}
        steps = 0
        began = time.perf_counter()
        for images, boxes_xyxy, class_ids in timed_iteration(self.loader, self.phases, "data"):
            lr = self._learning_rate(self.global_step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_multiplier", 1.0)
            parts = self._train_step(images, boxes_xyxy, class_ids)
            if not math.isfinite(parts["loss"]):
                raise TrainingDiverged(
                    f"loss became {parts['loss']} at epoch {epoch + 1}, step {steps + 1}; "
                    f"training stopped, the last good checkpoint is kept"
                    + (f" in {self.run_dir / 'weights'}" if self.run_dir else "")
                )
            self.global_step += 1
            steps += 1
            with self.phases("logging"):
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + value
                elapsed = time.perf_counter() - began
                self.progress.step(parts, lr, steps * config.batch / max(elapsed, 1e-9))
        elapsed = time.perf_counter() - began
        means = {name: total / max(steps, 1) for name, total in sums.items()}
        return {
            "epoch": epoch + 1,
            "train/loss": means.get("loss", float("nan")),
            "train/cls": means.get("cls", float("nan")),
            "train/box": means.get("box", float("nan")),
            **({"train/dfl": means["dfl"]} if "dfl" in means else {}),
            "lr": self._learning_rate(max(self.global_step - 1, 0)),
            "images_per_s": steps * config.batch / max(elapsed, 1e-9),
            "time_s": elapsed,
        }

    def _learning_rate(self, step: int) -> float:
        """The learning rate at `step` (0-based, counted from the run's start)."""
        return learning_rate(self.schedule, step, self.steps_per_epoch, self.cosine_segments)

    def _train_step(
        self, images: torch.Tensor, boxes_xyxy: torch.Tensor, class_ids: torch.Tensor
    ) -> dict[str, float]:
        """One optimiser step on a batch (uint8 images, normalised xyxy boxes, class ids); the
        loss parts, averaged over the processes."""
        phases = self.phases
        with phases("input"):
            images = images.to(self.device, non_blocking=True).float().div_(255.0)
            if self.config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            boxes_xyxy = boxes_xyxy.to(self.device)
            class_ids = class_ids.to(self.device)
            if self.config.hflip > 0:
                images, boxes_xyxy = random_hflip(images, boxes_xyxy, self.config.hflip)
        with (
            phases("forward"),
            torch.autocast(
                self.device.type,
                dtype=self.amp_dtype or torch.float32,
                enabled=self.amp_dtype is not None,
            ),
        ):
            predictions = self.ddp_model(images)
        with phases("loss"):
            losses = self.criterion(predictions, boxes_xyxy, class_ids)
        with phases("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(losses["loss"]).backward()
        with phases("optimizer"):
            if self.config.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model)
        with phases("readout"):
            detached = torch.stack([value.detach().float() for value in losses.values()])
            detached = distributed.all_reduce_mean(detached, self.context)
            return dict(zip(losses.keys(), detached.tolist(), strict=True))
