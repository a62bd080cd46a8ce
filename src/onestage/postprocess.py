"""From model output to detections: decode, score, keep candidates, batched per-class NMS.

The model output is `pred` (B, A, 4 + K): 4 encoded box offsets (see `boxes.decode_offsets`,
SSD variances 0.1 / 0.2) then K class logits. Softmax models have K = num_classes + 1 with
background LAST; sigmoid (focal) models score only the first K - 1 logits (the last column is
unused). Anchors are (A, 4) normalised xyxy. Detections come back as normalised xyxy boxes.

Everything is batched: one `torch.topk` picks each image's candidates from a padded
(B, A * num_classes) score tensor, and `batched_nms` suppresses all images at once, without a
Python loop over boxes. Only the final split into one `Detections` per image loops over images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from onestage.boxes import clip_boxes, decode_offsets
from onestage.errors import OnestageError

SCORE_MODES = ("softmax", "sigmoid")
CANDIDATE_RULES = ("all", "argmax")


@dataclass(frozen=True)
class Detections:
    """One image's detections, sorted by score descending.

    boxes_xyxy: (N, 4) float32 normalised xyxy, clipped to [0, 1];
    scores: (N,) float32; class_ids: (N,) int64 in [0, num_classes).
    """

    boxes_xyxy: Tensor
    scores: Tensor
    class_ids: Tensor

    def __len__(self) -> int:
        return self.scores.shape[0]


def batched_nms(
    boxes_xyxy: Tensor, scores: Tensor, class_ids: Tensor, valid: Tensor, iou_threshold: float
) -> Tensor:
    """Greedy per-class NMS for a padded batch -> (B, N) bool, True for the boxes kept.

    boxes_xyxy (B, N, 4) xyxy (any unit), scores (B, N), class_ids (B, N), valid (B, N) bool
    (False = padding: never kept, never suppresses). A kept box suppresses every lower-scored
    valid box of the same class whose IoU with it is > iou_threshold. Equal scores are ordered
    by index (the lower index counts as higher-scored), so the result is deterministic.

    Why this equals greedy NMS: in score order, greedy NMS keeps box j exactly when
    keep[j] = valid[j] and not any(keep[i] and S[i, j] for i before j), with S[i, j] = "i
    outscores j, same class, both valid, IoU > threshold". S only points forward, so this
    recurrence has exactly one solution (settle j = 0, 1, 2, ... in turn), the greedy one.
    Iterating keep <- f(keep) from keep = valid reaches it: a box with no suppressor is right
    from the start, and after t steps every box whose longest chain of suppressors has length
    <= t is right, so at most N steps are needed and any step that changes nothing has found
    the unique solution. Unlike Fast-NMS, a box suppressed by a kept box stops suppressing.
    """
    count = scores.shape[1]
    if scores.numel() == 0:
        return torch.zeros_like(valid)
    order = scores.argsort(dim=1, descending=True, stable=True)  # (B, N)
    sorted_boxes = boxes_xyxy.gather(1, order[:, :, None].expand(-1, -1, 4))  # (B, N, 4)
    sorted_classes = class_ids.gather(1, order)  # (B, N)
    sorted_valid = valid.gather(1, order)  # (B, N)

    # Shift each class to its own region of the plane so boxes of different classes never
    # overlap: one IoU test then covers "same class and IoU > threshold".
    extent = sorted_boxes.abs().amax().clamp(min=1.0) * 2 + 1
    shifted = sorted_boxes + (sorted_classes.to(sorted_boxes.dtype) * extent)[:, :, None]
    earlier = torch.ones(count, count, dtype=torch.bool, device=scores.device).triu(1)  # (N, N)
    suppresses = (
        _iou_exceeds(shifted, iou_threshold)
        & (sorted_valid[:, :, None] & sorted_valid[:, None, :])
        & earlier
    )  # (B, N, N): S[b, i, j] = kept i would suppress j

    keep = sorted_valid
    for _ in range(count):
        suppressed = (keep[:, :, None] & suppresses).any(dim=1)  # (B, N)
        new_keep = sorted_valid & ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep

    return torch.zeros_like(valid).scatter(1, order, keep)  # back to the input order


def _iou_exceeds(boxes_xyxy: Tensor, threshold: float) -> Tensor:
    """(B, N, 4) xyxy -> (B, N, N) bool: IoU(i, j) > threshold, tested as
    intersection > threshold x union (no division; degenerate pairs give False)."""
    x0, y0, x1, y1 = boxes_xyxy.unbind(-1)  # each (B, N)
    width = (
        torch.minimum(x1[:, :, None], x1[:, None, :])
        - torch.maximum(x0[:, :, None], x0[:, None, :])
    ).clamp_(min=0)
    height = (
        torch.minimum(y1[:, :, None], y1[:, None, :])
        - torch.maximum(y0[:, :, None], y0[:, None, :])
    ).clamp_(min=0)
    intersection = width.mul_(height)  # (B, N, N)
    area = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)  # (B, N)
    union = area[:, :, None] + area[:, None, :] - intersection
    return intersection > threshold * union


def nms(boxes_xyxy: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Class-agnostic greedy NMS for one image: (N, 4) xyxy boxes, (N,) scores -> kept indices.

    The indices (int64) are sorted by score descending, like torchvision.ops.nms.
    """
    keep = batched_nms(
        boxes_xyxy[None],
        scores[None],
        torch.zeros_like(scores, dtype=torch.int64)[None],
        torch.ones_like(scores, dtype=torch.bool)[None],
        iou_threshold,
    )[0]
    kept = keep.nonzero().squeeze(1)  # (M,)
    return kept[scores[kept].argsort(descending=True, stable=True)]


def _class_scores(logits: Tensor, score_mode: str, candidates: str) -> tuple[Tensor, Tensor]:
    """(B, A, K) logits -> foreground scores and candidate mask, both (B, A, K - 1).

    "all": every (anchor, foreground class) pair is a candidate. "argmax": each anchor offers
    only its best class; with softmax that is the argmax over all K probabilities, so an anchor
    whose best class is background offers nothing (the seed's rule).
    """
    if score_mode == "softmax":
        probs = logits.softmax(dim=-1)  # (B, A, K)
    elif score_mode == "sigmoid":
        probs = logits[..., :-1].sigmoid()  # (B, A, K - 1)
    else:
        raise OnestageError(f"unknown score_mode {score_mode!r}; valid: {', '.join(SCORE_MODES)}")

    num_classes = logits.shape[-1] - 1
    if candidates == "all":
        is_candidate = torch.ones_like(probs[..., :num_classes], dtype=torch.bool)
    elif candidates == "argmax":
        best = probs.argmax(dim=-1, keepdim=True)  # (B, A, 1)
        class_range = torch.arange(num_classes, device=logits.device)
        is_candidate = best == class_range  # (B, A, K - 1); background argmax matches none
    else:
        raise OnestageError(
            f"unknown candidates rule {candidates!r}; valid: {', '.join(CANDIDATE_RULES)}"
        )
    return probs[..., :num_classes], is_candidate


def postprocess(
    pred: Tensor,
    anchors_xyxy: Tensor,
    *,
    score_mode: str = "softmax",
    candidates: str = "all",
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    pre_nms_topk: int = 400,
    max_det: int = 100,
) -> list[Detections]:
    """Model output (B, A, 4 + K) and (A, 4) normalised xyxy anchors -> one Detections per image.

    score_mode: "softmax" over all K logits (background last) or "sigmoid" over the first K - 1.
    candidates: "all" = every (anchor, class) pair scoring > conf_threshold (multi-label, for
    mAP with a low threshold such as 0.001); "argmax" = each anchor's best class only, dropping
    anchors whose best class is background (the seed's rule). Per image, the `pre_nms_topk`
    best candidates go through per-class NMS (IoU > iou_threshold suppresses) and at most
    `max_det` survive. Computes in float32 whatever the input dtype; boxes are clipped to [0, 1].
    """
    pred = pred.float()
    batch, num_anchors, _ = pred.shape
    boxes = clip_boxes(decode_offsets(pred[..., :4], anchors_xyxy.to(pred)))  # (B, A, 4)
    scores, is_candidate = _class_scores(pred[..., 4:], score_mode, candidates)  # (B, A, C)
    num_classes = scores.shape[-1]

    scores = scores.reshape(batch, num_anchors * num_classes)  # (B, A * C)
    valid = is_candidate.reshape_as(scores) & (scores > conf_threshold)
    # Only as many slots as the fullest image needs: NMS costs grow with k squared.
    k = min(pre_nms_topk, int(valid.sum(dim=1).max()))
    top_scores, top_index = scores.masked_fill(~valid, -1.0).topk(k, dim=1)  # (B, k), sorted
    top_valid = valid.gather(1, top_index)  # (B, k)
    top_classes = top_index % num_classes  # (B, k)
    top_anchors = top_index // num_classes  # (B, k)
    top_boxes = boxes.gather(1, top_anchors[:, :, None].expand(-1, -1, 4))  # (B, k, 4)

    keep = batched_nms(top_boxes, top_scores, top_classes, top_valid, iou_threshold)  # (B, k)
    keep &= keep.cumsum(dim=1) <= max_det  # candidates are sorted, so this keeps the best

    return [
        Detections(top_boxes[b][keep[b]], top_scores[b][keep[b]], top_classes[b][keep[b]])
        for b in range(batch)
    ]
