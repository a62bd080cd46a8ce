"""A TrainConfig translated into the plain values of what it configures: the model's build
options (`models.build_model`), the optimiser (`engine.optim`), the learning-rate schedule
(`engine.schedule`) and the criterion (`losses.criterion`), none of which knows TrainConfig. The
trainer translates its config once."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import torch

from onestage.config import TrainConfig
from onestage.engine.optim import build_optimizer
from onestage.engine.schedule import ScheduleSettings
from onestage.losses import loss_score_mode
from onestage.losses.criterion import Criterion, build_criterion
from onestage.priors.codings import BoxCoding


def model_options_for(config: TrainConfig) -> dict[str, Any]:
    """The model's build options: its input size, BatchNorm momentum and a spec's width and
    depth multiples (when set), and the priors
    and score mode its head is built with: the config's anchors, and the score mode its loss
    trains (`losses.loss_score_mode`; no loss named: the head's default)."""
    options: dict[str, Any] = {
        "input_size": config.imgsz,
        "anchors": config.anchors,
        "score_mode": loss_score_mode(config.loss) if config.loss else None,
    }
    if config.bn_momentum is not None:
        options["bn_momentum"] = config.bn_momentum
    if (config.width_multiple, config.depth_multiple) != (1.0, 1.0):
        options["width"], options["depth"] = config.width_multiple, config.depth_multiple
    return options


def parameter_groups(
    config: TrainConfig, model: torch.nn.Module, loaded: Collection[str]
) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: the parameters that train (frozen ones left out), in
    one group; with `pretrained_lr` below 1, the `loaded` ones (by state-dict name) in a group
    of their own, whose "lr_multiplier" scales the schedule's rate (`step_loop`)."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if config.pretrained_lr == 1.0:
        return [{"params": [parameter for _, parameter in trainable]}]
    groups = [
        {
            "params": [p for name, p in trainable if (name in loaded) == pretrained],
            "lr": config.lr * multiplier,
            "lr_multiplier": multiplier,
        }
        for pretrained, multiplier in ((True, config.pretrained_lr), (False, 1.0))
    ]
    return [group for group in groups if group["params"]]


def optimizer_for(
    config: TrainConfig, parameters: Iterable[torch.nn.Parameter] | list[dict[str, Any]]
) -> torch.optim.Optimizer:
    """The optimiser the config names, with its lr, momentum and weight decay, over parameters
    or parameter groups (`parameter_groups`)."""
    return build_optimizer(
        parameters,
        name=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def schedule_for(config: TrainConfig) -> ScheduleSettings:
    """The config's learning-rate schedule: scheduler, lr, min_lr, epochs, warm-up, step decay."""
    return ScheduleSettings(
        scheduler=config.scheduler,
        lr=config.lr,
        min_lr=config.min_lr,
        epochs=config.epochs,
        warmup_steps=config.warmup_steps,
        step_every=config.step_every,
        step_gamma=config.step_gamma,
    )


def criterion_for(config: TrainConfig, coding: BoxCoding, num_classes: int) -> Criterion:
    """The criterion the config asks for (loss, box_loss, cls_loss, assigner, iou_threshold),
    for the model's coding."""
    options = {
        name: value
        for name, value in (("box_loss", config.box_loss), ("cls_loss", config.cls_loss))
        if value is not None
    }
    return build_criterion(
        coding, num_classes, config.loss, config.assigner, config.iou_threshold, options
    )
