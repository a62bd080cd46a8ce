"""Detection confusion matrix (Ultralytics convention) on hand-made images."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from helpers import det, gt
from onestage.metrics.confusion import confusion_matrix, greedy_matches, normalize_columns

BG = 2  # background index with two classes
BOX = (10, 10, 30, 30)
FAR = (200, 200, 220, 220)  # overlaps nothing here


def cells(matrix: np.ndarray) -> dict[tuple[int, int], int]:
    """The non-zero cells as {(predicted, true): count}."""
    return {(int(p), int(t)): int(matrix[p, t]) for p, t in zip(*np.nonzero(matrix), strict=True)}


def matrix_of(gts, dets, **kwargs) -> np.ndarray:
    return confusion_matrix(gts, dets, num_classes=2, **kwargs)


def test_correct_match_is_on_the_diagonal():
    matrix = matrix_of([gt([BOX], [1])], [det([BOX], [0.9], [1])])
    assert matrix.shape == (3, 3) and matrix.dtype == np.int64
    assert cells(matrix) == {(1, 1): 1}


def test_wrong_class_is_matched_class_agnostically():
    assert cells(matrix_of([gt([BOX], [0])], [det([BOX], [0.9], [1])])) == {(1, 0): 1}


def test_miss_goes_to_the_background_row():
    assert cells(matrix_of([gt([BOX], [0])], [det([], [], [])])) == {(BG, 0): 1}


def test_false_alarm_goes_to_the_background_column():
    matrix = matrix_of([gt([BOX], [0])], [det([FAR], [0.9], [1])])
    assert cells(matrix) == {(1, BG): 1, (BG, 0): 1}


def test_duplicate_on_one_object_is_a_false_alarm_and_highest_iou_wins():
    # The lower-scored but better-overlapping detection takes the object.
    dets = det([(10, 10, 30, 29), (10, 10, 30, 24)], [0.3, 0.9], [1, 0])  # IoU 0.95, 0.7
    assert cells(matrix_of([gt([BOX], [0])], [dets])) == {(1, 0): 1, (0, BG): 1}


def test_image_without_ground_truth_and_image_without_anything():
    gts = [gt([], []), gt([], [])]
    dets = [det([BOX, FAR], [0.9, 0.5], [0, 0]), det([], [], [])]
    assert cells(matrix_of(gts, dets)) == {(0, BG): 2}


def test_difficult_is_neither_counted_nor_matched():
    gts = [gt([BOX, FAR], [0, 1], [True, True])]
    dets = [det([BOX], [0.9], [0])]  # on the difficult object: a false alarm
    assert cells(matrix_of(gts, dets)) == {(0, BG): 1}


def test_confidence_threshold_is_inclusive():
    gts = [gt([BOX, FAR], [0, 1])]
    dets = [det([BOX, FAR], [0.25, 0.2499], [0, 1])]
    assert cells(matrix_of(gts, dets, conf_threshold=0.25)) == {(0, 0): 1, (BG, 1): 1}


def test_iou_threshold_is_strict_and_iou_is_continuous():
    gts = [gt([(0, 0, 10, 10)], [0])]
    dets = [det([(0, 0, 10, 5)], [0.9], [0])]  # IoU exactly 0.5 (0.55 with inclusive pixels)
    assert cells(matrix_of(gts, dets, iou_threshold=0.5)) == {(BG, 0): 1, (0, BG): 1}
    assert cells(matrix_of(gts, dets, iou_threshold=0.49)) == {(0, 0): 1}


def test_greedy_keeps_a_pair_that_two_pass_deduplication_drops():
    # IoU: gt0-det0 0.9, gt0-det1 0.8, gt1-det1 0.571, gt1-det0 0.44. Greedy matches both;
    # Ultralytics' "best gt per detection, then best detection per gt" keeps only gt0-det0.
    gts = [gt([(0, 0, 100, 10), (20, 0, 160, 10)], [0, 0])]
    dets = [det([(0, 0, 90, 10), (20, 0, 100, 10)], [0.9, 0.9], [0, 0])]
    assert cells(matrix_of(gts, dets, iou_threshold=0.5)) == {(0, 0): 2}


def test_greedy_matches_order_ties_and_empty_inputs():
    gt_index, det_index = greedy_matches(np.array([[0.9, 0.8], [0.3, 0.6]]), 0.5)
    assert gt_index.tolist() == [0, 1] and det_index.tolist() == [0, 1]
    gt_index, det_index = greedy_matches(np.array([[0.7, 0.7], [0.7, 0.7]]), 0.5)
    assert list(zip(gt_index.tolist(), det_index.tolist(), strict=True)) == [(0, 0), (1, 1)]
    for shape in [(0, 0), (0, 3), (2, 0)]:
        gt_index, det_index = greedy_matches(np.zeros(shape), 0.5)
        assert gt_index.shape == det_index.shape == (0,)


def test_totals_account_for_every_object_and_kept_detection():
    rng = np.random.default_rng(0)
    gts, dets, n_gt, n_det = [], [], np.zeros(3, int), 0
    for _ in range(20):
        g = int(rng.integers(0, 6))
        corners = rng.uniform(0, 100, (g + 1, 2))
        boxes = np.hstack([corners, corners + rng.uniform(5, 40, (g + 1, 2))])  # (g + 1, 4)
        det_boxes = np.vstack([boxes, boxes[:g]]) + rng.normal(0, 3, (2 * g + 1, 4))  # duplicates
        difficult = rng.random(g) < 0.2
        gts.append(gt(boxes[:g], rng.integers(0, 3, g), difficult))
        scores = rng.random(2 * g + 1)
        dets.append(det(det_boxes, scores, rng.integers(0, 3, 2 * g + 1)))
        n_gt += np.bincount(gts[-1].class_ids[~difficult], minlength=3)
        n_det += int(np.sum(scores >= 0.25))
    matrix = confusion_matrix(gts, dets, num_classes=3)
    np.testing.assert_array_equal(matrix[:, :3].sum(axis=0), n_gt)
    assert matrix[:3, :].sum() == n_det and matrix[3, 3] == 0


def test_duck_typed_inputs_and_validation():
    image = SimpleNamespace(boxes_xyxy=[BOX], class_ids=[0], difficult=[False])
    found = SimpleNamespace(boxes_xyxy=[BOX], scores=[0.9], class_ids=[0])
    assert cells(matrix_of([image], [found])) == {(0, 0): 1}
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([gt([BOX], [2])], [det([], [], [])], num_classes=2)
    with pytest.raises(ValueError, match="ground-truth images"):
        confusion_matrix([gt([BOX], [0])], [], num_classes=2)
    with pytest.raises(ValueError, match="iou_threshold"):
        confusion_matrix([], [], num_classes=2, iou_threshold=1.5)


def test_normalize_columns_sums_each_true_class_to_one():
    matrix = np.array([[3, 0, 1], [1, 0, 0], [0, 0, 0]])
    normalized = normalize_columns(matrix)
    np.testing.assert_allclose(normalized.sum(axis=0), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(normalized[:, 0], [0.75, 0.25, 0.0])
    assert normalized.dtype == np.float64 and matrix[0, 0] == 3  # input untouched


def test_iou_threshold_bounds_are_accepted_and_matching_stays_strict():
    # BOX (10,10,30,30) and (29,29,49,49) share a 1 x 1 corner: IoU 1 / (400 + 400 - 1) = 1/799
    # > 0, matched at threshold 0. At threshold 1 even an exact detection (IoU 1, not > 1) is
    # unmatched: a miss and a false alarm.
    gts = [gt([BOX], [0])]
    corner = [det([(29, 29, 49, 49)], [0.9], [0])]
    assert cells(matrix_of(gts, corner, iou_threshold=0.0)) == {(0, 0): 1}
    exact = [det([BOX], [0.9], [0])]
    assert cells(matrix_of(gts, exact, iou_threshold=1.0)) == {(BG, 0): 1, (0, BG): 1}
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=rf"^iou_threshold must be in \[0, 1\], got {bad}$"):
            matrix_of(gts, exact, iou_threshold=bad)


def test_greedy_matches_ties_in_row_major_order_on_a_large_matrix():
    # 24 x 24 IoUs: 0.9 where g + d is even, 0.6 elsewhere (288 ties at each level, enough for
    # an unstable sort to reorder them). Row-major order takes (0, 0), then (1, 1) (gt 0 and
    # det 0 are used), ... : the diagonal, in order, all at 0.9; the 0.6 pairs find no free gt.
    g, d = np.indices((24, 24))
    iou = np.where((g + d) % 2 == 0, 0.9, 0.6)
    gt_index, det_index = greedy_matches(iou, 0.5)
    assert gt_index.tolist() == det_index.tolist() == list(range(24))
