"""The training objective of any head: its assigner's targets, then its loss, in one call.

`build_criterion(coding, num_classes, loss=..., assigner=...)` returns a `Criterion`;
`criterion(pred, gt_boxes_xyxy, gt_class_ids)` gives the named loss parts (a dict of scalar
tensors, "loss" the one to minimise). Ground truth is in the batch layout of `onestage.assign`:
gt_boxes_xyxy (B, M, 4) normalised xyxy, gt_class_ids (B, M) int64, -1 for padding slots, -2 for
ignored objects.

One path for every head: assigner -> `PriorTargets` -> loss. The assigner comes from
`assign.ASSIGNERS`: "maxiou" (the seed's rule at `iou_threshold`; anchor heads only), "atss" or
"tal" (TAL reads the detached predictions). The default is the head's own: "maxiou" for
anchors, "tal" for points (YOLOv8's settings: topk 10, alpha 0.5, beta 6). The loss comes from
`losses.LOSSES` and must fit the head's box coding: seed, ssd or focal for anchors (they encode
the matched boxes as offsets against the anchors), quality for points.

An NMS-free head (`coding.one_to_one`, `models.heads.DualDecoupledHead`) gives in training its
one-to-many priors then its one-to-one ones: the first half is assigned as above, the second
by TAL with the same metric and one prior per object (ONE_TO_ONE_TAL), each half goes through
the loss, and the parts are summed (YOLOv10's consistent dual assignment).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from torch import Tensor

from onestage.assign import Assigner, build_assigner
from onestage.errors import OnestageError
from onestage.losses.common import LOSSES, DetectionLoss, build_loss, losses_for
from onestage.priors import Priors
from onestage.priors.codings import BoxCoding, PointCoding
from onestage.train_choices import ASSIGNER_NAMES

# The TAL settings of YOLOv8's detection loss (the assigner's own defaults are TOOD's).
HEAD_TAL = {"topk": 10, "alpha": 0.5, "beta": 6.0}
# An NMS-free head's one-to-one branch: the same matching metric, its one best prior (YOLOv10).
ONE_TO_ONE_TAL = {**HEAD_TAL, "topk": 1}


def default_assigner(coding: BoxCoding) -> str:
    """The assigner a head trains with unless told otherwise."""
    return "tal" if isinstance(coding, PointCoding) else "maxiou"


def default_loss(coding: BoxCoding) -> str:
    """The loss a head trains with unless told otherwise (anchor heads: the seed's)."""
    return "quality" if isinstance(coding, PointCoding) else "seed"


@dataclass
class Criterion:
    """Assigner + loss for one coding (see the module docstring)."""

    coding: BoxCoding
    num_classes: int
    loss_name: str
    loss: DetectionLoss
    assigner: Assigner
    one_to_one_assigner: Assigner | None = None  # an NMS-free head's second branch
    priors: Priors = field(init=False)  # the coding's, made once

    def __post_init__(self) -> None:
        self.priors = self.coding.priors()

    def __call__(
        self, pred: Tensor, gt_boxes_xyxy: Tensor, gt_class_ids: Tensor
    ) -> dict[str, Tensor]:
        """pred (B, A, values) of the model (an NMS-free head in training: (B, 2A, values))
        -> named scalar loss parts (float32)."""
        pred = pred.float()
        priors = self.priors.boxes.shape[0]
        if self.one_to_one_assigner is None or pred.shape[1] != 2 * priors:
            return self._parts(pred, gt_boxes_xyxy, gt_class_ids, self.assigner)
        many = self._parts(pred[:, :priors], gt_boxes_xyxy, gt_class_ids, self.assigner)
        one = self._parts(pred[:, priors:], gt_boxes_xyxy, gt_class_ids, self.one_to_one_assigner)
        return {name: many[name] + one[name] for name in many}

    def _parts(
        self, pred: Tensor, gt_boxes_xyxy: Tensor, gt_class_ids: Tensor, assigner: Assigner
    ) -> dict[str, Tensor]:
        """The loss parts of one output (B, A, values) under `assigner`."""
        scores = boxes = None
        if assigner.uses_predictions:
            box_part, logits = self.coding.split(pred)
            scores = self.coding.class_scores(logits.detach())  # (B, A, C)
            boxes = self.coding.decode(box_part.detach())  # (B, A, 4)
        targets = assigner(
            self.priors, gt_boxes_xyxy, gt_class_ids, self.num_classes, scores, boxes
        )
        return self.loss(pred, targets, self.coding)


def build_criterion(
    coding: BoxCoding,
    num_classes: int,
    loss: str | None = None,
    assigner: str | None = None,
    iou_threshold: float = 0.4,
    loss_options: dict[str, Any] | None = None,
) -> Criterion:
    """The criterion of a head: `loss` and `assigner` by name (None: the head's default),
    `iou_threshold` the max-IoU assigner's, `loss_options` the loss's dataclass fields (e.g.
    box_loss)."""
    points = isinstance(coding, PointCoding)
    loss = loss or default_loss(coding)
    assigner = assigner or default_assigner(coding)
    if assigner not in ASSIGNER_NAMES:
        raise OnestageError(f"unknown assigner {assigner!r}; valid: {', '.join(ASSIGNER_NAMES)}")
    if points and assigner == "maxiou":
        raise OnestageError(
            "the max-IoU assigner needs anchors; an anchor-free head takes atss or tal"
        )
    box_coding = "points" if points else "anchors"
    loss_class = LOSSES.get(loss)
    if loss_class.box_coding != box_coding:
        kind = "an anchor-free" if points else "an anchor-based"
        valid = ", ".join(losses_for(box_coding))
        raise OnestageError(f"loss {loss!r} does not fit {kind} head; valid: {valid}")
    if loss_class.score_mode != coding.score_mode:
        raise OnestageError(
            f"loss {loss!r} trains a head that scores by {loss_class.score_mode}, but this head "
            f"was built to score by {coding.score_mode}"
        )
    options = loss_options or {}
    if "variances" in {f.name for f in fields(loss_class)}:
        options = {"variances": coding.variances, **options}  # a box term decodes as the head
    assigner_options = {"maxiou": {"iou_threshold": iou_threshold}, "tal": HEAD_TAL}
    return Criterion(
        coding=coding,
        num_classes=num_classes,
        loss_name=loss,
        loss=build_loss(loss, **options),
        assigner=build_assigner(assigner, **assigner_options.get(assigner, {})),
        one_to_one_assigner=(
            build_assigner("tal", **ONE_TO_ONE_TAL) if coding.one_to_one else None
        ),
    )
