"""Priors and box codings: where a head's predictions sit and how its outputs read as boxes.

`Priors` (here) holds a head's priors in its output order, as the assigners take them;
`anchors` generates SSD anchor boxes per level; `codings` pairs a head's priors (anchors, or one
point per feature-map cell) with the code its outputs are written in (SSD offsets against an
anchor, or left/top/right/bottom distances from a point, as a DFL distribution) and the score
mode (softmax with background last, or sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package stays torch-free: onestage.config reads priors.anchor_configs
    from torch import Tensor


@dataclass(frozen=True)
class Priors:
    """The priors (anchors, or cells for anchor-free heads) of a head, in its output order.

    boxes: (A, 4) normalised xyxy; an anchor-free head passes each cell's box (centre +- half
    its stride). level_sizes: the number of priors of each pyramid level, in prior order
    (largest map first); they sum to A. Only ATSS reads the levels.
    """

    boxes: Tensor
    level_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if (
            not self.level_sizes
            or min(self.level_sizes) < 1
            or sum(self.level_sizes) != self.boxes.shape[0]
        ):
            raise ValueError(
                f"level sizes {self.level_sizes} must be positive and sum to the "
                f"{self.boxes.shape[0]} priors"
            )
