"""Detection confusion matrix in Ultralytics' convention (ConfusionMatrix.process_batch).

Definition, for C classes: a (C + 1, C + 1) count matrix, rows = PREDICTED class, columns = TRUE
class, index C = background. Per image:

1. Detections with score >= `conf_threshold` take part; the others are dropped.
2. Difficult ground truths are removed: neither counted nor matched. A detection on a difficult
   object is therefore a false alarm, as in Ultralytics, whose VOC labels leave difficult objects
   out.
3. IoU (continuous pixels, width = x2 - x1) between every ground truth and every detection,
   class-agnostic. Pairs with IoU > `iou_threshold` are matched greedily by descending IoU, each
   ground truth and each detection at most once (equal IoUs: lower ground-truth index, then lower
   detection index first).
4. matched pair -> [predicted class, true class] += 1 (diagonal: correct, off-diagonal: wrong
   class); unmatched ground truth -> [background, true class] += 1 (missed); unmatched detection
   -> [predicted class, background] += 1 (false alarm, e.g. a duplicate on a matched object).

Two deliberate departures from Ultralytics: its score filter is strict (> conf), and its
matching de-duplicates in two passes (best ground truth per detection, then best detection per
ground truth), which can leave a pair unmatched that the greedy matching above keeps; and (in
the version read) it counts an image's false alarms only when the image has at least one match.
"""

from __future__ import annotations

import numpy as np

from onestage.detections import DetectionsLike
from onestage.metrics import GroundTruthLike, as_evaluation_inputs
from onestage.metrics.voc import pairwise_iou
from onestage.predict_options import PREDICTION


def confusion_matrix(
    ground_truths: list[GroundTruthLike],
    detections: list[DetectionsLike],
    num_classes: int,
    conf_threshold: float = PREDICTION.conf,
    iou_threshold: float = 0.45,
) -> np.ndarray:
    """(C + 1, C + 1) int64 counts, [predicted, true], last index background (module docstring).

    Boxes are absolute pixel xyxy; the two lists pair up by position (one entry per image).
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    gts, dets = as_evaluation_inputs(ground_truths, detections, num_classes)
    background = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for gt, det in zip(gts, dets, strict=True):
        keep_gt = ~gt.difficult
        keep_det = det.scores >= conf_threshold
        true_class = gt.class_ids[keep_gt]  # (G,)
        pred_class = det.class_ids[keep_det]  # (D,)
        iou = pairwise_iou(gt.boxes_xyxy[keep_gt], det.boxes_xyxy[keep_det], "continuous")
        gt_index, det_index = greedy_matches(iou, iou_threshold)
        np.add.at(matrix, (pred_class[det_index], true_class[gt_index]), 1)
        missed = np.ones(len(true_class), dtype=bool)
        missed[gt_index] = False
        np.add.at(matrix, (background, true_class[missed]), 1)
        false_alarm = np.ones(len(pred_class), dtype=bool)
        false_alarm[det_index] = False
        np.add.at(matrix, (pred_class[false_alarm], background), 1)
    return matrix


def greedy_matches(iou: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of a (G, D) IoU matrix: pairs with IoU > threshold, highest IoU first.

    Returns the matched ground-truth and detection indices, in matching order. Equal IoUs are
    taken in row-major order (lower ground-truth index, then lower detection index).
    """
    rows, cols = np.nonzero(iou > iou_threshold)  # row-major order
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_gt, used_det, pairs = set(), set(), []
    for g, d in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if g not in used_gt and d not in used_det:
            used_gt.add(g)
            used_det.add(d)
            pairs.append((g, d))
    matched = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return matched[:, 0], matched[:, 1]


def normalize_columns(matrix: np.ndarray) -> np.ndarray:
    """Divide each column (true class) by its sum, so it sums to 1; all-zero columns stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=0)  # (C + 1,), broadcast over the rows
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
