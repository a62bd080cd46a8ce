"""Learning-rate schedules as pure functions of the step, so resuming needs only the counters.

Extending a run (`onestage train --resume RUN --epochs N` with N above the run's epochs) keeps
the learning rate continuous: the step and constant schedules do not depend on the number of
epochs and simply go on; the cosine schedule continues from the value it has reached and
follows the rest of its curve, stretched over the remaining steps of the longer run. This is
recorded as a list of `CosineSegment`s in the training state, so steps already taken keep the
rates they had and a plain `--resume` replays the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from onestage.errors import OnestageError

SCHEDULERS = ("step", "cosine", "constant")


@dataclass(frozen=True, kw_only=True)
class ScheduleSettings:
    """What a schedule reads: `scheduler` (step, cosine or constant), the initial `lr`, its floor
    `min_lr`, the run's `epochs` (the cosine's length), `warmup_steps` of linear warm-up, and
    the step schedule's decay by `step_gamma` every `step_every` epochs."""

    scheduler: str
    lr: float
    min_lr: float
    epochs: int
    warmup_steps: int
    step_every: int
    step_gamma: float


@dataclass(frozen=True)
class CosineSegment:
    """From `start_step` on, the cosine's progress runs linearly from `start_progress` (0 = the
    initial rate, 1 = min_lr) to 1 at `end_step`, then stays at 1."""

    start_step: int
    start_progress: float
    end_step: int

    def progress(self, step: int) -> float:
        """The cosine's progress in [0, 1] at global step `step` (>= start_step)."""
        span = max(1, self.end_step - self.start_step)
        done = self.start_progress + (1.0 - self.start_progress) * (step - self.start_step) / span
        return min(1.0, done)


def initial_segments(epochs: int, steps_per_epoch: int) -> tuple[CosineSegment, ...]:
    """The cosine of a run that was never extended: progress 0 -> 1 over all its steps."""
    return (CosineSegment(0, 0.0, max(1, epochs * steps_per_epoch)),)


def learning_rate(
    settings: ScheduleSettings,
    step: int,
    steps_per_epoch: int,
    segments: Sequence[CosineSegment] | None = None,
) -> float:
    """Learning rate for global optimiser step `step` (0-based).

    step: lr x gamma^(epoch // every) (the seed: x0.8 every 5 epochs); cosine: from lr down to
    min_lr along `segments` (default: over all `settings.epochs`); constant: lr. All floored at
    min_lr, after a linear warm-up.
    """
    if settings.scheduler not in SCHEDULERS:
        raise OnestageError(
            f"unknown scheduler {settings.scheduler!r}; valid: {', '.join(SCHEDULERS)}"
        )
    epoch = step // steps_per_epoch
    if settings.scheduler == "step":
        rate = settings.lr * settings.step_gamma ** (epoch // settings.step_every)
    elif settings.scheduler == "cosine":
        if segments is None:
            segments = initial_segments(settings.epochs, steps_per_epoch)
        progress = _active_segment(segments, step).progress(step)
        rate = settings.min_lr + (settings.lr - settings.min_lr) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )
    else:
        rate = settings.lr
    if settings.warmup_steps and step < settings.warmup_steps:
        rate *= (step + 1) / settings.warmup_steps
    return max(rate, settings.min_lr) if settings.scheduler != "constant" else rate


def extend_segments(
    segments: Sequence[CosineSegment], step: int, epochs: int, steps_per_epoch: int
) -> tuple[CosineSegment, ...]:
    """The segments of a run extended at global step `step` to `epochs` epochs in all: the
    cosine goes on from its progress at `step` and reaches 1 at the new last step."""
    progress = _active_segment(segments, step).progress(step)
    kept = tuple(segment for segment in segments if segment.start_step < step)
    return (*kept, CosineSegment(step, progress, max(step + 1, epochs * steps_per_epoch)))


def describe_extension(
    settings: ScheduleSettings, old_epochs: int, step: int, steps_per_epoch: int, rate: float
) -> str:
    """One line saying what extending a run from `old_epochs` to `settings.epochs` does."""
    added = (settings.epochs - old_epochs) * steps_per_epoch
    head = f"extending the run from {old_epochs} to {settings.epochs} epochs ({added} more steps): "
    if settings.scheduler == "cosine":
        tail = (
            f"the cosine learning rate continues from {rate:.3e} at step {step} and decays to "
            f"min_lr {settings.min_lr:.1e} over the remaining steps"
        )
        if rate <= settings.min_lr:
            tail += " (it has already reached min_lr: fine-tune with weights=... for a new decay)"
        return head + tail
    if settings.scheduler == "step":
        return head + (
            f"the step schedule goes on (x{settings.step_gamma} every {settings.step_every} "
            f"epochs, now {rate:.3e})"
        )
    return head + f"the learning rate stays {rate:.3e}"


def _active_segment(segments: Sequence[CosineSegment], step: int) -> CosineSegment:
    """The last segment starting at or before `step`."""
    active = segments[0]
    for segment in segments:
        if segment.start_step <= step:
            active = segment
    return active
