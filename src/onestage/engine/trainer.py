"""The training engine: data, targets, optimisation, run folder, checkpoints, resume, DDP."""

from __future__ import annotations

import math
import time
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

from onestage.checkpoint import (
    load_fitting,
    load_model_weights,
    load_training_state,
    read_metadata,
    save_training_state,
    save_weights,
    weights_epoch,
)
from onestage.config import TrainConfig, load_yaml, save_config
from onestage.data.dataset import RecordDataset, SyntheticDataset, collate_detections
from onestage.data.images import save_image
from onestage.data.records import DetectionDataset
from onestage.data.synthetic import SyntheticConfig, parse_count_range
from onestage.engine import distributed
from onestage.engine.augment import random_hflip
from onestage.engine.device import autocast_dtype, resolve_device, training_precision
from onestage.engine.ema import ModelEMA
from onestage.engine.evaluator import (
    EvalSet,
    dataset_eval_set,
    evaluate_detector,
    prediction_grid,
    synthetic_eval_set,
)
from onestage.engine.phases import NO_PHASES, Phases, timed_iteration
from onestage.engine.predictor import Detector
from onestage.engine.progress import SilentProgress, TrainProgress
from onestage.engine.run_folder import read_results, run_dir_of, write_results
from onestage.engine.sampler import EpochSampler
from onestage.engine.schedule import (
    CosineSegment,
    describe_extension,
    extend_segments,
    initial_segments,
    learning_rate,
)
from onestage.engine.train_settings import (
    criterion_for,
    model_options_for,
    optimizer_for,
    schedule_for,
)
from onestage.errors import OnestageError
from onestage.fileio import atomic_write_text, remove_temp_files, unique_run_dir
from onestage.models import build_model
from onestage.models.plugins import check_recorded_plugins, plugin_records
from onestage.models.spec import Spec
from onestage.plots import plot_results
from onestage.priors.codings import box_coding_for

VAL_COLUMNS = ("val/mAP50", "val/mAP50-95")


# Images per validation forward: a batch of 32 of the seed model at 320 px took 440 MB of
# activations, the training run's peak memory; 8 give the same detections for a quarter.
VAL_BATCH = 8


class TrainingDiverged(OnestageError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


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


class Trainer:
    """Trains one model from a TrainConfig; `run()` returns a TrainResult."""

    def __init__(
        self,
        config: TrainConfig,
        progress: TrainProgress | None = None,
        resume_from: Path | None = None,
    ) -> None:
        self.config = config
        self.progress = progress or SilentProgress()
        self.device = resolve_device(config.device)
        self.context = distributed.init_distributed(self.device.type)
        if self.context.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.context.local_rank)
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.batch % self.context.world_size:
            raise OnestageError(
                f"batch {config.batch} does not split evenly over {self.context.world_size} "
                "processes"
            )
        per_rank_batch = config.batch // self.context.world_size
        precision, fallback = training_precision(config.amp, self.device, per_rank_batch)
        if fallback is not None and self.context.is_main:
            self.progress.message(fallback)
        self.amp_dtype = autocast_dtype(precision)
        torch.manual_seed(config.seed)
        self.dataset: DetectionDataset | None = None  # a dataset folder, when training on one
        self.train_set, self.class_names = self._make_dataset()
        self.model = build_model(
            config.model, num_classes=len(self.class_names), **model_options_for(config)
        ).to(self.device)
        if config.weights is not None:
            weights = Path(config.weights)
            metadata = load_model_weights(self.model, weights, self._weights_identity())
            check_recorded_plugins(metadata.get("plugins"), weights)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.coding = box_coding_for(self.model, config.imgsz)
        self.criterion = criterion_for(config, self.coding, len(self.class_names))
        self.optimizer = optimizer_for(config, self.model.parameters())
        self.schedule = schedule_for(config)
        self.scaler = self._make_scaler()
        self.start_epoch = 0
        self.global_step = 0
        self.best_fitness = -math.inf
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0
        self.history: list[dict[str, float]] = []
        self.steps_per_epoch = config.steps or math.ceil(len(self.train_set) / config.batch)
        self.cosine_segments = initial_segments(config.epochs, self.steps_per_epoch)
        self.run_dir = self._prepare_run_dir(resume_from)
        self.ema = ModelEMA(self.model, config.ema, config.ema_tau) if config.ema else None
        self.phases: Phases = NO_PHASES  # a PhaseTimer here times each phase of training
        self.val_set = self._make_val_set() if self.context.is_main else None
        if resume_from is not None:
            self._restore(resume_from)
        self.ddp_model = self.model
        if self.context.enabled:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.sampler = EpochSampler(
            len(self.train_set),
            self.steps_per_epoch * config.batch,
            shuffle=not self._fresh_synthetic,
            seed=config.seed,
            context=self.context,
        )
        self.loader = DataLoader(
            self.train_set,
            batch_size=per_rank_batch,
            sampler=self.sampler,
            num_workers=config.workers,
            collate_fn=collate_detections,
            drop_last=True,
            persistent_workers=config.workers > 0,  # their icon caches live on
            pin_memory=self.device.type == "cuda",
        )

    # ---- set-up ----
    @property
    def _fresh_synthetic(self) -> bool:
        return isinstance(self.train_set, SyntheticDataset) and self.train_set.fresh

    def _make_dataset(self) -> tuple[SyntheticDataset | RecordDataset, tuple[str, ...]]:
        config = self.config
        if config.data is None:
            synthetic = self._synthetic_config()
            fresh = config.train_images is None
            length = (config.steps or 1) * config.batch if fresh else config.train_images
            dataset = SyntheticDataset(synthetic, length=length, fresh=fresh)
            return dataset, dataset.class_names
        from onestage.data.formats import read_dataset

        self.dataset, _ = read_dataset(Path(config.data), strict=config.strict_labels)
        if "train" not in self.dataset.splits:
            raise OnestageError(
                f"{config.data}: no 'train' split; found {', '.join(self.dataset.splits)}"
            )
        records = self.dataset.splits["train"]
        return RecordDataset(records, config.imgsz, config.letterbox), self.dataset.class_names

    def _synthetic_config(self) -> SyntheticConfig:
        config = self.config
        return SyntheticConfig(
            width=config.imgsz,
            height=config.imgsz,
            objects=parse_count_range(config.synthetic_objects),
            seed=config.synthetic_seed,
            icons=Path(config.synthetic_icons) if config.synthetic_icons else None,
            backgrounds=Path(config.synthetic_backgrounds)
            if config.synthetic_backgrounds
            else None,
            mix=config.synthetic_mix,
        )

    def _make_val_set(self) -> EvalSet | None:
        config = self.config
        if not config.val_every:
            return None
        if config.data is None:
            synthetic = self._synthetic_config()
            return synthetic_eval_set(
                self.class_names,
                config.val_images,
                size=config.imgsz,
                objects=synthetic.objects,
                seed=synthetic.seed,
                icons=synthetic.icons,
                backgrounds=synthetic.backgrounds,
                mix=synthetic.mix,
                stream_name="val",
            )
        if config.val_split not in self.dataset.splits:
            return None
        return dataset_eval_set(
            Path(config.data), self.class_names, config.val_split, dataset=self.dataset
        )

    def _make_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 on CUDA; a disabled no-op otherwise."""
        enabled = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        return torch.amp.GradScaler("cuda", enabled=enabled)

    def _prepare_run_dir(self, resume_from: Path | None) -> Path | None:
        if not self.context.is_main:
            return None
        if resume_from is not None:
            run_dir = run_dir_of(resume_from)
            _remove_temp_files(run_dir)
            return run_dir
        run_dir = unique_run_dir(self.config.project, self.config.name, self.config.exist_ok)
        _remove_temp_files(run_dir)  # an exist_ok folder may be a killed run's
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        save_config(self.config, run_dir / "config.yaml")
        if self.spec is not None:
            text = yaml.safe_dump(self.spec.to_dict(), sort_keys=False)
            atomic_write_text(run_dir / "model.yaml", text)
        return run_dir

    def _restore(self, resume_from: Path) -> None:
        """Continue from the training state, an epoch's commit (see `_save_epoch`)."""
        run_dir = run_dir_of(resume_from)
        weights_dir = run_dir / "weights"
        state_path = weights_dir / "last.state.safetensors"
        last = weights_dir / "last.safetensors"
        if last.is_file():
            check_recorded_plugins(read_metadata(last).get("plugins"), last)
        counters, raw_weights, averaged_weights = load_training_state(
            state_path, self.optimizer, self.device
        )
        self.start_epoch = counters["epoch"]
        if raw_weights and (averaged_weights or self.ema is None):
            load_fitting(self.model, averaged_weights or raw_weights, state_path)
        else:  # a state file from before it kept the weights: they are in last.safetensors
            metadata = load_model_weights(
                self.model, weights_dir / "last.safetensors", self._weights_identity()
            )
            if metadata.get("epoch") != self.start_epoch:
                raise OnestageError(
                    f"{weights_dir}: weights and training state disagree on the epoch"
                )
        if self.ema is not None:
            self.ema = ModelEMA(self.model, self.config.ema, self.config.ema_tau, counters["ema"])
            self.model.load_state_dict(raw_weights)
        if counters.get("grad_scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(counters["grad_scaler"])
        self.global_step = counters["global_step"]
        self.best_fitness = counters["best_fitness"]
        self.best_epoch = counters.get("best_epoch")
        self.epochs_without_improvement = counters["epochs_without_improvement"]
        # results.csv is written before the commit: rows past it are redone
        rows = read_results(run_dir / "results.csv")
        self.history = [row for row in rows if row["epoch"] <= self.start_epoch]
        self._restore_schedule(run_dir, counters)
        killed_before_weights = weights_epoch(weights_dir / "last.safetensors") != self.start_epoch
        if killed_before_weights and self.run_dir is not None:
            row = self.history[-1] if self.history else {}
            self._save_last_weights(self._row_metadata(self.start_epoch, row))

    def _restore_schedule(self, run_dir: Path, counters: dict[str, Any]) -> None:
        """Take the run's learning-rate curve; extend it when the config asks for more epochs."""
        saved_steps = counters.get("steps_per_epoch", self.steps_per_epoch)
        if saved_steps != self.steps_per_epoch:
            raise OnestageError(
                f"{run_dir}: the run took {saved_steps} steps per epoch, the resumed config "
                f"gives {self.steps_per_epoch}; steps, batch and the training set cannot change "
                "on --resume"
            )
        saved_epochs = counters.get("epochs") or int(load_yaml(run_dir / "config.yaml")["epochs"])
        if "cosine_segments" in counters:
            self.cosine_segments = tuple(CosineSegment(*s) for s in counters["cosine_segments"])
        else:
            self.cosine_segments = initial_segments(saved_epochs, self.steps_per_epoch)
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
        return self.spec.name if self.spec is not None else self.config.model

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
                improved = False
                if self.context.is_main:
                    fitness = self._fitness(row)
                    if fitness is not None:
                        improved = fitness > self.best_fitness
                        if improved:
                            self.best_fitness = fitness
                            self.best_epoch = epoch + 1
                            self.epochs_without_improvement = 0
                        else:
                            self.epochs_without_improvement += 1
                    with self.phases("checkpoint"):
                        self._save_epoch(epoch + 1, row, improved)
                    self.progress.end_epoch(row)
                patience_spent = bool(
                    config.patience and self.epochs_without_improvement >= config.patience
                )
                if distributed.broadcast_flag(patience_spent, self.context):
                    stopped_early = True
                    break
            if self.run_dir is not None and self.history:
                plot_results(self.run_dir / "results.csv", self.run_dir / "results.png")
            distributed.broadcast_buffers(self.model, self.context)
            distributed.barrier(self.context)
        finally:
            distributed.shutdown(self.context)
        return TrainResult(
            run_dir=self.run_dir,
            model=self.deployed_model,
            epochs_done=len(self.history),
            history=self.history,
            stopped_early=stopped_early,
            best_epoch=self.best_epoch,
        )

    @property
    def deployed_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the EMA when enabled, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def _fitness(self, row: dict[str, float]) -> float | None:
        """mAP50-95 on validation epochs; minus the training loss when there is no validation;
        None on epochs between validations."""
        if self.val_set is None:
            return -row["train/loss"]
        value = row.get("val/mAP50-95", math.nan)
        return None if math.isnan(value) else value

    def _validate(self, epochs_done: int) -> dict[str, float]:
        """VOC mAP50 and COCO mAP50-95 on the validation set (rank 0), plus a prediction grid."""
        due = (
            self.val_set is not None
            and self.config.val_every
            and (epochs_done % self.config.val_every == 0 or epochs_done == self.config.epochs)
        )
        if not due:
            return dict.fromkeys(VAL_COLUMNS, math.nan) if self.val_set is not None else {}
        detector = Detector(
            self.deployed_model, self.weights_metadata(epochs_done, {}), self.device
        )
        detector.amp_dtype = self.amp_dtype
        detector.channels_last = self.config.channels_last
        result = evaluate_detector(detector, self.val_set, batch_size=VAL_BATCH)
        if self.run_dir is not None:
            grid = prediction_grid(result, count=16)
            save_image(grid, self.run_dir / "val" / f"epoch_{epochs_done:03d}.png")
        return {"val/mAP50": result.voc.map, "val/mAP50-95": result.coco.ap}

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        config = self.config
        self.model.train()
        self.sampler.set_epoch(epoch)
        self.progress.start_epoch(epoch, config.epochs, self.steps_per_epoch)
        sums: dict[str, float] = {}
        steps = 0
        began = time.perf_counter()
        for images, boxes_xyxy, class_ids in timed_iteration(self.loader, self.phases, "data"):
            lr = self._learning_rate(self.global_step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
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
        return learning_rate(self.schedule, step, self.steps_per_epoch, self.cosine_segments)

    def _train_step(
        self, images: torch.Tensor, boxes_xyxy: torch.Tensor, class_ids: torch.Tensor
    ) -> dict[str, float]:
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

    # ---- output ----
    def _save_epoch(self, epochs_done: int, row: dict[str, float], improved: bool) -> None:
        """Write best.safetensors (when improved), results.csv, the training state, then
        last.safetensors. The training state is the epoch's commit: a run killed before it
        resumes from the epoch before (redoing the rows and best weights written past it), a run
        killed after it resumes from this epoch and rewrites last.safetensors."""
        if self.run_dir is None:
            return
        weights_dir = self.run_dir / "weights"
        metadata = self._row_metadata(epochs_done, row)
        if improved:
            save_weights(weights_dir / "best.safetensors", self.deployed_model, metadata)
        write_results(self.run_dir / "results.csv", self.history)
        save_training_state(
            weights_dir / "last.state.safetensors",
            self.optimizer,
            {
                "epoch": epochs_done,
                "global_step": self.global_step,
                "best_fitness": self.best_fitness,
                "epochs_without_improvement": self.epochs_without_improvement,
                "best_epoch": self.best_epoch,
                "ema": self.ema.updates if self.ema else 0,
                "grad_scaler": self.scaler.state_dict(),
                "epochs": self.config.epochs,
                "steps_per_epoch": self.steps_per_epoch,
                "cosine_segments": [list(astuple(s)) for s in self.cosine_segments],
            },
            raw_weights=self.model.state_dict(),
            device=self.device,
            averaged_weights=self.ema.module.state_dict() if self.ema else None,
        )
        self._save_last_weights(metadata)

    def _save_last_weights(self, metadata: dict[str, Any]) -> None:
        save_weights(self.run_dir / "weights" / "last.safetensors", self.deployed_model, metadata)

    def _row_metadata(self, epochs_done: int, row: dict[str, float]) -> dict[str, Any]:
        """The weights metadata of an epoch, with its results.csv row as metrics."""
        return self.weights_metadata(epochs_done, {k: v for k, v in row.items() if k != "epoch"})

    def _architecture_metadata(self) -> dict[str, Any]:
        """The spec (so the weights alone rebuild the model) and the plugins it needs: file
        names and digests (`onestage.models.plugins.plugin_records`)."""
        if self.spec is not None:
            names = {"blocks": [layer.block for _, layer in self.spec.layers()]}
        else:
            names = {"models": [self.config.model]}
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
            **self._architecture_metadata(),
        }


def _remove_temp_files(run_dir: Path) -> None:
    """Delete the temporary files a process killed mid-write left in a run folder."""
    for folder in (run_dir, run_dir / "weights", run_dir / "val"):
        remove_temp_files(folder)


def train(
    config: TrainConfig, progress: TrainProgress | None = None, resume: Path | None = None
) -> TrainResult:
    """Train a detector (the Python API behind `onestage train`)."""
    return Trainer(config, progress, resume_from=resume).run()
