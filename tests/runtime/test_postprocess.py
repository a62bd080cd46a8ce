from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onestage.errors import OnestageError
from onestage.priors.numpy_codings import AnchorArrays
from onestage.priors.offsets import decode_offsets
from onestage.runtime import postprocess as postprocess_module
from onestage.runtime.postprocess import Detections, greedy_nms, nms, postprocess

GRID = 16  # grid boxes are in 1/16 units: float32 areas are exact, IoU > threshold unambiguous
PIXELS = 640  # tiny boxes: 1-4 px (on a quarter-pixel grid) in a 640 px image, normalised


def coding(anchors: np.ndarray, score_mode: str = "softmax") -> AnchorArrays:
    """One level of `anchors` (A, 4) normalised xyxy."""
    anchors = np.asarray(anchors, dtype=np.float32)
    return AnchorArrays(anchors, (anchors.shape[0],), score_mode)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, valid: np.ndarray, threshold: float
) -> np.ndarray:
    """(B, N) kept mask of `greedy_nms` over each image's boxes in score order (ties: lower
    index first), back in the input order."""
    keep = np.zeros(np.shape(valid), dtype=bool)
    for image in range(keep.shape[0]):
        order = np.argsort(-np.asarray(scores[image]), kind="stable")
        kept = greedy_nms(
            np.asarray(boxes[image], dtype=np.float32)[order],
            np.asarray(classes[image])[order],
            np.asarray(valid[image], dtype=bool)[order],
            threshold,
        )
        keep[image, order] = kept
    return keep


def reference_nms(
    boxes: np.ndarray,
    scores: list[int],
    classes: list[int],
    valid: list[bool],
    threshold: float,
) -> list[bool]:
    """Greedy per-class NMS on (N, 4) float32 xyxy boxes, one box at a time (ties: lower index
    first). IoU > threshold is tested as intersection > threshold x union in float32, each step
    in the same order as `greedy_nms`, so that the two agree even on values at the threshold."""

    def overlaps_too_much(a: np.ndarray, b: np.ndarray) -> bool:
        zero = np.float32(0)
        inter_w = max(zero, min(a[2], b[2]) - max(a[0], b[0]))
        inter_h = max(zero, min(a[3], b[3]) - max(a[1], b[1]))
        inter = inter_w * inter_h
        area_a = max(zero, a[2] - a[0]) * max(zero, a[3] - a[1])
        area_b = max(zero, b[2] - b[0]) * max(zero, b[3] - b[1])
        return bool(inter > np.float32(threshold) * (area_a + area_b - inter))

    keep = [False] * len(scores)
    kept: list[int] = []
    for j in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if not valid[j]:
            continue
        if any(classes[i] == classes[j] and overlaps_too_much(boxes[i], boxes[j]) for i in kept):
            continue
        keep[j] = True
        kept.append(j)
    return keep


@st.composite
def nms_batches(draw: st.DrawFn) -> dict:
    """A padded batch of boxes with few distinct scores (many ties) and a validity mask.

    A third of the batches are "rows": 4 x 4 grid boxes, each 0-2 cells right of the previous
    one, scores falling along the row, so suppression chains (A removes B, B would remove C) are
    common. A third are scattered grid boxes of random sizes and scores, a third tiny boxes: 1-4
    px on a quarter-pixel grid in a 640 px image, crowded into 10 x 10 px so that they overlap.
    Class ids are drawn from 1-3 distinct values below 3 (grid boxes) or below 1000 (tiny ones).
    """
    batch = draw(st.integers(1, 3))
    count = draw(st.integers(1, 16))
    kind = draw(st.sampled_from(["row", "scattered", "tiny"]))
    id_limit = 1000 if kind == "tiny" else 3
    class_pool = draw(st.lists(st.integers(0, id_limit - 1), min_size=1, max_size=3, unique=True))
    in_a_row = kind == "row"
    cell = st.integers(0, 40) if kind == "tiny" else st.integers(0, 10)  # quarter px or grid
    size = st.integers(4, 16) if kind == "tiny" else st.integers(1, 6)
    row = st.tuples(
        st.integers(0, 2) if in_a_row else cell,  # x, or the step in a row
        cell,  # y
        size,  # width
        size,  # height
        st.integers(0, 2) if in_a_row else st.integers(0, 9),  # score, or the drop in a row
        st.sampled_from(class_pool),
        st.integers(0, 3).map(bool),  # 3 in 4 valid
    )
    images = [draw(st.lists(row, min_size=count, max_size=count)) for _ in range(batch)]
    cases: dict[str, list] = {"boxes": [], "scores": [], "classes": [], "valid": []}
    for rows in images:
        xs, ys, ws, hs, scores, classes, valid = (
            list(column) for column in zip(*rows, strict=True)
        )
        if in_a_row:
            xs = list(itertools.accumulate(xs))
            ys, ws, hs = [0] * count, [4] * count, [4] * count
            scores = [99 - drop for drop in itertools.accumulate(scores)]
        boxes = zip(xs, ys, ws, hs, strict=True)
        cases["boxes"].append([(x, y, x + w, y + h) for x, y, w, h in boxes])
        cases["scores"].append(scores)
        cases["classes"].append(classes)
        cases["valid"].append(valid)
    unit = 4 * PIXELS if kind == "tiny" else GRID
    threshold = draw(st.sampled_from([0.25, 0.5, 0.75]))
    return {**cases, "unit": unit, "threshold": threshold}


@settings(deadline=None, max_examples=150, derandomize=True)
@given(nms_batches(), st.sampled_from([postprocess_module.PAIRS_PER_BLOCK, 20, 1]))
def test_greedy_nms_matches_the_one_box_at_a_time_reference(
    case: dict, pairs_per_block: int
) -> None:
    # Also with tiny blocks, so that boxes are settled a few rows of pairs at a time.
    boxes = np.array(case["boxes"], dtype=np.float32) / np.float32(case["unit"])  # (B, N, 4)
    original = postprocess_module.PAIRS_PER_BLOCK
    postprocess_module.PAIRS_PER_BLOCK = pairs_per_block
    try:
        keep = batched_nms(
            boxes,
            np.array(case["scores"], dtype=np.float32) / 100,
            np.array(case["classes"]),
            np.array(case["valid"]),
            case["threshold"],
        )
    finally:
        postprocess_module.PAIRS_PER_BLOCK = original
    expected = [
        reference_nms(image_boxes, *image, case["threshold"])
        for image_boxes, *image in zip(
            boxes, case["scores"], case["classes"], case["valid"], strict=True
        )
    ]
    assert keep.tolist() == expected


def _keep_one_image(boxes: list[list[float]], scores: list[float], classes: list[int]) -> list:
    valid = np.ones((1, len(scores)), dtype=bool)
    return batched_nms([boxes], [scores], [classes], valid, 0.5)[0].tolist()


def test_overlapping_boxes_of_different_classes_are_both_kept() -> None:
    box = [0.1, 0.1, 0.5, 0.5]
    assert _keep_one_image([box, box], [0.9, 0.8], [0, 1]) == [True, True]
    assert _keep_one_image([box, box], [0.9, 0.8], [1, 1]) == [True, False]


# Three boxes in a row: IoU(A, B) = IoU(B, C) = 3/5 > 0.5, IoU(A, C) = 2/6 < 0.5.
CHAIN_BOXES = [[0.0, 0.0, 0.4, 0.1], [0.1, 0.0, 0.5, 0.1], [0.2, 0.0, 0.6, 0.1]]


def test_a_suppressed_box_does_not_suppress() -> None:
    # A removes B; B would remove C, but B is gone, so C stays (Fast-NMS would drop C).
    assert _keep_one_image(CHAIN_BOXES, [0.9, 0.8, 0.7], [0, 0, 0]) == [True, False, True]


def test_tiny_boxes_of_a_high_class_id_are_compared_exactly() -> None:
    # Two 3.75 x 1 px boxes at 640 px, IoU 0.6. Shifting class 999 by 999 x 3 image widths (the
    # old class-offset trick) left 2^-12 float32 steps, 0.16 px: the IoU fell below 0.5.
    boxes = [[32.0, 201.25, 35.75, 202.25], [32.0, 201.5, 35.75, 202.5]]
    tiny = (np.array(boxes, dtype=np.float32) / np.float32(PIXELS)).tolist()
    assert _keep_one_image(tiny, [0.9, 0.8], [999, 999]) == [True, False]
    assert _keep_one_image(tiny, [0.9, 0.8], [0, 999]) == [True, True]


def _chain(count: int, step: float) -> tuple[np.ndarray, ...]:
    """One image of `count` 0.4 x 0.1 boxes, each `step` right of the previous one, scores
    falling: with step 0.1 each box overlaps the next with IoU 0.6, the one after with 0.33."""
    x = np.arange(count, dtype=np.float32) * np.float32(step)
    zeros, tenth = np.zeros(count, np.float32), np.full(count, 0.1, np.float32)
    boxes = np.stack((x, zeros, x + np.float32(0.4), tenth), axis=-1)
    scores = np.linspace(1.0, 0.01, count, dtype=np.float32)
    classes = np.zeros(count, dtype=np.int64)
    return boxes[None], scores[None], classes[None], np.ones((1, count), dtype=bool)


def test_a_long_suppression_chain_is_exact() -> None:
    # Greedy keeps every other box of the chain (each kept box removes the next, which then
    # removes nothing); Fast-NMS would keep only the first.
    keep = batched_nms(*_chain(400, step=0.1), 0.5)[0]
    assert keep.tolist() == [index % 2 == 0 for index in range(400)]
    assert batched_nms(*_chain(400, step=0.5), 0.5).all()  # the same boxes, none overlapping


def test_max_kept_stops_after_that_many_boxes() -> None:
    boxes, _, classes, valid = _chain(10, step=0.5)
    assert (
        greedy_nms(boxes[0], classes[0], valid[0], 0.5, max_kept=3).tolist()
        == [True] * 3 + [False] * 7
    )
    valid[0, 1] = False  # an invalid box is not kept and does not count
    kept = greedy_nms(boxes[0], classes[0], valid[0], 0.5, max_kept=3)
    assert np.flatnonzero(kept).tolist() == [0, 2, 3]


def _status_kib(field: str) -> int:
    """One memory figure of this process from /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def test_nms_memory_is_bounded_for_3000_candidates() -> None:
    # The whole (N, N) pair matrix of 3000 boxes and its float32 intermediates take about 180 MB.
    clear_refs = Path("/proc/self/clear_refs")
    generator = np.random.default_rng(0)
    corners = generator.random((3000, 2), dtype=np.float32) * np.float32(0.9)
    boxes = np.concatenate((corners, corners + np.float32(0.01)), axis=-1)  # (3000, 4)
    classes = generator.integers(0, 80, 3000)
    valid = np.ones(3000, dtype=bool)
    greedy_nms(boxes[:100], classes[:100], valid[:100], 0.5)  # warm-up
    try:
        clear_refs.write_text("5")  # the peak resident set (VmHWM) restarts from the current one
    except OSError:
        pytest.skip("needs Linux /proc to reset and read the peak resident set")
    before = _status_kib("VmRSS")
    greedy_nms(boxes, classes, valid, 0.5)
    assert (_status_kib("VmHWM") - before) / 1024 < 32


def test_nms_returns_kept_indices_by_score() -> None:
    boxes = np.array([CHAIN_BOXES[2], CHAIN_BOXES[0], CHAIN_BOXES[1]], dtype=np.float32)  # C A B
    assert nms(boxes, np.array([0.7, 0.9, 0.8]), 0.5).tolist() == [1, 0]
    empty = nms(np.zeros((0, 4), np.float32), np.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int64


# Four anchors far apart, so NMS never merges detections of different anchors.
ANCHORS = np.array(
    [[0.0, 0.0, 0.2, 0.2], [0.4, 0.0, 0.6, 0.2], [0.0, 0.4, 0.2, 0.6], [0.4, 0.4, 0.6, 0.6]],
    dtype=np.float32,
)


def _pred(logits: list[list[float]], offsets: np.ndarray | None = None) -> np.ndarray:
    """(1, A, 4 + K) float32 model output from per-anchor logits, zero offsets unless given."""
    class_logits = np.array([logits], dtype=np.float32)
    box_offsets = np.zeros((1, len(logits), 4), np.float32) if offsets is None else offsets
    return np.concatenate((box_offsets, class_logits), axis=-1)


def _softmax(logits: list[list[float]]) -> np.ndarray:
    return torch.tensor(logits).softmax(dim=-1).numpy()


def _sigmoid(values: list[float]) -> np.ndarray:
    return torch.tensor(values).sigmoid().numpy()


def close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1.3e-6, atol=1e-6)


def test_argmax_mode_drops_background_anchors_and_keeps_the_seed_scores() -> None:
    # K = 3: two classes then background. Anchor 0: background wins but class 0 has p > 0.25.
    logits = [[1.0, -5.0, 2.0], [3.0, 1.0, 0.0], [-5.0, 2.0, 1.0], [0.0, 0.0, 5.0]]
    pred = _pred(logits)
    probs = _softmax(logits)
    (argmax,) = postprocess(pred, coding(ANCHORS), candidates="argmax", conf_threshold=0.25)
    assert argmax.class_ids.tolist() == [0, 1]
    close(argmax.scores, [probs[1, 0], probs[2, 1]])
    close(argmax.boxes_xyxy, ANCHORS[[1, 2]])

    (multi,) = postprocess(pred, coding(ANCHORS), candidates="all", conf_threshold=0.25)
    assert multi.class_ids.tolist() == [0, 1, 0]  # anchor 0's class 0 is back, last
    close(multi.boxes_xyxy, ANCHORS[[1, 2, 0]])


def test_all_mode_gives_one_anchor_several_classes() -> None:
    pred = _pred([[2.0, 2.0, 0.0], [-5.0, -5.0, 5.0], [-5.0, -5.0, 5.0], [-5.0, -5.0, 5.0]])
    (detections,) = postprocess(pred, coding(ANCHORS), candidates="all", conf_threshold=0.3)
    assert detections.class_ids.tolist() == [0, 1]  # equal scores: the lower class first
    close(detections.boxes_xyxy, ANCHORS[[0, 0]])
    (single,) = postprocess(pred, coding(ANCHORS), candidates="argmax", conf_threshold=0.3)
    assert len(single) == 1


def test_sigmoid_mode_ignores_the_last_column() -> None:
    logits = [[0.0, 1.0, 100.0], [2.0, -1.0, -100.0], [-9.0, -9.0, 0.0], [-9.0, -9.0, 0.0]]
    (detections,) = postprocess(_pred(logits), coding(ANCHORS, "sigmoid"), conf_threshold=0.4)
    close(detections.scores, _sigmoid([2.0, 1.0, 0.0]))  # anchor 1 class 0, anchor 0 classes 1, 0
    assert detections.class_ids.tolist() == [0, 1, 0]


def test_conf_threshold_is_strict_and_topk_and_max_det_limit() -> None:
    # One class (K = 2); background logit 0, so the class probability is sigmoid(logit).
    logits = [[2.0, 0.0], [1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]]  # p = 0.88, 0.73, 0.5, 0.27
    pred = _pred(logits)
    assert len(postprocess(pred, coding(ANCHORS), conf_threshold=0.5)[0]) == 2  # 0.5 is not > 0.5
    assert len(postprocess(pred, coding(ANCHORS), conf_threshold=0.2)[0]) == 4
    (top,) = postprocess(pred, coding(ANCHORS), conf_threshold=0.2, pre_nms_topk=3, max_det=2)
    close(top.boxes_xyxy, ANCHORS[[0, 1]])
    (topk,) = postprocess(pred, coding(ANCHORS), conf_threshold=0.2, pre_nms_topk=3)
    close(topk.boxes_xyxy, ANCHORS[[0, 1, 2]])


def test_the_iou_threshold_decides_what_nms_suppresses() -> None:
    # Boxes A and B of CHAIN_BOXES: intersection 0.3 x 0.1, union 2 x 0.04 - 0.03: IoU 3/5 = 0.6.
    # Above a threshold of 0.5 (B goes), below one of 0.7 (both stay).
    boxes = np.array(CHAIN_BOXES[:2], dtype=np.float32)
    assert nms(boxes, np.array([0.9, 0.8]), 0.5).tolist() == [0]
    assert nms(boxes, np.array([0.9, 0.8]), 0.7).tolist() == [0, 1]
    # the same through postprocess: A and B as anchors, zero offsets, one class, p = 0.88, 0.73
    pred = _pred([[2.0, 0.0], [1.0, 0.0]])
    for iou, kept in ((0.5, [0]), (0.7, [0, 1])):
        (found,) = postprocess(pred, coding(boxes), iou_threshold=iou)
        close(found.boxes_xyxy, boxes[kept])


def test_boxes_are_decoded_offsets_sorted_by_score_and_clipped() -> None:
    generator = torch.Generator().manual_seed(0)
    anchors = torch.tensor([[0.3, 0.3, 0.5, 0.6], [0.4, 0.2, 0.7, 0.5], [0.25, 0.5, 0.6, 0.7]])
    pred = torch.cat(
        (
            torch.randn(2, 3, 4, generator=generator) * 0.5,
            torch.randn(2, 3, 2, generator=generator),
        ),
        dim=-1,
    )
    pred[1, 0, :2] = 20.0  # pushed over the bottom edge: must be clipped, area left
    detections = postprocess(
        pred.numpy(), coding(anchors.numpy()), conf_threshold=0.0, iou_threshold=1.0
    )
    scores = pred[..., 4:].softmax(dim=-1)[..., 0]  # (2, 3)
    order = scores[0].argsort(descending=True)
    close(detections[0].scores, scores[0, order].numpy())
    expected = decode_offsets(pred[0, order, :4], anchors[order]).numpy()  # training's decode
    np.testing.assert_allclose(detections[0].boxes_xyxy, expected, atol=1e-6)
    assert detections[1].boxes_xyxy.min() >= 0 and detections[1].boxes_xyxy.max() <= 1
    assert (detections[1].boxes_xyxy == 1.0).any()


def test_boxes_clipped_to_zero_area_are_dropped() -> None:
    offsets = np.zeros((1, 4, 4), np.float32)
    offsets[0, 0, 0] = 60.0  # anchor 0 moved 1.2 right: wholly outside, clipped to zero width
    offsets[0, 1, 3] = -1000.0  # anchor 1's height underflows to zero
    offsets[0, 3, 1] = 25.0  # anchor 3 moved 0.5 down, half outside: clipped, area left
    (detections,) = postprocess(_pred([[5.0, -5.0, 0.0]] * 4, offsets), coding(ANCHORS))
    kept = detections.boxes_xyxy[detections.boxes_xyxy[:, 1].argsort()]  # anchors 2, 3
    close(kept, [[0.0, 0.4, 0.2, 0.6], [0.4, 0.9, 0.6, 1.0]])


def test_image_without_candidates_gives_empty_arrays() -> None:
    background = [[-5.0, -5.0, 5.0]] * 4
    pred = np.concatenate((_pred(background), _pred([[5.0, -5.0, 0.0]] * 4)), axis=0)
    empty, full = postprocess(pred.astype(np.float16), coding(ANCHORS))
    assert empty.boxes_xyxy.shape == (0, 4) and empty.boxes_xyxy.dtype == np.float32
    assert empty.scores.shape == (0,) and empty.scores.dtype == np.float32
    assert empty.class_ids.shape == (0,) and empty.class_ids.dtype == np.int64
    assert len(full) == 4 and full.boxes_xyxy.dtype == np.float32


def test_a_batch_gives_the_same_detections_as_single_images() -> None:
    generator = np.random.default_rng(1)
    corners = generator.random((50, 2), dtype=np.float32) * np.float32(0.7)
    sides = np.float32(0.1) + generator.random((50, 2), dtype=np.float32) * np.float32(0.2)
    anchors = np.concatenate((corners, corners + sides), 1)
    pred = generator.standard_normal((3, 50, 4 + 4), dtype=np.float32)
    batched = postprocess(pred, coding(anchors), conf_threshold=0.05, pre_nms_topk=60, max_det=20)
    for image, detections in zip(pred, batched, strict=True):
        (single,) = postprocess(
            image[None], coding(anchors), conf_threshold=0.05, pre_nms_topk=60, max_det=20
        )
        assert isinstance(detections, Detections)
        assert np.array_equal(detections.scores, single.scores)
        assert np.array_equal(detections.class_ids, single.class_ids)
        assert np.array_equal(detections.boxes_xyxy, single.boxes_xyxy)
        assert (np.diff(detections.scores) <= 0).all() and 0 < len(detections) <= 20


def test_unknown_options_are_refused() -> None:
    with pytest.raises(OnestageError) as raised:
        postprocess(_pred([[0.0, 0.0]] * 4), coding(ANCHORS), candidates="best")
    assert str(raised.value) == "unknown candidates rule 'best'; valid: all, argmax"
    with pytest.raises(OnestageError, match="cannot score by 'tanh'"):
        coding(ANCHORS, "tanh")


def test_iou_exactly_at_the_threshold_does_not_suppress() -> None:
    # (0, 0, 0.5, 0.25) and (0, 0, 0.25, 0.25): intersection 1/16, union 1/8, IoU exactly 1/2
    # (all exact in float32). NMS suppresses above the threshold only.
    boxes = np.array([[0.0, 0.0, 0.5, 0.25], [0.0, 0.0, 0.25, 0.25]], dtype=np.float32)
    scores = np.array([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


def test_equal_scores_rank_by_index() -> None:
    # 20 copies of one box with one score: the first is kept. 20 boxes apart with one score:
    # all kept, listed in index order. (Ties need over 16 boxes for an unstable sort to show.)
    same = np.broadcast_to(np.array([0.1, 0.1, 0.4, 0.4], np.float32), (20, 4))
    equal = np.full(20, 0.5)
    assert nms(same, equal, 0.5).tolist() == [0]
    x = np.arange(20, dtype=np.float32) / 20
    apart = np.stack((x, np.zeros(20), x + 0.04, np.full(20, 0.04)), axis=-1).astype(np.float32)
    assert nms(apart, equal, 0.5).tolist() == list(range(20))


def test_argmax_candidates_of_a_sigmoid_coding_ignore_the_last_column() -> None:
    # Anchor 0: logits (1, 2, 9), the unused last column highest: its best class is 1
    # (p = 0.88); class 0 (p = 0.73) clears the threshold too but is not its best.
    logits = [[1.0, 2.0, 9.0]] + [[-9.0, -9.0, 0.0]] * 3
    (found,) = postprocess(
        _pred(logits), coding(ANCHORS, "sigmoid"), candidates="argmax", conf_threshold=0.5
    )
    assert found.class_ids.tolist() == [1]
    close(found.scores, _sigmoid([2.0]))


def test_argmax_candidates_still_need_the_conf_threshold() -> None:
    # K = 3 softmax. Anchor 0's best class 0 has p = e / (e + 2) = 0.58, anchor 1's
    # e^0.5 / (e^0.5 + 2) = 0.45: at a threshold of 0.5 only anchor 0 is kept.
    logits = [[1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [-5.0, -5.0, 5.0], [-5.0, -5.0, 5.0]]
    (found,) = postprocess(_pred(logits), coding(ANCHORS), candidates="argmax", conf_threshold=0.5)
    close(found.boxes_xyxy, ANCHORS[[0]])


def test_default_iou_threshold_is_one_half() -> None:
    # A and B of CHAIN_BOXES overlap with IoU 0.6: by default B goes.
    boxes = np.array(CHAIN_BOXES[:2], dtype=np.float32)
    (found,) = postprocess(_pred([[2.0, 0.0], [1.0, 0.0]]), coding(boxes))
    close(found.boxes_xyxy, boxes[[0]])


def _grid_anchors(count: int) -> np.ndarray:
    """`count` disjoint 0.05 x 0.05 anchors on a 0.0625 grid, row by row."""
    index = np.arange(count)
    corners = np.stack((index % 16, index // 16), axis=-1) / 16
    return np.concatenate((corners, corners + 0.05), axis=-1).astype(np.float32)


def test_default_limits_are_400_candidates_and_100_detections() -> None:
    # 101 disjoint confident anchors (p = 0.99): 100 detections.
    (found,) = postprocess(_pred([[5.0, 0.0]] * 101), coding(_grid_anchors(101)))
    assert len(found) == 100
    # 400 copies of one anchor at p = 0.99, and a 401st elsewhere at p = 0.73: the 400 best
    # candidates are the copies, of which NMS keeps one; the 401st is never a candidate.
    anchors = np.concatenate((np.repeat(_grid_anchors(1), 400, axis=0), _grid_anchors(2)[1:]))
    (found,) = postprocess(_pred([[5.0, 0.0]] * 400 + [[1.0, 0.0]]), coding(anchors))
    assert len(found) == 1


def test_a_box_suppressed_in_one_block_does_not_suppress_boxes_of_later_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Six unit boxes of one class in score order. Box 3 is box 0 shifted 1/4 right (IoU 0.6):
    # box 0 suppresses it. Box 4 is box 0 shifted 1/2 (IoU 1/3 with box 0, 0.6 with box 3):
    # only the suppressed box 3 would suppress it, so it stays. Boxes 1, 2 and 5 are apart. With
    # 12 pairs per block the boxes are settled two rows at a time: box 3 is decided in the
    # second block, box 4 in the third.
    monkeypatch.setattr(postprocess_module, "PAIRS_PER_BLOCK", 12)
    lefts = [0.0, 2.0, 4.0, 0.25, 0.5, 6.0]
    boxes = np.array([[x, 0.0, x + 1.0, 1.0] for x in lefts], dtype=np.float32)
    kept = greedy_nms(boxes, np.zeros(6, np.int64), np.ones(6, bool), 0.5)
    assert kept.tolist() == [True, True, True, False, True, True]


def test_candidates_of_equal_score_keep_the_prior_order() -> None:
    # 40 disjoint anchors scoring high, low, high, low...: the high ones come first, each group
    # in anchor order (a sort that is not stable scrambles ties once there are over 16 of them).
    anchors = _grid_anchors(40)
    (found,) = postprocess(_pred([[5.0, 0.0], [4.0, 0.0]] * 20), coding(anchors))
    order = [*range(0, 40, 2), *range(1, 40, 2)]
    np.testing.assert_allclose(found.boxes_xyxy, anchors[order], atol=1e-6)


def test_selected_rows_of_a_whole_graph_become_each_images_best_detections() -> None:
    boxes = np.array(  # (B=2, A=3, 4) normalised xyxy
        [
            [[0.0, 0.0, 0.1, 0.1], [0.2, 0.2, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]],
            [[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.7, 0.7], [0.0, 0.5, 0.5, 1.0]],
        ],
        dtype=np.float32,
    )
    scores = np.zeros((2, 2, 3), dtype=np.float32)  # (B, C=2, A)
    scores[0, 1, 2], scores[0, 0, 1], scores[0, 1, 1] = 0.9, 0.6, 0.6  # a tie at 0.6
    scores[1, 0, 0], scores[1, 1, 2] = 0.3, 0.8
    selected = np.array(  # (image, class, prior); -1 rows are an engine's padding
        [[0, 0, 1], [0, 1, 1], [0, 1, 2], [1, 0, 0], [1, 1, 2], [-1, -1, -1]], dtype=np.int64
    )
    first, second = postprocess_module.selected_detections(boxes, scores, selected, max_det=2)
    np.testing.assert_array_equal(first.class_ids, [1, 0])  # 0.9, then the tie's lower class
    np.testing.assert_array_equal(first.scores, np.float32([0.9, 0.6]))
    np.testing.assert_array_equal(first.boxes_xyxy, boxes[0, [2, 1]])
    assert first.class_ids.dtype == np.int64
    np.testing.assert_array_equal(second.class_ids, [1, 0])
    np.testing.assert_array_equal(second.boxes_xyxy, boxes[1, [2, 0]])
    (only,) = postprocess_module.selected_detections(boxes[:1], scores[:1], selected[:3], 5)
    assert len(only) == 3
    (none,) = postprocess_module.selected_detections(
        boxes[:1], scores[:1], np.zeros((0, 3), dtype=np.int64), 5
    )
    assert len(none) == 0 and none.boxes_xyxy.shape == (0, 4)
