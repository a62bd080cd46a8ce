"""The training objective of any head: its assigner's targets, then its loss, in one call.

`build_criterion(coding, num_classes, loss=..., assigner=...)` returns a `Criterion`;
`criterion(pred, gt_boxes_xyxy, gt_class_ids)` gives the named loss parts (a dict of scalar
tensors, "loss" the one to minimise). Ground truth is in the batch layout of
`onestage.assign.maxiou`: gt_boxes_xyxy (B, M, 4) normalised xyxy, gt_class_ids (B, M) int64, -1
for padding slots, -2 for ignored objects.

Assigners: "maxiou" (the seed's rule, `assign.build_targets`, at `iou_threshold`; anchor heads
only), "atss" and "tal" (`onestage.assign`; TAL reads the detached predictions). The default
is the head's own: "maxiou" for anchors, "tal" for points (YOLOv8's settings: topk 10,
alpha 0.5, beta 6).

Losses: anchor heads take a `losses.LOSSES` loss (seed, ssd, focal) on offsets encoded against
the anchors; anchor-free heads take "quality" (`losses.quality.QualityLoss`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from torch import Tensor

from onestage.assign import Assigner, build_assigner
from onestage.assign.maxiou import build_targets
from onestage.errors import OnestageError
from onestage.losses.anchor import LOSSES, DetectionLoss, build_loss, loss_names
from onestage.losses.quality import POINT_LOSSES, QualityLoss
from onestage.priors import Priors
from onestage.priors.codings import BoxCoding, PointCoding
from onestage.priors.offsets import encode_offsets
from onestage.train_choices import ASSIGNER_NAMES, POINT_LOSS

# The TAL settings of YOLOv8's detection loss (the assigner's own defaults are TOOD's).
HEAD_TAL = {"topk": 10, "alpha": 0.5, "beta": 6.0}


def default_assigner(coding: BoxCoding) -> str:
    """The assigner a head trains with unless told otherwise."""
    return "tal" if isinstance(coding, PointCoding) else "maxiou"


def default_loss(coding: BoxCoding) -> str:
    """The loss a head trains with unless told otherwise (anchor heads: the seed's)."""
    return POINT_LOSS if isinstance(coding, PointCoding) else "seed"


@dataclass
class Criterion:
    """Assigner + loss for one coding (see the module docstring)."""

    coding: BoxCoding
    num_classes: int
    loss_name: str
    loss: DetectionLoss | QualityLoss
    assigner: Assigner | None = None  # None: the seed's max-IoU rule
    iou_threshold: float = 0.4
    priors: Priors = field(init=False)  # the coding's, made once

    def __post_init__(self) -> None:
        self.priors = self.coding.priors()

    def __call__(
        self, pred: Tensor, gt_boxes_xyxy: Tensor, gt_class_ids: Tensor
    ) -> dict[str, Tensor]:
        """pred (B, A, values) of the model -> named scalar loss parts (float32)."""
        pred = pred.float()
        box_part, logits = self.coding.split(pred)
        if self.assigner is None:  # the seed's rule (anchor heads only)
            assigned = build_targets(
                self.priors.boxes,
                gt_boxes_xyxy,
                gt_class_ids,
                self.num_classes,
                self.iou_threshold,
                self.coding.variances,  # the offsets the coding decodes
            )
            return self.loss(
                pred,
                assigned.class_targets,
                assigned.box_targets,
                assigned.positive,
                anchors_xyxy=self.priors.boxes,
                ignored=assigned.ignored,
            )
        scores = boxes = None
        if self.assigner.uses_predictions:
            scores = self.coding.class_scores(logits.detach())  # (B, A, C)
            boxes = self.coding.decode(box_part.detach())  # (B, A, 4)
        targets = self.assigner(
            self.priors, gt_boxes_xyxy, gt_class_ids, self.num_classes, scores, boxes
        )
        if isinstance(self.coding, PointCoding):
            return self.loss(box_part, logits, self.coding, targets)
        encoded = encode_offsets(targets.box_targets, self.priors.boxes, self.coding.variances)
        return self.loss(
            pred,
            targets.class_targets,
            encoded.masked_fill(~targets.positive[..., None], 0.0),  # (B, A, 4)
            targets.positive,
            anchors_xyxy=self.priors.boxes,
            ignored=targets.ignored,
        )


def build_criterion(
    coding: BoxCoding,
    num_classes: int,
    loss: str | None = None,
    assigner: str | None = None,
    iou_threshold: float = 0.4,
    loss_options: dict[str, Any] | None = None,
) -> Criterion:
    """The criterion of a head: `loss` and `assigner` by name (None: the head's default),
    `loss_options` the loss's dataclass fields (e.g. box_loss)."""
    points = isinstance(coding, PointCoding)
    loss = loss or default_loss(coding)
    assigner = assigner or default_assigner(coding)
    if assigner not in ASSIGNER_NAMES:
        raise OnestageError(f"unknown assigner {assigner!r}; valid: {', '.join(ASSIGNER_NAMES)}")
    if points and assigner == "maxiou":
        raise OnestageError(
            "the max-IoU assigner needs anchors; an anchor-free head takes atss or tal"
        )
    if points != (loss == POINT_LOSS):
        valid = POINT_LOSS if points else ", ".join(loss_names())
        kind = "an anchor-free" if points else "an anchor-based"
        raise OnestageError(f"loss {loss!r} does not fit {kind} head; valid: {valid}")
    options = loss_options or {}
    if not points and "variances" in {f.name for f in fields(LOSSES.get(loss))}:
        options = {"variances": coding.variances, **options}  # a box term decodes as the head
    built_loss: DetectionLoss | QualityLoss = (
        POINT_LOSSES.build(loss, **options) if points else build_loss(loss, **options)
    )
    built_assigner = None
    if assigner != "maxiou":
        built_assigner = build_assigner(assigner, **(HEAD_TAL if assigner == "tal" else {}))
    return Criterion(
        coding=coding,
        num_classes=num_classes,
        loss_name=loss,
        loss=built_loss,
        assigner=built_assigner,
        iou_threshold=iou_threshold,
    )
