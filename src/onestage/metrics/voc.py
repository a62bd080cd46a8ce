"""Pascal VOC average precision: the Cartucho/mAP tool's (main.py) matching and AP, two IoU rules.

Definition, per class:

1. All detections of the class over all images, sorted by score, highest first. The sort is
   stable: equal scores keep input order, i.e. image list position, then position within the
   image (the tool reads its files in name order, so export image names that sort like their
   positions to get the same tie order there).
2. Each detection in turn takes, among all ground truths of its class in its image (difficult
   ones included), the one with the highest IoU (a later one must be strictly higher to win).
   If that IoU >= the threshold (0.5): a difficult ground truth makes the detection ignored
   (neither TP nor FP); an unused one makes it a TP and marks it used; a used one makes it an FP,
   even if another free ground truth overlaps it less. Otherwise (or without any overlapping
   ground truth) it is an FP.
3. recall = cumTP / number of non-difficult ground truths, precision = cumTP / (cumTP + cumFP).
4. AP = area under the precision envelope, VOC2010+ all-point interpolation (`all_point_ap`).

mAP is the mean AP over the classes with at least one non-difficult ground truth, as in the tool;
classes that only have detections are listed in `VocResult.classes_without_ground_truth`.

IoU conventions (boxes are always continuous absolute pixel xyxy, as onestage stores them):

- "continuous" (default): geometric IoU, a width is x2 - x1. The VOC reader stores a 1-based
  inclusive VOC box as (xmin - 1, ymin - 1, xmax, ymax), so on VOC-format data this gives the
  VOC devkit's IoU (VOCevaldet.m: width xmax - xmin + 1) exactly, and the same matching and AP.
- "cartucho": the Cartucho/mAP tool's rule, +1 on the stored coordinates (a width is
  x2 - x1 + 1). It reproduces the tool exactly on the files `export_cartucho` writes (and the seed
  project's scores); on continuous coordinates it counts the inclusive pixel a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from onestage.detections import DetectionsLike, ImageDetections
from onestage.metrics import GroundTruthLike, ImageGroundTruth, as_evaluation_inputs

IouConvention = Literal["continuous", "cartucho"]
IOU_CONVENTIONS: tuple[IouConvention, ...] = ("continuous", "cartucho")


@dataclass(frozen=True)
class ClassCounts:
    """Per-class tallies. The tool prints "fp" as detections - TP, i.e. FP + ignored."""

    ground_truths: int  # non-difficult ground truths
    detections: int
    true_positives: int
    false_positives: int
    ignored: int  # matched a difficult ground truth: neither TP nor FP


@dataclass(frozen=True)
class VocResult:
    """VOC all-point AP at one IoU threshold.

    `ap_per_class`, `precision` and `recall` hold the classes with ground truth; `counts` holds
    every class. The precision/recall arrays have one point per TP or FP detection in score order
    (ignored detections are left out; the tool repeats the previous point, same AP).
    """

    map: float  # mean of ap_per_class; NaN when no class has ground truth
    ap_per_class: dict[str, float]
    counts: dict[str, ClassCounts]
    precision: dict[str, np.ndarray]
    recall: dict[str, np.ndarray]
    classes_without_ground_truth: tuple[str, ...]  # detected classes left out of the mAP
    iou_threshold: float
    iou_convention: IouConvention


def pairwise_iou(
    boxes_a: np.ndarray, boxes_b: np.ndarray, convention: IouConvention = "continuous"
) -> np.ndarray:
    """IoU of (A, 4) and (B, 4) absolute pixel xyxy boxes -> (A, B); -1 where they do not overlap.

    "continuous": a width is x2 - x1; "cartucho": x2 - x1 + 1 (module docstring). Pairs count as
    overlapping only when the intersection width and height are both > 0. The arithmetic follows
    the tool term by term, so "cartucho" values are bit-identical to its Python floats.
    """
    plus = {"continuous": 0.0, "cartucho": 1.0}[convention]
    a = boxes_a[:, None, :]  # (A, 1, 4)
    b = boxes_b[None, :, :]  # (1, B, 4)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + plus  # (A, B)
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + plus
    union = (
        (a[..., 2] - a[..., 0] + plus) * (a[..., 3] - a[..., 1] + plus)
        + (b[..., 2] - b[..., 0] + plus) * (b[..., 3] - b[..., 1] + plus)
        - iw * ih
    )
    overlaps = (iw > 0) & (ih > 0)
    iou = np.full(overlaps.shape, -1.0)
    np.divide(iw * ih, union, out=iou, where=overlaps)
    return iou


def all_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope (VOC2010+ all-point interpolation).

    Recall 0 / precision 0 is prepended and recall 1 / precision 0 appended; each precision is
    raised to the highest precision at any later point; AP sums Δrecall x precision at the points
    where recall changes. No points (no detections) gives 0.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    changes = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[changes] - mrec[changes - 1]) * envelope[changes]))


def evaluate_voc(
    ground_truths: list[GroundTruthLike],
    detections: list[DetectionsLike],
    class_names: list[str],
    iou_threshold: float = 0.5,
    iou_convention: IouConvention = "continuous",
) -> VocResult:
    """VOC AP per class and mAP over classes with ground truth (module docstring: definition).

    Boxes are absolute pixel xyxy; `class_ids` index `class_names`; the two lists pair up by
    position (one entry per image).
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if iou_convention not in IOU_CONVENTIONS:
        raise ValueError(
            f"iou_convention must be 'continuous' or 'cartucho', got {iou_convention!r}"
            + (" (the former name of 'cartucho')" if iou_convention == "voc" else "")
        )
    gts, dets = as_evaluation_inputs(ground_truths, detections, len(class_names))

    # Flat arrays over all images; each detection's match is an index into them (-1: none).
    offsets = np.cumsum([0] + [len(g.class_ids) for g in gts])[:-1]
    det_match = np.concatenate(
        [
            _match(gt, det, offset, iou_threshold, iou_convention)
            for gt, det, offset in zip(gts, dets, offsets, strict=True)
        ]
        + [np.zeros(0, np.int64)]
    )
    gt_difficult = np.concatenate([g.difficult for g in gts] + [np.zeros(0, bool)])
    gt_class = np.concatenate([g.class_ids for g in gts] + [np.zeros(0, np.int64)])
    det_class = np.concatenate([d.class_ids for d in dets] + [np.zeros(0, np.int64)])
    det_score = np.concatenate([d.scores for d in dets] + [np.zeros(0)])

    used = np.zeros(len(gt_class), dtype=bool)
    ap_per_class, counts, precision, recall = {}, {}, {}, {}
    for class_id, name in enumerate(class_names):
        members = np.flatnonzero(det_class == class_id)
        order = members[np.argsort(-det_score[members], kind="stable")]
        # +1 TP, -1 FP, 0 ignored, in score order
        outcomes = _assign(det_match[order].tolist(), gt_difficult, used)
        n_gt = int(np.sum((gt_class == class_id) & ~gt_difficult))
        n_tp, n_fp = outcomes.count(1), outcomes.count(-1)
        counts[name] = ClassCounts(n_gt, len(order), n_tp, n_fp, len(order) - n_tp - n_fp)
        if n_gt == 0:
            continue
        scored = np.array([o for o in outcomes if o != 0])
        cum_tp = np.cumsum(scored == 1)
        cum_fp = np.cumsum(scored == -1)
        recall[name] = cum_tp / n_gt
        precision[name] = cum_tp / (cum_tp + cum_fp)
        ap_per_class[name] = all_point_ap(recall[name], precision[name])

    return VocResult(
        map=float(np.mean(list(ap_per_class.values()))) if ap_per_class else float("nan"),
        ap_per_class=ap_per_class,
        counts=counts,
        precision=precision,
        recall=recall,
        classes_without_ground_truth=tuple(
            name for name, c in counts.items() if c.ground_truths == 0 and c.detections > 0
        ),
        iou_threshold=iou_threshold,
        iou_convention=iou_convention,
    )


def _match(
    gt: ImageGroundTruth,
    det: ImageDetections,
    offset: int,
    iou_threshold: float,
    convention: IouConvention,
) -> np.ndarray:
    """Per detection of one image: `offset` + the index of the same-class ground truth with the
    highest IoU (the first on ties) where that IoU >= `iou_threshold`, else -1.
    """
    iou = pairwise_iou(det.boxes_xyxy, gt.boxes_xyxy, convention)  # (D, G), -1: no overlap
    iou[det.class_ids[:, None] != gt.class_ids[None, :]] = -1.0
    if iou.shape[1] == 0:
        return np.full(len(iou), -1)
    return np.where(iou.max(axis=1) >= iou_threshold, iou.argmax(axis=1) + offset, -1)


def _assign(matches: list[int], gt_difficult: np.ndarray, used: np.ndarray) -> list[int]:
    """The tool's sequential matching over score-sorted detections; marks TPs' ground truths used.

    `matches`: each detection's matched ground truth (-1: none). Returns +1 (TP), -1 (FP) or 0
    (ignored: the match is a difficult ground truth) per detection.
    """
    outcomes = []
    for gt_index in matches:
        if gt_index < 0:
            outcomes.append(-1)
        elif gt_difficult[gt_index]:
            outcomes.append(0)
        elif used[gt_index]:
            outcomes.append(-1)
        else:
            used[gt_index] = True
            outcomes.append(1)
    return outcomes
