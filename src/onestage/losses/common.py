"""The one call of every loss, and their registry: `build_loss("ssd")(pred, targets, coding)`.

Every loss is called the same way, by `losses.criterion` after the assigner:

- `pred` (B, A, values): the head's raw output, box part then class logits;
- `targets`: the assigner's `PriorTargets` (box_targets the matched boxes, normalised xyxy);
- `coding`: the head's box coding (`onestage.priors.codings`), which splits `pred`, decodes its
  box part and gives the priors (and, for anchors, the offset variances) to encode targets with;

and returns a dict of scalar float32 tensors: "loss" (what to minimise) and its named parts.

`LOSSES` holds them all by name: "seed", "ssd", "focal" (`losses.anchor`) and "quality"
(`losses.quality`). Each class says in `box_coding` which heads it fits: "anchors" or "points"
(anchor-free), the values of a model's `box_coding`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from torch import Tensor

from onestage.assign.common import PriorTargets
from onestage.priors.codings import BoxCoding
from onestage.registry import Registry


class DetectionLoss(Protocol):
    """What the criterion calls (see the module docstring)."""

    box_coding: ClassVar[str]  # "anchors" or "points": the heads it fits
    score_mode: ClassVar[str]  # "softmax" or "sigmoid": how the head it trains scores

    def __call__(
        self, pred: Tensor, targets: PriorTargets, coding: BoxCoding
    ) -> dict[str, Tensor]: ...


LOSSES: Registry[type] = Registry("loss")
register_loss = LOSSES.register
loss_names = LOSSES.names


def losses_for(box_coding: str) -> list[str]:
    """The names of the losses that fit heads of `box_coding` ("anchors" or "points"), sorted."""
    return [name for name in LOSSES.names() if LOSSES.get(name).box_coding == box_coding]


def loss_score_mode(name: str) -> str:
    """How a head trained with the loss `name` scores its classes ("softmax" or "sigmoid")."""
    return LOSSES.get(name).score_mode


def build_loss(name: str, **options: Any) -> DetectionLoss:
    """The loss `name` configured with `options` (its dataclass fields)."""
    return LOSSES.build(name, **options)
