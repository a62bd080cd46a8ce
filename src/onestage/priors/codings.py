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
from onestage.priors.anchors import DEFAULT_ANCHOR_CONFIG
from onestage.priors.distances import (
    boxes_to_distances,
    distances_to_boxes,
    distribution_to_distance,
)
from onestage.priors.numpy_codings import (
    SCORE_MODES,
    PointArrays,
    default_score_mode,
    numpy_coding,
)
from onestage.priors.offsets import DEFAULT_VARIANCES, decode_offsets_cxcywh

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
    one_to_one = False  # anchor heads are all trained one-to-many: they need NMS

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
    one_to_one: bool = False  # an NMS-free head: its training output holds two heads' priors
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


def coding_layout(model: nn.Module, input_size: int) -> dict[str, Any]:
    """What reading a model's output at `input_size` needs, as plain data (exported files keep
    it in their metadata, so they decode without the torch model): "box_coding" ("anchors" or
    "points"), "feature_sizes" ([height, width] per level), "reg_max", "anchors_per_cell", and
    the priors and score mode the model was built with: "anchor_config" (anchor heads; None for
    points) and "score_mode"; "one_to_one" for an NMS-free head. A registered model class
    written before the head contract reads as an anchor head with the default anchors and score
    mode."""
    box_coding = getattr(model, "box_coding", "anchors")
    default_anchors = DEFAULT_ANCHOR_CONFIG if box_coding == "anchors" else None
    return {
        "box_coding": box_coding,
        "feature_sizes": [list(size) for size in model.feature_sizes_for(input_size)],
        "reg_max": int(getattr(model, "reg_max", 0)),
        "anchors_per_cell": int(getattr(model, "anchors_per_cell", 0)),
        "anchor_config": getattr(model, "anchor_config", default_anchors),
        "score_mode": getattr(model, "score_mode", default_score_mode(box_coding)),
        "one_to_one": bool(getattr(model, "one_to_one", False)),
    }


def coding_from_layout(layout: dict[str, Any]) -> AnchorCoding | PointCoding:
    """The coding a `coding_layout` describes, on the CPU: the priors of
    `priors.numpy_codings.numpy_coding` as tensors."""
    arrays = numpy_coding(layout)
    if isinstance(arrays, PointArrays):
        points, strides = torch.from_numpy(arrays.points_xy), torch.from_numpy(arrays.strides)
        return PointCoding(points, strides, arrays.level_sizes, arrays.reg_max, arrays.one_to_one)
    anchors = torch.from_numpy(arrays.anchors_xyxy)
    return AnchorCoding(anchors, arrays.level_sizes, arrays.score_mode)


def box_coding_for(model: nn.Module, input_size: int) -> AnchorCoding | PointCoding:
    """The coding of a model's output at `input_size`, on the model's device: its head's layout
    with the priors and score mode it was built with (see `coding_from_layout`)."""
    device = next(model.parameters()).device
    return coding_from_layout(coding_layout(model, input_size)).to(device)
