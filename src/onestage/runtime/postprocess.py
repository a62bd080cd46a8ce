"""From a head's raw output to detections, in numpy: score, keep candidates, decode, per-class
NMS. Every backend's output goes through here, torch's included, so all give the same
detections for the same raw output; nothing here imports torch.

The output `pred` (B, A, values) is read by its coding (`onestage.priors.numpy_codings`: SSD
offsets against anchors, or anchor-free distances from cell points). Each image's candidates
are its (prior, class) pairs scoring above the threshold (`candidate_pairs`: found by their
logits, so only they are scored), the best `pre_nms_topk` of them in
score order (ties: the lower prior, then the lower class, first); only those are decoded.
Detections come back as normalised xyxy boxes clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onestage.errors import OnestageError
from onestage.predict_options import CANDIDATE_RULES, PREDICTION
from onestage.priors.numpy_codings import AnchorArrays, PointArrays


@dataclass(frozen=True)
class Detections:
    """One image's detections, sorted by score descending: boxes_xyxy (N, 4) float32
    normalised xyxy in [0, 1], scores (N,) float32, class_ids (N,) int64 in [0, num_classes)."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def suppression_rows(
    rows_xyxy: np.ndarray,
    row_ids: np.ndarray,
    boxes_xyxy: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """(R, 4) xyxy boxes and (R,) class ids against (N, 4) and (N,) -> (R, N) bool: same class
    and IoU > iou_threshold, tested as intersection > iou_threshold x union in the boxes' dtype
    (no division; degenerate pairs give False)."""
    x0, y0, x1, y1 = (side[:, None] for side in rows_xyxy.T)  # each (R, 1)
    bx0, by0, bx1, by1 = boxes_xyxy.T  # each (N,)
    zero = boxes_xyxy.dtype.type(0)  # np.maximum with a scalar: np.clip's overhead is 10x
    width = np.maximum(np.minimum(x1, bx1) - np.maximum(x0, bx0), zero)  # (R, N)
    height = np.maximum(np.minimum(y1, by1) - np.maximum(y0, by0), zero)
    intersection = width * height
    row_area = np.maximum(x1 - x0, zero) * np.maximum(y1 - y0, zero)  # (R, 1)
    area = np.maximum(bx1 - bx0, zero) * np.maximum(by1 - by0, zero)  # (N,)
    union_share = (row_area + area - intersection) * boxes_xyxy.dtype.type(iou_threshold)
    return (intersection > union_share) & (row_ids[:, None] == class_ids)


# At most PAIRS_PER_BLOCK box pairs are compared at once (about 20 bytes each of float32 and
# bool intermediates, 5 MB): one block for up to 512 boxes, rows of the pair matrix beyond.
PAIRS_PER_BLOCK = 1 << 18


def greedy_nms(
    boxes_xyxy: np.ndarray,
    class_ids: np.ndarray,
    valid: np.ndarray,
    iou_threshold: float,
    max_kept: int | None = None,
) -> np.ndarray:
    """Per-class greedy NMS over boxes already in score order (highest first) -> (N,) bool kept.

    (N, 4) xyxy boxes, (N,) class ids, (N,) bool valid (False: never kept, never suppresses).
    Each box still standing is kept and strikes out the later boxes of its class that it
    overlaps by IoU > iou_threshold (see `suppression_rows`); a suppressed box suppresses
    nothing. With `max_kept`, nothing is kept after the max_kept-th kept box. The pairs are
    compared a block of rows at a time (PAIRS_PER_BLOCK), so memory stays bounded."""
    count = len(valid)
    standing, kept = valid.copy(), np.zeros_like(valid)
    left = count if max_kept is None else max_kept
    block = max(1, PAIRS_PER_BLOCK // max(count, 1))
    for start in range(0, count, block):
        stop = min(start + block, count)
        if left == 0:
            break
        if not standing[start:stop].any():
            continue
        suppresses = suppression_rows(
            boxes_xyxy[start:stop], class_ids[start:stop], boxes_xyxy, class_ids, iou_threshold
        )  # (rows, N); a row's earlier boxes are decided already, so their columns do not matter
        for row in range(stop - start):
            if left and standing[start + row]:
                kept[start + row] = True
                left -= 1
                standing &= ~suppresses[row]
    return kept


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-agnostic greedy NMS for one image: (N, 4) xyxy boxes, (N,) scores -> the kept
    indices (int64) by score descending (ties: lower index first), as torchvision.ops.nms."""
    order = np.argsort(-scores, kind="stable")
    valid = np.ones(len(order), dtype=bool)
    kept = greedy_nms(boxes_xyxy[order], np.zeros(len(order), np.int64), valid, iou_threshold)
    return order[kept].astype(np.int64)


def postprocess(
    pred: np.ndarray,
    coding: AnchorArrays | PointArrays,
    *,
    candidates: str = PREDICTION.candidates,
    conf_threshold: float = PREDICTION.conf,
    iou_threshold: float = PREDICTION.iou,
    pre_nms_topk: int = PREDICTION.pre_nms_topk,
    max_det: int = PREDICTION.max_det,
) -> list[Detections]:
    """Raw output (B, A, values) read by its `coding` -> one Detections per image; the defaults
    are `PREDICTION`'s (`onestage.predict_options`).

    candidates: "all" = every (prior, class) pair scoring > conf_threshold (multi-label, for
    mAP with a low threshold such as 0.001); "argmax" = each prior's best class only (for a
    softmax coding the best of all K logits, background included, so a prior whose best class
    is background offers nothing: the seed's rule). Per image, the `pre_nms_topk` best
    candidates are decoded, clipped to [0, 1] (a box left with zero width or height is
    dropped) and go through per-class NMS (IoU > iou_threshold suppresses); at most `max_det`
    survive. An NMS-free head's coding (`one_to_one`) skips the NMS: its `max_det` best
    candidates are its detections. Computes in float32 whatever the input dtype.
    """
    if candidates not in CANDIDATE_RULES:
        raise OnestageError(
            f"unknown candidates rule {candidates!r}; valid: {', '.join(CANDIDATE_RULES)}"
        )
    pred = np.asarray(pred, dtype=np.float32)
    box_part, logits = coding.split(pred)
    best_only = candidates == "argmax"
    return [
        _image_detections(
            box_part[image],
            *coding.candidate_pairs(logits[image], conf_threshold, best_only),
            coding,
            iou_threshold,
            pre_nms_topk,
            max_det,
        )
        for image in range(pred.shape[0])
    ]


def _image_detections(
    box_part: np.ndarray,
    priors: np.ndarray,
    class_ids: np.ndarray,
    scores: np.ndarray,
    coding: AnchorArrays | PointArrays,
    iou_threshold: float,
    pre_nms_topk: int,
    max_det: int,
) -> Detections:
    """One image: box part (A, V) and its candidate pairs (priors, class ids, scores; ascending
    pair order) -> its Detections."""
    order = np.argsort(-scores, kind="stable")[:pre_nms_topk]  # ties: lower pair first
    priors, class_ids, scores = priors[order], class_ids[order], scores[order]
    boxes = coding.decode(box_part[None, priors], priors[None])[0]
    boxes = np.minimum(np.maximum(boxes, np.float32(0.0)), np.float32(1.0))
    drawn = (boxes[:, 2:] > boxes[:, :2]).all(axis=1)  # width and height > 0 after clipping
    if coding.one_to_one:  # an NMS-free head: its best scores are its answer
        kept = np.flatnonzero(drawn)[:max_det]
    else:
        kept = greedy_nms(boxes, class_ids, drawn, iou_threshold, max_det)
    return Detections(boxes[kept], scores[kept], class_ids[kept])


def selected_detections(
    boxes_xyxy: np.ndarray, scores: np.ndarray, selected: np.ndarray, max_det: int
) -> list[Detections]:
    """A whole-graph file's outputs (`export.whole_graph`) -> one Detections per image: boxes
    (B, A, 4) normalised xyxy, scores (B, C, A) and the rows (image, class, prior) its NMS kept
    (N, 3; rows with a negative entry are padding); each image's `max_det` best by score (ties:
    the lower prior, then the lower class, first, as `postprocess`)."""
    num_classes = scores.shape[1]
    selected = selected[(selected >= 0).all(axis=1)]
    found = []
    for image in range(boxes_xyxy.shape[0]):
        rows = selected[selected[:, 0] == image]
        class_ids, priors = rows[:, 1], rows[:, 2]
        image_scores = scores[image, class_ids, priors]
        order = np.lexsort((priors * num_classes + class_ids, -image_scores))[:max_det]
        found.append(
            Detections(
                boxes_xyxy[image, priors[order]],
                image_scores[order],
                class_ids[order].astype(np.int64),
            )
        )
    return found
