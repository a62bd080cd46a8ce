"""The box codings in numpy: how inference reads a head's raw output, without torch.

`numpy_coding(layout)` turns a coding layout (`priors.codings.coding_layout`: the plain data an
exported file carries) into `AnchorArrays` or `PointArrays`, the priors as float32 arrays with
the same `split`, `class_scores` and `decode` as the torch codings of `priors.codings`. Those
(what training differentiates through) are built from these, so a layout's priors have one home.
Boxes are normalised xyxy throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onestage.errors import OnestageError
from onestage.priors.anchors import ANCHOR_CONFIGS, anchor_counts_per_level, generate_anchors

BOX_CODINGS = ("anchors", "points")
SCORE_MODES = ("softmax", "sigmoid")
# SSD offsets: centre offsets are in units of variances[0] x the anchor's size, log size ratios
# in units of variances[1] (the seed's 0.1 and 0.2).
DEFAULT_VARIANCES = (0.1, 0.2)
# A decoded log size ratio is clamped to this before exp (torchvision's log(1000 / 16)), so a
# wild prediction cannot overflow to inf.
MAX_LOG_SIZE_RATIO = math.log(1000.0 / 16)
# `candidate_pairs` widens its bound by this much (in logits) so float32 rounding in the exact
# scores computed afterwards can never lose a candidate.
BOUND_MARGIN = 1e-3


def output_values(box_coding: str, reg_max: int, num_classes: int) -> int:
    """Values per prior of a head's output: 4 + num_classes + 1 for "anchors", 4 (reg_max + 1)
    + num_classes for "points"."""
    if box_coding == "anchors":
        return 4 + num_classes + 1
    return 4 * (reg_max + 1) + num_classes


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


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Elementwise logistic function in float32, without overflow warnings for large |x|."""
    logits = logits.astype(np.float32, copy=False)
    return np.exp(-np.logaddexp(np.float32(0.0), -logits)).astype(np.float32, copy=False)


def logit(probability: float) -> float:
    """The logit of a probability threshold: -inf at or below 0, inf at or above 1."""
    if probability <= 0.0:
        return -math.inf
    if probability >= 1.0:
        return math.inf
    return math.log(probability / (1.0 - probability))


def rows_with_any(mask: np.ndarray) -> np.ndarray:
    """(..., C) bool -> (...) bool: whether each row holds a True (`mask.any(-1)`, without
    numpy's slow reduction over a short last axis)."""
    rows = np.zeros(mask.shape[:-1], dtype=bool)
    rows.reshape(-1)[np.flatnonzero(mask) // mask.shape[-1]] = True
    return rows


def sigmoid_pairs(
    logits: np.ndarray, conf_threshold: float, best_only: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, C) sigmoid logits -> the (prior, class) pairs scoring above `conf_threshold`: priors
    (n,), class ids (n,), scores (n,) float32, in ascending pair order (`best_only`: each
    prior's best-scoring class only). Pairs are found by their logit (the sigmoid keeps the
    order; BOUND_MARGIN covers its float32 rounding), then only they are scored."""
    priors, class_ids = np.nonzero(logits > logit(conf_threshold) - BOUND_MARGIN)
    scores = sigmoid(logits[priors, class_ids])
    valid = scores > np.float32(conf_threshold)
    if best_only:
        valid &= sigmoid(logits[priors]).argmax(axis=-1) == class_ids
    return priors[valid], class_ids[valid], scores[valid]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float32."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def cell_points(feature_sizes: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Centres (A, 2) and cell sizes (A, 2) of every cell, float32 normalised x, y, level by
    level (largest first), row-major within a level: the order of an anchor-free head's output."""
    points, strides = [], []
    for height, width in feature_sizes:
        ys = (np.arange(height, dtype=np.float32) + 0.5) / height
        xs = (np.arange(width, dtype=np.float32) + 0.5) / width
        grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        points.append(np.stack((grid_x, grid_y), axis=-1).reshape(-1, 2))
        cell = np.array([1 / width, 1 / height], dtype=np.float32)
        strides.append(np.broadcast_to(cell, (height * width, 2)))
    return np.concatenate(points), np.concatenate(strides)


@dataclass(frozen=True)
class AnchorArrays:
    """SSD offsets against `anchors_xyxy` (A, 4) float32 normalised xyxy, `level_sizes` anchors
    per level; output (B, A, 4 + K) with K = num_classes + 1, background last, scored by
    `score_mode` "softmax" (over all K) or "sigmoid" (the first num_classes)."""

    anchors_xyxy: np.ndarray
    level_sizes: tuple[int, ...]
    score_mode: str = "softmax"
    variances: tuple[float, float] = DEFAULT_VARIANCES
    anchors_cxcywh: np.ndarray = field(init=False, repr=False)
    one_to_one = False  # anchor heads are all trained one-to-many: they need NMS

    def __post_init__(self) -> None:
        check_score_mode("anchors", self.score_mode)
        anchors = self.anchors_xyxy
        centres, sizes = (anchors[:, :2] + anchors[:, 2:]) / 2, anchors[:, 2:] - anchors[:, :2]
        object.__setattr__(self, "anchors_cxcywh", np.concatenate((centres, sizes), axis=1))

    def split(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, A, 4 + K) -> offsets (B, A, 4) and logits (B, A, K)."""
        return pred[..., :4], pred[..., 4:]

    def class_scores(self, logits: np.ndarray) -> np.ndarray:
        """(B, A, num_classes + 1) logits -> (B, A, num_classes) float32 probabilities."""
        if self.score_mode == "softmax":
            return softmax(logits.astype(np.float32, copy=False))[..., :-1]
        return sigmoid(logits[..., :-1])

    def candidate_pairs(
        self, logits: np.ndarray, conf_threshold: float, best_only: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image's (A, num_classes + 1) logits -> its candidates: the (anchor, class) pairs
        scoring above `conf_threshold`, as anchors (n,), class ids (n,) and scores (n,) float32,
        in ascending pair order (`best_only`: each anchor's best class only, for a softmax
        coding the best of all K, so an anchor whose best is background offers nothing). Only
        the anchors whose logits allow a candidate are scored: for softmax, a class's
        probability is at most exp(its logit - the background's)."""
        if self.score_mode == "sigmoid":
            return sigmoid_pairs(logits[:, :-1], conf_threshold, best_only)
        bound = -math.inf if conf_threshold <= 0 else math.log(conf_threshold)
        possible = rows_with_any(logits[:, :-1] - logits[:, -1:] > bound - BOUND_MARGIN)
        anchors = np.flatnonzero(possible)
        rows = logits[anchors]
        scores = softmax(rows.astype(np.float32, copy=False))[:, :-1]
        valid = scores > np.float32(conf_threshold)
        if best_only:
            valid &= rows.argmax(axis=-1)[:, None] == np.arange(scores.shape[-1])
        picked, class_ids = np.nonzero(valid)
        return anchors[picked], class_ids, scores[picked, class_ids]

    def decode(self, box_part: np.ndarray, prior_index: np.ndarray | None = None) -> np.ndarray:
        """(B, A, 4) offsets -> (B, A, 4) float32 normalised xyxy boxes; with `prior_index`
        (B, k), `box_part` (B, k, 4) holds only those anchors' offsets."""
        anchors = self.anchors_cxcywh if prior_index is None else self.anchors_cxcywh[prior_index]
        offsets = box_part.astype(np.float32, copy=False)
        centre_unit, size_unit = (np.float32(v) for v in self.variances)
        anchor_centre, anchor_size = anchors[..., :2], anchors[..., 2:]
        centre = anchor_centre + offsets[..., :2] * centre_unit * anchor_size
        log_ratio = np.minimum(offsets[..., 2:] * size_unit, np.float32(MAX_LOG_SIZE_RATIO))
        half_size = np.exp(log_ratio) * (anchor_size * np.float32(0.5))
        return np.concatenate((centre - half_size, centre + half_size), axis=-1)


@dataclass(frozen=True)
class PointArrays:
    """Anchor-free: `points_xy` (A, 2) float32 normalised cell centres, `strides` (A, 2) each
    cell's width and height, `level_sizes` cells per level; output (B, A, 4 (reg_max + 1) + C):
    left, top, right, bottom distances in strides, each a distribution over the bins 0..reg_max
    (read by its expectation) or, with reg_max 0, one value through softplus; then C sigmoid
    logits."""

    points_xy: np.ndarray
    strides: np.ndarray
    level_sizes: tuple[int, ...]
    reg_max: int = 16
    one_to_one: bool = False  # an NMS-free head (`models.heads.DualDecoupledHead`)
    score_mode = "sigmoid"

    def split(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, A, 4 (reg_max + 1) + C) -> box part (B, A, 4 (reg_max + 1)), logits (B, A, C)."""
        box_values = 4 * (self.reg_max + 1)
        return pred[..., :box_values], pred[..., box_values:]

    def class_scores(self, logits: np.ndarray) -> np.ndarray:
        """(B, A, C) logits -> float32 sigmoid probabilities."""
        return sigmoid(logits)

    def candidate_pairs(
        self, logits: np.ndarray, conf_threshold: float, best_only: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image's (A, C) logits -> its candidates as `AnchorArrays.candidate_pairs`."""
        return sigmoid_pairs(logits, conf_threshold, best_only)

    def distances(self, box_part: np.ndarray) -> np.ndarray:
        """(B, A, 4 (reg_max + 1)) -> (B, A, 4) float32 ltrb distances in strides."""
        values = box_part.astype(np.float32, copy=False)
        if self.reg_max == 0:
            return np.logaddexp(np.float32(0.0), values).astype(np.float32, copy=False)
        bins = values.reshape(*values.shape[:-1], 4, self.reg_max + 1)
        return softmax(bins) @ np.arange(self.reg_max + 1, dtype=np.float32)

    def decode(self, box_part: np.ndarray, prior_index: np.ndarray | None = None) -> np.ndarray:
        """(B, A, 4 (reg_max + 1)) -> (B, A, 4) float32 normalised xyxy boxes; with
        `prior_index` (B, k), `box_part` (B, k, 4 (reg_max + 1)) holds only those points'."""
        points, strides = self.points_xy, self.strides
        if prior_index is not None:
            points, strides = points[prior_index], strides[prior_index]
        distances = self.distances(box_part)
        return np.concatenate(
            (points - distances[..., :2] * strides, points + distances[..., 2:] * strides), -1
        )


def numpy_coding(layout: dict[str, Any]) -> AnchorArrays | PointArrays:
    """The coding a coding layout describes: an anchor head's anchors are those of its
    "anchor_config", scored by its "score_mode"; anchor-free heads score by sigmoid, and one
    with "one_to_one" (true for an NMS-free head; absent before) needs no NMS."""
    feature_sizes = tuple((int(h), int(w)) for h, w in layout["feature_sizes"])
    if layout["box_coding"] == "points":
        points, strides = cell_points(feature_sizes)
        sizes = tuple(h * w for h, w in feature_sizes)
        one_to_one = bool(layout.get("one_to_one", False))
        return PointArrays(points, strides, sizes, int(layout["reg_max"]), one_to_one)
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
    return AnchorArrays(generate_anchors(anchors, feature_sizes), counts, layout["score_mode"])
