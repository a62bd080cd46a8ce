"""The trainer's validation after an epoch and what it decides: the mAP columns of results.csv,
the prediction grid in RUN/val, the epoch's fitness, the best epoch (saved as best.safetensors)
and early stopping's patience. The evaluation itself is `engine.evaluator`'s."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from onestage.data.images import save_image
from onestage.engine.distributed import SINGLE_PROCESS, DistContext, gather_to_main
from onestage.engine.evaluator import EvalSet, detect_images, prediction_grid, score_detections
from onestage.engine.predictor import Detector
from onestage.engine.shards import Shard, in_item_order
from onestage.predict_options import EVALUATION

VAL_COLUMNS = ("val/mAP50", "val/mAP50-95")

# Images per validation forward: a batch of 32 of the seed model at 320 px took 440 MB of
# activations, the training run's peak memory; 8 give the same detections for a quarter.
VAL_BATCH = 8


def validation_due(epochs_done: int, val_every: int, epochs: int) -> bool:
    """Whether to validate after `epochs_done` epochs: every `val_every` and after the last."""
    return bool(val_every) and (epochs_done % val_every == 0 or epochs_done == epochs)


def validate(
    detector: Detector,
    val_set: EvalSet,
    epochs_done: int,
    run_dir: Path | None,
    context: DistContext = SINGLE_PROCESS,
) -> dict[str, float]:
    """VOC mAP50 and COCO mAP50-95 on the validation set, and a grid of its predictions saved
    as RUN/val/epoch_NNN.png (with a run folder). Under torchrun every rank detects its share
    of the images (every world_size-th, from its rank), rank 0 gathers the detections in the
    set's order and scores them, the same numbers as one process; other ranks return {}."""
    mine = Shard(context.rank, context.world_size).indices(len(val_set))
    detections, _ = detect_images(detector, val_set, mine, EVALUATION, VAL_BATCH)
    shares = gather_to_main(detections, context)
    if shares is None:
        return {}
    merged = in_item_order(shares, len(val_set))
    result = score_detections(val_set, merged, EVALUATION, class_names=detector.class_names)
    if run_dir is not None:
        grid = prediction_grid(result, count=16)
        save_image(grid, run_dir / "val" / f"epoch_{epochs_done:03d}.png")
    return {"val/mAP50": result.voc.map, "val/mAP50-95": result.coco.ap}


def fitness(row: dict[str, float], has_validation: bool) -> float | None:
    """mAP50-95 on validation epochs; minus the training loss when the run has no validation;
    None on epochs between validations."""
    if not has_validation:
        return -row["train/loss"]
    value = row.get("val/mAP50-95", math.nan)
    return None if math.isnan(value) else value


@dataclass
class BestEpoch:
    """The fittest epoch so far (1-based; None before the first fitness) and the epochs
    measured since without improving on it."""

    fitness: float = -math.inf
    epoch: int | None = None
    epochs_without_improvement: int = 0

    def update(self, fitness: float | None, epoch: int) -> bool:
        """Take an epoch's fitness (None: not measured); whether the epoch is the new best."""
        if fitness is None:
            return False
        if fitness > self.fitness:
            self.fitness = fitness
            self.epoch = epoch
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False

    def patience_spent(self, patience: int) -> bool:
        """Whether early stopping's `patience` (0: off) has run out."""
        return bool(patience and self.epochs_without_improvement >= patience)
