"""From model output to detections: decode, score, keep candidates, batched per-class NMS.

The model output is `pred` (B, A, 4 + K): 4 encoded box offsets (see `boxes.decode_offsets`,
SSD variances 0.1 / 0.2) then K class logits. Softmax models have K = num_classes + 1 with
background LAST; sigmoid (focal) models score only the first K - 1 logits (the last column is
unused). Anchors are (A, 4) normalised xyxy. Detections come back as normalised xyxy boxes.

Everything is batched: one `torch.topk` picks each image's candidates from a padded
(B, A * num_classes) score tensor, and `batched_nms` works on as many images (or, for many
candidates, as many columns of one image's pairs) at once as a fixed budget of box pairs allows;
only a long suppression chain makes it loop over boxes. The final split into one `Detections`
per image loops over images.
"""

from __future__ import annotations

import itertools
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


# Work bounds of `batched_nms`. At most PAIRS_PER_STEP box pairs are compared at once: about 17
# bytes each of float32 and bool intermediates, so about 4.5 MB whatever the batch size and the
# number of candidates N (one image of 400 candidates per step; N pairs per step if N exceeds
# it). A tile whose fixed-point iteration has not settled after SETTLE_ROUNDS passes (a long
# suppression chain) is finished one box at a time instead.
PAIRS_PER_STEP = 1 << 18
SETTLE_ROUNDS = 6


def batched_nms(
    boxes_xyxy: Tensor, scores: Tensor, class_ids: Tensor, valid: Tensor, iou_threshold: float
) -> Tensor:
    """Greedy per-class NMS for a padded batch -> (B, N) bool, True for the boxes kept.

    boxes_xyxy (B, N, 4) xyxy (any unit), scores (B, N), class_ids (B, N), valid (B, N) bool
    (False = padding: never kept, never suppresses). A kept box suppresses every lower-scored
    valid box of the same class whose IoU with it is > iou_threshold, tested as intersection >
    iou_threshold x union in the boxes' dtype; classes are compared as ids. Equal scores are
    ordered by index (the lower index counts as higher-scored), so the result is deterministic.

    Why this equals greedy NMS: in score order, greedy NMS keeps box j exactly when
    keep[j] = valid[j] and not any(keep[i] and S[i, j] for i before j), with S[i, j] = "i
    outscores j, same class, IoU > threshold". S only points forward, so this recurrence has
    exactly one solution (settle j = 0, 1, 2, ... in turn), the greedy one. It is settled tile
    by tile, a tile being T consecutive boxes in score order (T = N unless N^2 exceeds
    PAIRS_PER_STEP). The boxes before a tile are final, so the kept ones strike out what they
    suppress in it. Inside the tile, iterating keep <- f(keep) from keep = (what is left)
    reaches the solution: a box with no suppressor is right from the start, and after t steps
    every box whose longest chain of suppressors has length <= t is right, so a step that
    changes nothing has found the unique solution. A tile not settled after SETTLE_ROUNDS steps
    (a chain of boxes each suppressing the next) is settled one box at a time in score order
    instead. Unlike Fast-NMS, a box suppressed by a kept box stops suppressing.
    """
    batch, count = scores.shape
    if scores.numel() == 0:
        return torch.zeros_like(valid)
    order = scores.argsort(dim=1, descending=True, stable=True)  # (B, N)
    sorted_boxes = boxes_xyxy.gather(1, order[:, :, None].expand(-1, -1, 4))  # (B, N, 4)
    sorted_classes = class_ids.gather(1, order)  # (B, N)
    keep = valid.gather(1, order)  # (B, N), settled in place below

    columns = max(1, min(count, PAIRS_PER_STEP // count))  # tile width
    images = max(1, PAIRS_PER_STEP // (count * columns))  # images per step
    positions = torch.arange(count, device=scores.device)  # (N,)
    for first in range(0, batch, images):
        rows = slice(first, first + images)
        for start in range(0, count, columns):
            stop = min(start + columns, count)
            suppresses = _same_class_iou_exceeds(
                sorted_boxes[rows, :stop],
                sorted_classes[rows, :stop],
                sorted_boxes[rows, start:stop],
                sorted_classes[rows, start:stop],
                iou_threshold,
            )  # (b, stop, T): boxes i and start + j, same class and IoU > threshold
            suppresses &= positions[:stop, None] < positions[None, start:stop]  # i before j
            earlier = suppresses[:, :start] & keep[rows, :start, None]  # (b, start, T)
            left = keep[rows, start:stop] & ~earlier.any(dim=1)  # (b, T)
            keep[rows, start:stop] = _settle(left, suppresses[:, start:])

    return torch.zeros_like(valid).scatter(1, order, keep)  # back to the input order


def _same_class_iou_exceeds(
    boxes_xyxy: Tensor, class_ids: Tensor, tile_xyxy: Tensor, tile_ids: Tensor, threshold: float
) -> Tensor:
    """(b, M, 4) xyxy and (b, M) ids against (b, T, 4) xyxy and (b, T) ids -> (b, M, T) bool:
    same class and IoU > threshold, tested as intersection > threshold x union (no division;
    degenerate pairs give False)."""
    x0, y0, x1, y1 = (side[:, :, None] for side in boxes_xyxy.unbind(-1))  # each (b, M, 1)
    tx0, ty0, tx1, ty1 = (side[:, None, :] for side in tile_xyxy.unbind(-1))  # each (b, 1, T)
    width = (torch.minimum(x1, tx1) - torch.maximum(x0, tx0)).clamp_(min=0)  # (b, M, T)
    height = (torch.minimum(y1, ty1) - torch.maximum(y0, ty0)).clamp_(min=0)
    intersection = width.mul_(height)
    area = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)  # (b, M, 1)
    tile_area = (tx1 - tx0).clamp(min=0) * (ty1 - ty0).clamp(min=0)  # (b, 1, T)
    threshold_union = (area + tile_area).sub_(intersection).mul_(threshold)  # (b, M, T)
    return (intersection > threshold_union) & (class_ids[:, :, None] == tile_ids[:, None, :])


def _settle(left: Tensor, suppresses: Tensor) -> Tensor:
    """Greedy NMS inside one tile: (b, T) bool boxes not yet suppressed, (b, T, T) bool
    S[b, i, j] = "box i would suppress box j" (only for i before j) -> (b, T) bool kept.

    Iterates keep <- left & not suppressed by keep for up to SETTLE_ROUNDS steps; if that has
    not settled, walks the tile in score order instead: each box, if still kept, strikes out
    the later boxes it suppresses (b x T steps whatever the length of the chains)."""
    keep = left
    for _ in range(SETTLE_ROUNDS):
        new_keep = left & ~(keep[:, :, None] & suppresses).any(dim=1)
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep
    kept = left.cpu().numpy().copy()  # (b, T), numpy: its per-box steps cost ~1 us, torch's ~10
    suppressing = suppresses.cpu().numpy()  # (b, T, T)
    for image, box in itertools.product(range(kept.shape[0]), range(kept.shape[1] - 1)):
        if kept[image, box]:
            kept[image, box + 1 :] &= ~suppressing[image, box, box + 1 :]
    return torch.from_numpy(kept).to(left.device)


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
    `max_det` survive. Computes in float32 whatever the input dtype; boxes are clipped to [0, 1],
    and a box left with zero width or height (wholly outside the image, say) is no candidate.
    """
    pred = pred.float()
    batch, num_anchors, _ = pred.shape
    boxes = clip_boxes(decode_offsets(pred[..., :4], anchors_xyxy.to(pred)))  # (B, A, 4)
    scores, is_candidate = _class_scores(pred[..., 4:], score_mode, candidates)  # (B, A, C)
    num_classes = scores.shape[-1]

    # A box clipped (or decoded) to zero width or height is no detection; NMS would keep it.
    has_area = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])  # (B, A)
    is_candidate = is_candidate & has_area[:, :, None]
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
