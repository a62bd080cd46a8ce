"""Named anchor configs and the anchor level they are made of: sizes and aspect ratios.

The one home of the anchor config names: `onestage.config` checks a config's `anchors` against
them, `priors.anchors` (which re-exports both) generates the boxes.
Importing this module loads nothing else (no torch), so a config is checked before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from onestage.errors import OnestageError


@dataclass(frozen=True)
class AnchorLevel:
    """Anchor sizes (fractions of the image side) and aspect ratios (width / height) of a level.

    Each cell gets len(sizes) + len(ratios) - 1 anchors: every size at ratios[0], then
    sizes[0] at each of the other ratios.
    """

    sizes: tuple[float, ...]
    ratios: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.sizes or not self.ratios:
            raise OnestageError(f"an anchor level needs sizes and ratios, got {self}")
        if min(self.sizes) <= 0 or min(self.ratios) <= 0:
            raise OnestageError(f"anchor sizes and ratios must be positive, got {self}")


_SEED_LEVEL_0 = AnchorLevel(sizes=(0.2, 0.272), ratios=(0.5, 1.0, 2.0))
_SEED_RATIOS = (1.0, 2.0, 0.5)

ANCHOR_CONFIGS: dict[str, tuple[AnchorLevel, ...]] = {
    # The seed as it runs: levels 1-4 (10x10, 5x5, 3x3, 1x1) all use sizes (0.75, 0.5).
    "seed": (_SEED_LEVEL_0, *[AnchorLevel((0.75, 0.5), _SEED_RATIOS)] * 4),
    # The per-level sizes the seed's notebook defines but never uses.
    "seed-intended": (
        _SEED_LEVEL_0,
        AnchorLevel((0.37, 0.447), _SEED_RATIOS),
        AnchorLevel((0.54, 0.619), _SEED_RATIOS),
        AnchorLevel((0.71, 0.79), _SEED_RATIOS),
        AnchorLevel((0.88, 0.961), _SEED_RATIOS),
    ),
}
