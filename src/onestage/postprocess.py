"""From model output to detections: decode, score, keep candidates, batched per-class NMS.

The model output `pred` (B, A, values) is read by the head's box coding (`onestage.priors.codings`:
SSD offsets against anchors, or anchor-free distances from cell points), which gives each
prior's box and class probabilities. Detections come back as normalised xyxy boxes.

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

from onestage.boxes import clip_boxes
from onestage.errors import OnestageError
from onestage.predict_options import CANDIDATE_RULES, PREDICTION, PredictOptions
from onestage.priors.codings import BoxCoding

# PredictOptions lives in `onestage.predict_options` (no torch); re-exported for the predictor.
__all__ = ["Detections", "PredictOptions", "batched_nms", "nms", "postprocess"]


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


def _candidates(scores: Tensor, logits: Tensor, coding: BoxCoding, rule: str) -> Tensor | None:
    """(B, A, C) scores -> (B, A, C) bool candidate mask, or None when every pair is one.

    "all": every (prior, class) pair is a candidate (None). "argmax": each prior offers only
    its best class; for a softmax coding that is the argmax over all K logits, background
    included, so a prior whose best class is background offers nothing (the seed's rule).
    """
    if rule == "all":
        return None
    if rule != "argmax":
        raise OnestageError(
            f"unknown candidates rule {rule!r}; valid: {', '.join(CANDIDATE_RULES)}"
        )
    ranked = logits if coding.score_mode == "softmax" else scores  # softmax keeps the order
    best = ranked.argmax(dim=-1, keepdim=True)  # (B, A, 1)
    return best == torch.arange(scores.shape[-1], device=scores.device)  # background: no match


def postprocess(
    pred: Tensor,
    coding: BoxCoding,
    *,
    candidates: str = PREDICTION.candidates,
    conf_threshold: float = PREDICTION.conf,
    iou_threshold: float = PREDICTION.iou,
    pre_nms_topk: int = PREDICTION.pre_nms_topk,
    max_det: int = PREDICTION.max_det,
) -> list[Detections]:
    """Model output (B, A, values) read by its `coding` -> one Detections per image; the
    defaults are `PREDICTION`'s (`onestage.predict_options`).

    candidates: "all" = every (prior, class) pair scoring > conf_threshold (multi-label, for
    mAP with a low threshold such as 0.001); "argmax" = each prior's best class only (for a
    softmax coding, dropping priors whose best class is background: the seed's rule). Per
    image, the `pre_nms_topk` best candidates go through per-class NMS (IoU > iou_threshold
    suppresses) and at most `max_det` survive. Computes in float32 whatever the input dtype;
    boxes are decoded for the top candidates only and clipped to [0, 1]; a box left with zero
    width or height (wholly outside the image, say) is dropped.
    """
    pred = pred.float()
    batch = pred.shape[0]
    box_part, logits = coding.split(pred)
    scores = coding.class_scores(logits)  # (B, A, C)
    num_classes = scores.shape[-1]
    valid = scores > conf_threshold  # (B, A, C)
    restriction = _candidates(scores, logits, coding, candidates)
    if restriction is not None:
        valid &= restriction
    scores, valid = scores.flatten(1), valid.flatten(1)  # (B, A * C)
    # Only as many slots as the fullest image needs: NMS costs grow with k squared.
    k = min(pre_nms_topk, int(valid.sum(dim=1).max()))
    top_scores, top_index = scores.masked_fill(~valid, -1.0).topk(k, dim=1)  # (B, k), sorted
    top_valid = valid.gather(1, top_index)  # (B, k)
    top_classes = top_index % num_classes  # (B, k)
    top_priors = top_index // num_classes  # (B, k)
    # Decoded for the candidates alone; a box clipped (or decoded) to zero width or height,
    # wholly outside the image say, is no detection (NMS would keep it).
    top_box_part = box_part.gather(1, top_priors[:, :, None].expand(-1, -1, box_part.shape[-1]))
    top_boxes = clip_boxes(coding.decode(top_box_part, top_priors))  # (B, k, 4)
    top_valid &= (top_boxes[..., 2:] > top_boxes[..., :2]).all(dim=-1)  # width and height > 0

    keep = batched_nms(top_boxes, top_scores, top_classes, top_valid, iou_threshold)  # (B, k)
    keep &= keep.cumsum(dim=1) <= max_det  # candidates are sorted, so this keeps the best

    return [
        Detections(top_boxes[b][keep[b]], top_scores[b][keep[b]], top_classes[b][keep[b]])
        for b in range(batch)
    ]
