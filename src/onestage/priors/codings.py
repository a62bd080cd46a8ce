"""How a head's output becomes boxes and class scores: one object per box coding.

A head says how to read its output, and its model the anchor config and score mode it was built
with (`onestage.models.heads`); `box_coding_for(model, ...)` turns that into a coding, the one
object the trainer (priors, targets), the predictor and the evaluator (decoding) and export
share:

- `AnchorCoding`: SSD offsets against anchors. Output (B, A, 4 + K), 4 offsets
  (`priors.offsets.decode_offsets`, variances 0.1 / 0.2) then K class logits: K = num_classes + 1
  with background LAST, scored by softmax over all K, or by sigmoid over the first num_classes
  (focal-loss models; the background column is unused).
- `PointCoding`: anchor-free, one prior point per feature-map cell (its centre). Output
  (B, A, 4 (reg_max + 1) + num_classes): the distances from the point to the box's left, top,
  right and bottom sides in units of the level's stride (cell size), each a distribution over
  the bins 0..reg_max (decoded by its expectation, `priors.distances.distribution_to_distance`) or,
  with reg_max 0, one value read through softplus; then num_classes sigmoid logits.

Boxes are normalised xyxy throughout. `split` cuts an output into its box part and its logits,
`decode` gives boxes from the box part, `class_scores` the per-class probabilities (B, A,
num_classes) and `priors` the `Priors` the assigners take.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onestage.boxes import xyxy_to_cxcywh
from onestage.errors import OnestageError
from onestage.priors import Priors
from onestage.priors.anchors import (
    ANCHOR_CONFIGS,
    DEFAULT_ANCHOR_CONFIG,
    anchor_counts_per_level,
    generate_anchors,
)
from onestage.priors.distances import (
    boxes_to_distances,
    distances_to_boxes,
    distribution_to_distance,
)
from onestage.priors.offsets import DEFAULT_VARIANCES, decode_offsets_cxcywh

SCORE_MODES = ("softmax", "sigmoid")

# Side of the box an anchor-free prior offers the geometry-only assigner (ATSS), in cells: the
# "anchor" of 5 x 5 strides that PP-YOLOE and YOLOv6 give ATSS. TAL reads only the centres.
POINT_PRIOR_CELLS = 5.0


class BoxCoding(Protocol):
    """What every coding offers (see the module docstring)."""

    score_mode: str
    has_background: bool

    def split(self, pred: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode(self, box_part: Tensor, prior_index: Tensor | None = None) -> Tensor: ...

    def class_scores(self, logits: Tensor) -> Tensor: ...

    def priors(self) -> Priors: ...

    def to(self, device: torch.device | str) -> BoxCoding: ...


def _check_score_mode(score_mode: str) -> None:
    if score_mode not in SCORE_MODES:
        raise OnestageError(f"unknown score_mode {score_mode!r}; valid: {', '.join(SCORE_MODES)}")


@dataclass(frozen=True)
class AnchorCoding:
    """SSD offsets against `anchors_xyxy` (A, 4) normalised xyxy, `level_sizes` anchors per level
    (largest map first); `score_mode` "softmax" (background last) or "sigmoid" (focal)."""

    anchors_xyxy: Tensor
    level_sizes: tuple[int, ...]
    score_mode: str = "softmax"
    variances: tuple[float, float] = DEFAULT_VARIANCES
    has_background = True

    def __post_init__(self) -> None:
        _check_score_mode(self.score_mode)
        # Decoding reads the anchors as centres and sizes: converted once, not per call.
        object.__setattr__(self, "_anchors_cxcywh", xyxy_to_cxcywh(self.anchors_xyxy.float()))

    def split(self, pred: Tensor) -> tuple[Tensor, Tensor]:
        """(B, A, 4 + K) -> offsets (B, A, 4) and logits (B, A, K)."""
        return pred[..., :4], pred[..., 4:]

    def decode(self, box_part: Tensor, prior_index: Tensor | None = None) -> Tensor:
        """(B, A, 4) offsets -> (B, A, 4) normalised xyxy boxes (float32); with `prior_index`
        (B, k), `box_part` (B, k, 4) holds only those anchors' offsets."""
        anchors = self._anchors_cxcywh
        if prior_index is not None:
            anchors = anchors[prior_index]
        return decode_offsets_cxcywh(box_part.float(), anchors, self.variances)

    def class_scores(self, logits: Tensor) -> Tensor:
        """(B, A, num_classes + 1) logits -> (B, A, num_classes) object-class probabilities."""
        logits = logits.float()
        if self.score_mode == "softmax":
            return logits.softmax(dim=-1)[..., :-1]
        return logits[..., :-1].sigmoid()

    def priors(self) -> Priors:
        """The anchors as the assigners take them."""
        return Priors(self.anchors_xyxy, self.level_sizes)

    def to(self, device: torch.device | str) -> AnchorCoding:
        """The same coding with its anchors on `device`."""
        return replace(self, anchors_xyxy=self.anchors_xyxy.to(device))


@dataclass(frozen=True)
class PointCoding:
    """Anchor-free: `points_xy` (A, 2) normalised cell centres, `strides` (A, 2) the cell's
    width and height as fractions of the image, `level_sizes` cells per level, `reg_max` the
    last distance bin (0: softplus distances)."""

    points_xy: Tensor
    strides: Tensor
    level_sizes: tuple[int, ...]
    reg_max: int = 16
    score_mode = "sigmoid"
    has_background = False

    def split(self, pred: Tensor) -> tuple[Tensor, Tensor]:
        """(B, A, 4 (reg_max + 1) + C) -> box part (B, A, 4 (reg_max + 1)), logits (B, A, C)."""
        box_values = 4 * (self.reg_max + 1)
        return pred[..., :box_values], pred[..., box_values:]

    def bins(self, box_part: Tensor) -> Tensor:
        """(B, A, 4 (reg_max + 1)) -> (B, A, 4, reg_max + 1) float32 bin logits per side."""
        return box_part.float().unflatten(-1, (4, self.reg_max + 1))

    def distances(self, box_part: Tensor) -> Tensor:
        """(B, A, 4 (reg_max + 1)) -> (B, A, 4) ltrb distances in stride units (float32)."""
        if self.reg_max == 0:
            return F.softplus(box_part.float())
        return distribution_to_distance(self.bins(box_part), self.reg_max)

    def decode(self, box_part: Tensor, prior_index: Tensor | None = None) -> Tensor:
        """(B, A, 4 (reg_max + 1)) -> (B, A, 4) normalised xyxy boxes (float32); with
        `prior_index` (B, k), `box_part` (B, k, 4 (reg_max + 1)) holds only those points'."""
        points, strides = self.points_xy, self.strides
        if prior_index is not None:
            points, strides = points[prior_index], strides[prior_index]
        return distances_to_boxes(points, self.distances(box_part), strides)

    def encode(self, boxes_xyxy: Tensor) -> Tensor:
        """(B, A, 4) normalised xyxy boxes -> (B, A, 4) ltrb distances from each prior's point,
        in stride units (negative for a point outside its box)."""
        return boxes_to_distances(self.points_xy, boxes_xyxy, self.strides)

    def class_scores(self, logits: Tensor) -> Tensor:
        """(B, A, num_classes) logits -> sigmoid probabilities."""
        return logits.float().sigmoid()

    def priors(self) -> Priors:
        """Each cell as a box POINT_PRIOR_CELLS strides wide around its centre."""
        half = self.strides * (POINT_PRIOR_CELLS / 2)  # (A, 2)
        return Priors(
            torch.cat((self.points_xy - half, self.points_xy + half), 1), self.level_sizes
        )

    def to(self, device: torch.device | str) -> PointCoding:
        """The same coding with its points and strides on `device`."""
        return replace(self, points_xy=self.points_xy.to(device), strides=self.strides.to(device))


def cell_points(feature_sizes: tuple[tuple[int, int], ...]) -> tuple[Tensor, Tensor]:
    """Centres (A, 2) and cell sizes (A, 2) of every cell, normalised x, y, level by level
    (largest first), row-major within a level: the order of an anchor-free head's output."""
    points, strides = [], []
    for height, width in feature_sizes:
        ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        points.append(torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2))
        strides.append(torch.tensor([1 / width, 1 / height]).expand(height * width, 2))
    return torch.cat(points), torch.cat(strides)


def coding_layout(model: nn.Module, input_size: int) -> dict[str, Any]:
    """What reading a model's output at `input_size` needs, as plain data (exported files keep
    it in their metadata, so they decode without the torch model): "box_coding" ("anchors" or
    "points"), "feature_sizes" ([height, width] per level), "reg_max", "anchors_per_cell", and
    the priors and score mode the model was built with: "anchor_config" (anchor heads; None for
    points) and "score_mode". A registered model class written before the head contract reads
    as an anchor head with the default anchors and score mode."""
    box_coding = getattr(model, "box_coding", "anchors")
    default_anchors = DEFAULT_ANCHOR_CONFIG if box_coding == "anchors" else None
    return {
        "box_coding": box_coding,
        "feature_sizes": [list(size) for size in model.feature_sizes_for(input_size)],
        "reg_max": int(getattr(model, "reg_max", 0)),
        "anchors_per_cell": int(getattr(model, "anchors_per_cell", 0)),
        "anchor_config": getattr(model, "anchor_config", default_anchors),
        "score_mode": getattr(model, "score_mode", default_score_mode(box_coding)),
    }


def check_score_mode(box_coding: str, score_mode: str) -> None:
    """A one-line error unless a head of `box_coding` can score by `score_mode`: anchor heads by
    softmax (background last) or sigmoid, anchor-free heads by sigmoid only."""
    valid = SCORE_MODES if box_coding == "anchors" else ("sigmoid",)
    if score_mode not in valid:
        kind = "an anchor" if box_coding == "anchors" else "an anchor-free"
        raise OnestageError(
            f"{kind} head cannot score by {score_mode!r}; valid: {', '.join(valid)}"
        )


def default_score_mode(box_coding: str) -> str:
    """The score mode of a head unless its loss needs another: softmax for anchors (the seed's),
    sigmoid for points."""
    return "softmax" if box_coding == "anchors" else "sigmoid"


def coding_from_layout(layout: dict[str, Any]) -> AnchorCoding | PointCoding:
    """The coding a `coding_layout` describes, on the CPU: an anchor head's anchors are those of
    its "anchor_config", scored by its "score_mode"; anchor-free heads score by sigmoid."""
    feature_sizes = tuple((int(h), int(w)) for h, w in layout["feature_sizes"])
    if layout["box_coding"] == "points":
        points, strides = cell_points(feature_sizes)
        sizes = tuple(h * w for h, w in feature_sizes)
        return PointCoding(points, strides, sizes, int(layout["reg_max"]))
    anchors, per_cell = layout["anchor_config"], int(layout["anchors_per_cell"])
    if anchors is None:
        raise OnestageError(
            f"the model's anchor head ({per_cell} per cell on {len(feature_sizes)} levels) was "
            f"built for no anchor config: build it with anchors=NAME (valid: "
            f"{', '.join(sorted(ANCHOR_CONFIGS))}) to train or decode it"
        )
    counts = anchor_counts_per_level(anchors, feature_sizes)
    expected = tuple(h * w * per_cell for h, w in feature_sizes)
    if counts != expected:
        raise OnestageError(
            f"anchor config {anchors!r} gives {counts} anchors per level, but the model's head "
            f"has {per_cell} per cell on levels {feature_sizes} ({expected})"
        )
    return AnchorCoding(generate_anchors(anchors, feature_sizes), counts, layout["score_mode"])


def box_coding_for(model: nn.Module, input_size: int) -> AnchorCoding | PointCoding:
    """The coding of a model's output at `input_size`, on the model's device: its head's layout
    with the priors and score mode it was built with (see `coding_from_layout`)."""
    device = next(model.parameters()).device
    return coding_from_layout(coding_layout(model, input_size)).to(device)
