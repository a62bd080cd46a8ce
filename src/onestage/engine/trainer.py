"""The training engine: one model trained from a TrainConfig, epoch after epoch.

The trainer builds the run and runs its epochs; the parts live beside it in `engine`:
`train_process` (device, torchrun's processes, precision), `training_data` (training and
validation sets, the loader), `train_settings` (optimiser, schedule, criterion), `step_loop`
(an epoch's steps), `validation` (mAP, fitness, the best epoch), `run_folder` and
`run_checkpoint` (the run's files, and --resume), `transfer` (starting from weights=:
fine-tuning, transfer to other classes, frozen layers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import torch

from onestage.checkpoint import weights_epoch
from onestage.config import DEFAULT_MODEL, TrainConfig, save_config
from onestage.engine import distributed
from onestage.engine.device import autocast_dtype
from onestage.engine.elastic import config_fingerprint, mark_run
from onestage.engine.ema import ModelEMA
from onestage.engine.phases import NO_PHASES, Phases
from onestage.engine.predictor import Detector
from onestage.engine.progress import SilentProgress, TrainProgress
from onestage.engine.run_checkpoint import (
    restore_weights,
    resumed_history,
    save_epoch,
    save_last_weights,
    saved_schedule,
)
from onestage.engine.run_folder import new_run_dir, remove_run_temp_files, run_dir_of
from onestage.engine.run_logging import check_run_logger, open_run_logger
from onestage.engine.schedule import describe_extension, extend_segments, initial_segments
from onestage.engine.step_loop import StepLoop
from onestage.engine.torch_forward import TorchForward
from onestage.engine.train_process import join_training
from onestage.engine.train_settings import (
    criterion_for,
    optimizer_for,
    parameter_groups,
    schedule_for,
)
from onestage.engine.training_data import (
    epoch_loader,
    train_folder,
    training_set,
    validation_set,
    with_input_size,
)
from onestage.engine.transfer import (
    SourceWeights,
    freeze_layers,
    load_source,
    model_builder,
    own_architecture,
)
from onestage.engine.validation import VAL_COLUMNS, BestEpoch, fitness, validate, validation_due
from onestage.models.plugins import plugin_records
from onestage.models.spec import Spec
from onestage.plots import plot_results
from onestage.priors.codings import box_coding_for


@dataclass
class TrainResult:
    """What a finished run left behind; `best_epoch` is the epoch saved as best.safetensors."""

    run_dir: Path | None
    model: torch.nn.Module
    epochs_done: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    best_epoch: int | None = None

    @property
    def best_row(self) -> dict[str, float] | None:
        """The results.csv row of the best epoch."""
        rows = [row for row in self.history if row.get("epoch") == self.best_epoch]
        return rows[0] if rows else None

    @property
    def best_weights(self) -> Path | None:
        """Path of best.safetensors (None without a run folder or a best epoch)."""
        if self.run_dir is None or self.best_epoch is None:
            return None
        return self.run_dir / "weights" / "best.safetensors"


class Trainer(StepLoop):
    """Trains one model from a TrainConfig; `run()` returns a TrainResult."""

    def __init__(
        self,
        config: TrainConfig,
        progress: TrainProgress | None = None,
        resume_from: Path | None = None,
    ) -> None:
        self.config = config
        self.fingerprint = config_fingerprint(config)  # as the command built it (`elastic`)
        self.progress = progress or SilentProgress()
        process = join_training(config)
        self.device = process.device
        self.context = process.context
        if process.precision_note is not None and self.context.is_main:
            self.progress.message(process.precision_note)
        self.amp_dtype = autocast_dtype(process.precision)
        source = SourceWeights.read(config.weights) if config.weights is not None else None
        if config.model is None and source is not None:
            self.config = config = own_architecture(config, source)
        folder = train_folder(config)
        if config.imgsz is None:
            self.config = config = with_input_size(config, folder)
            if self.context.is_main:
                self.progress.message(
                    f"input size {config.imgsz} px, from the images of {config.data}"
                )
        # the architecture's name where the model has no spec (a registered class)
        self.architecture = config.model or (source.metadata["model"] if source else DEFAULT_MODEL)
        torch.manual_seed(config.seed)
        # dataset: the dataset folder, when training on one (None on synthetic images)
        self.train_set, self.class_names, self.dataset = training_set(config, folder)
        build = model_builder(config, source)
        self.model = build(len(self.class_names)).to(self.device)
        loaded = self._load_source(source, build)
        self.frozen_norms = freeze_layers(self.model, config.freeze)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.coding = box_coding_for(self.model, config.imgsz)
        self.criterion = criterion_for(config, self.coding, len(self.class_names))
        self.optimizer = optimizer_for(config, parameter_groups(config, self.model, loaded))
        self.schedule = schedule_for(config)
        self.scaler = self._make_scaler()
        self.start_epoch = 0
        self.global_step = 0
        self.best = BestEpoch()
        self.history: list[dict[str, float]] = []
        self.steps_per_epoch = config.steps or math.ceil(len(self.train_set) / config.batch)
        self.cosine_segments = initial_segments(config.epochs, self.steps_per_epoch)
        check_run_logger(config.logger)
        self.run_dir = self._prepare_run_dir(resume_from)
        self.run_logger = open_run_logger(config, self.run_dir) if self.run_dir else None
        self.ema = ModelEMA(self.model, config.ema, config.ema_tau) if config.ema else None
        self.phases: Phases = NO_PHASES  # a PhaseTimer here times each phase of training
        self.val_set = validation_set(config, self.class_names, self.dataset)  # every rank's
        if resume_from is not None:
            self._restore(resume_from)
        self.ddp_model = distributed.wrap_model(self.model, self.device, self.context)
        self.sampler, self.loader = epoch_loader(
            config, self.train_set, self.steps_per_epoch, process
        )

    # ---- set-up ----
    def _load_source(
        self, source: SourceWeights | None, build: Callable[[int], torch.nn.Module]
    ) -> frozenset[str]:
        """Load the weights the run starts from (`engine.transfer`), say what a transfer to
        other classes loaded, and keep the record for the run's weights; the names loaded."""
        self.pretrained: dict[str, Any] | None = None
        if source is None:
            return frozenset()
        loaded = load_source(self.model, source, self._weights_identity(), self.class_names, build)
        if loaded.message is not None and self.context.is_main:
            self.progress.message(loaded.message)
        self.pretrained = source.record(len(loaded.names), loaded.reinitialised)
        return loaded.names

    def _make_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 on CUDA; a disabled no-op otherwise."""
        enabled = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        return torch.amp.GradScaler("cuda", enabled=enabled)

    def _prepare_run_dir(self, resume_from: Path | None) -> Path | None:
        """The run folder (rank 0 only): the resumed run's, or a new one."""
        if not self.context.is_main:
            return None
        if resume_from is None:
            run_dir = new_run_dir(self.config, self.spec.to_dict() if self.spec else None)
            mark_run(run_dir, self.fingerprint)
            return run_dir
        run_dir = run_dir_of(resume_from)
        remove_run_temp_files(run_dir)
        return run_dir

    def _restore(self, resume_from: Path) -> None:
        """Continue from the training state, an epoch's commit (see `run_checkpoint`)."""
        run_dir = run_dir_of(resume_from)
        counters, self.ema = restore_weights(
            run_dir,
            model=self.model,
            ema=self.ema,
            optimizer=self.optimizer,
            device=self.device,
            identity=self._weights_identity(),
        )
        self.start_epoch = counters["epoch"]
        if counters.get("grad_scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(counters["grad_scaler"])
        self.global_step = counters["global_step"]
        self.best = BestEpoch(
            counters["best_fitness"],
            counters.get("best_epoch"),
            counters["epochs_without_improvement"],
        )
        self.history = resumed_history(run_dir, self.start_epoch)
        self._restore_schedule(run_dir, counters)
        killed_before_weights = (
            weights_epoch(run_dir / "weights" / "last.safetensors") != self.start_epoch
        )
        if killed_before_weights and self.run_dir is not None:
            row = self.history[-1] if self.history else {}
            save_last_weights(
                self.run_dir, self.deployed_model, self._row_metadata(self.start_epoch, row)
            )

    def _restore_schedule(self, run_dir: Path, counters: dict[str, Any]) -> None:
        """Take the run's learning-rate curve; extend it when the config asks for more epochs."""
        self.cosine_segments, saved_epochs = saved_schedule(run_dir, counters, self.steps_per_epoch)
        if self.config.epochs <= saved_epochs:
            return
        self.cosine_segments = extend_segments(
            self.cosine_segments, self.global_step, self.config.epochs, self.steps_per_epoch
        )
        if self.context.is_main:
            rate = self._learning_rate(self.global_step)
            self.progress.message(
                describe_extension(
                    self.schedule, saved_epochs, self.global_step, self.steps_per_epoch, rate
                )
            )
            save_config(self.config, run_dir / "config.yaml")

    @property
    def spec(self) -> Spec | None:
        """The model's spec, for a model built from one (not a registered class)."""
        return getattr(self.model, "spec", None)

    @property
    def model_name(self) -> str:
        """The architecture's name: the spec's own name, or the registered class name."""
        return self.spec.name if self.spec is not None else self.architecture

    def _weights_identity(self) -> dict[str, Any]:
        return {"model": self.model_name, "num_classes": len(self.class_names)}

    # ---- the loop ----
    def run(self) -> TrainResult:
        """Train until `epochs` (or early stop); checkpoints and results after every epoch."""
        config = self.config
        stopped_early = False
        try:
            for epoch in range(self.start_epoch, config.epochs):
                row = self._train_epoch(epoch)
                with self.phases("validation"):
                    row.update(self._validate(epoch + 1))
                self.history.append(row)
                if self.context.is_main:
                    improved = self.best.update(fitness(row, self.val_set is not None), epoch + 1)
                    with self.phases("checkpoint"):
                        self._save_epoch(epoch + 1, row, improved)
                    if self.run_logger is not None:
                        self.run_logger.log_epoch(row)
                    self.progress.end_epoch(row)
                patience_spent = self.best.patience_spent(config.patience)
                if distributed.broadcast_flag(patience_spent, self.context):
                    stopped_early = True
                    break
            if self.run_dir is not None and self.history:
                plot_results(self.run_dir / "results.csv", self.run_dir / "results.png")
            if self.run_logger is not None:
                best = self.run_dir / "weights" / "best.safetensors"
                self.run_logger.finish(self.run_dir, best if self.best.epoch else None)
            distributed.broadcast_buffers(self.model, self.context)
            distributed.barrier(self.context)
        finally:
            if self.run_logger is not None:
                self.run_logger.close()
            distributed.shutdown(self.context)
        return TrainResult(
            run_dir=self.run_dir,
            model=self.deployed_model,
            epochs_done=len(self.history),
            history=self.history,
            stopped_early=stopped_early,
            best_epoch=self.best.epoch,
        )

    @property
    def deployed_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the EMA when enabled, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def _validate(self, epochs_done: int) -> dict[str, float]:
        """The validation columns of the epoch's row: mAP50 and mAP50-95 when validation is
        due (every rank detects its share, rank 0 scores: `validation.validate`), NaN between
        validations, none without a validation set (and none on the other ranks)."""
        if self.val_set is None:
            return {}
        if not validation_due(epochs_done, self.config.val_every, self.config.epochs):
            return dict.fromkeys(VAL_COLUMNS, math.nan)
        forward = TorchForward(self.deployed_model, self.device)
        forward.amp_dtype = self.amp_dtype
        forward.channels_last = self.config.channels_last
        detector = Detector(forward, self.weights_metadata(epochs_done, {}))
        return validate(detector, self.val_set, epochs_done, self.run_dir, self.context)

    # ---- output ----
    def _save_epoch(self, epochs_done: int, row: dict[str, float], improved: bool) -> None:
        """Write the epoch's checkpoint (`run_checkpoint.save_epoch`), with best.safetensors
        when it improved."""
        if self.run_dir is None:
            return
        save_epoch(
            self.run_dir,
            metadata=self._row_metadata(epochs_done, row),
            improved=improved,
            history=self.history,
            model=self.model,
            ema=self.ema,
            optimizer=self.optimizer,
            counters={
                "epoch": epochs_done,
                "global_step": self.global_step,
                "best_fitness": self.best.fitness,
                "epochs_without_improvement": self.best.epochs_without_improvement,
                "best_epoch": self.best.epoch,
                "ema": self.ema.updates if self.ema else 0,
                "grad_scaler": self.scaler.state_dict(),
                "epochs": self.config.epochs,
                "steps_per_epoch": self.steps_per_epoch,
                "cosine_segments": [list(astuple(s)) for s in self.cosine_segments],
            },
            device=self.device,
        )

    def _row_metadata(self, epochs_done: int, row: dict[str, float]) -> dict[str, Any]:
        """The weights metadata of an epoch, with its results.csv row as metrics."""
        return self.weights_metadata(epochs_done, {k: v for k, v in row.items() if k != "epoch"})

    def _architecture_metadata(self) -> dict[str, Any]:
        """The spec (so the weights alone rebuild the model) and the plugins it needs: file
        names and digests (`onestage.models.plugins.plugin_records`)."""
        if self.spec is not None:
            names = {"blocks": [layer.block for _, layer in self.spec.layers()]}
        else:
            names = {"models": [self.architecture]}
        plugins = plugin_records(names)
        return {
            **({"spec": self.spec.to_dict()} if self.spec is not None else {}),
            **({"plugins": plugins} if plugins else {}),
        }

    def weights_metadata(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        """What a weights file says about itself (and a COCO training set's category ids)."""
        category_ids = self.dataset.category_ids if self.dataset is not None else None
        return {
            "model": self.model_name,
            "num_classes": len(self.class_names),
            "class_names": list(self.class_names),
            "anchors": self.config.anchors,
            "input_size": self.config.imgsz,
            "letterbox": self.config.letterbox,
            "loss": self.criterion.loss_name,
            "score_mode": self.coding.score_mode,
            "epoch": epoch,
            "metrics": metrics,
            **({"category_ids": list(category_ids)} if category_ids else {}),
            **({"pretrained": self.pretrained} if self.pretrained is not None else {}),
            **self._architecture_metadata(),
        }


def train(
    config: TrainConfig, progress: TrainProgress | None = None, resume: Path | None = None
) -> TrainResult:
    """Train a detector (the Python API behind `onestage train`)."""
    return Trainer(config, progress, resume_from=resume).run()
