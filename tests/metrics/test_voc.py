"""VOC AP (Cartucho/mAP matching, both IoU conventions) on hand-worked examples."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from helpers import det, gt
from onestage.metrics.voc import ClassCounts, all_point_ap, evaluate_voc, pairwise_iou

FAR = (200, 200, 209, 209)  # overlaps nothing below


def test_perfect_detector_has_ap_one():
    gts = [gt([(0, 0, 9, 9), (20, 20, 39, 29)], [0, 1]), gt([(5, 5, 50, 60)], [0])]
    dets = [
        det([(0, 0, 9, 9), (20, 20, 39, 29)], [0.9, 0.8], [0, 1]),
        det([(5, 5, 50, 60)], [0.7], [0]),
    ]
    result = evaluate_voc(gts, dets, ["a", "b"])
    assert result.ap_per_class == {"a": 1.0, "b": 1.0}
    assert result.map == 1.0
    np.testing.assert_array_equal(result.recall["a"], [0.5, 1.0])
    np.testing.assert_array_equal(result.precision["a"], [1.0, 1.0])
    assert result.counts["a"].true_positives == 2 and result.counts["a"].false_positives == 0


def test_tp_fp_tp_with_two_ground_truths():
    # Scores 0.9 (TP on g1), 0.8 (FP, far away), 0.7 (TP on g2); 2 ground truths.
    #   cumTP 1, 1, 2; cumFP 0, 1, 1
    #   recall    0.5, 0.5, 1.0
    #   precision 1.0, 0.5, 2/3
    # Envelope over (0, 0.5, 0.5, 1.0, 1.0) with precisions (0, 1, 0.5, 2/3, 0) from the right:
    #   (1, 1, 2/3, 2/3, 0); recall changes at 0 -> 0.5 and 0.5 -> 1.0:
    #   AP = 0.5 * 1 + 0.5 * 2/3 = 5/6
    gts = [gt([(0, 0, 9, 9), (20, 20, 29, 29)], [0, 0])]
    dets = [det([(0, 0, 9, 9), FAR, (20, 20, 29, 29)], [0.9, 0.8, 0.7], [0, 0, 0])]
    result = evaluate_voc(gts, dets, ["a"])
    np.testing.assert_allclose(result.recall["a"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(result.precision["a"], [1.0, 0.5, 2 / 3])
    assert result.ap_per_class["a"] == pytest.approx(5 / 6, abs=1e-12)


def test_duplicate_on_matched_ground_truth_is_false_positive():
    # Two identical detections on one ground truth: TP then FP ("repeated match").
    # recall (1, 1), precision (1, 0.5): the envelope at recall 1 is 1, so AP = 1.
    gts = [gt([(0, 0, 9, 9)], [0])]
    dets = [det([(0, 0, 9, 9), (0, 0, 9, 9)], [0.9, 0.8], [0, 0])]
    result = evaluate_voc(gts, dets, ["a"])
    counts = result.counts["a"]
    assert (counts.ground_truths, counts.detections) == (1, 2)
    assert (counts.true_positives, counts.false_positives, counts.ignored) == (1, 1, 0)
    np.testing.assert_allclose(result.precision["a"], [1.0, 0.5])
    assert result.ap_per_class["a"] == 1.0


def test_best_ground_truth_used_means_false_positive_even_if_another_is_free():
    # Cartucho inclusive pixels: A = (0,0,10,10) and B = (4,0,14,10) are 11 x 11 = 121 px each.
    # d1 = A exactly -> IoU(A) = 1 -> TP, A used.
    # d2 = (1,0,11,10): with A: iw = 10 - 1 + 1 = 10, ih = 11 -> 110 / (242 - 110) = 0.833
    #                   with B: iw = 11 - 4 + 1 = 8,  ih = 11 -> 88 / (242 - 88) = 0.571
    # The tool takes the best IoU (A, used) -> FP, although B (0.571 >= 0.5) is free.
    # recall (0.5, 0.5), precision (1, 0.5) -> AP = 0.5 * 1 = 0.5 (a matcher that fell back
    # to B would give 1.0).
    d2 = np.array([[1, 0, 11, 10]], dtype=float)
    ious = pairwise_iou(d2, np.array([[0, 0, 10, 10], [4, 0, 14, 10]], dtype=float), "cartucho")
    np.testing.assert_allclose(ious, [[110 / 132, 88 / 154]])
    gts = [gt([(0, 0, 10, 10), (4, 0, 14, 10)], [0, 0])]
    dets = [det([(0, 0, 10, 10), (1, 0, 11, 10)], [0.9, 0.8], [0, 0])]
    result = evaluate_voc(gts, dets, ["a"], iou_convention="cartucho")
    assert result.counts["a"].true_positives == 1 and result.counts["a"].false_positives == 1
    assert result.ap_per_class["a"] == pytest.approx(0.5)


def test_difficult_ground_truth_is_ignored():
    # Ground truths: A (normal) and D (difficult). Detections: 0.9 on D (ignored: neither TP nor
    # FP), 0.8 on A (TP), 0.7 far away (FP). nGT = 1 (D not counted).
    # Points without the ignored one: recall (1, 1), precision (1, 0.5) -> AP = 1.
    # (Counting the 0.9 as FP would give 0.5, counting D in nGT would give 0.5 too.)
    gts = [gt([(0, 0, 9, 9), (50, 50, 59, 59)], [0, 0], [False, True])]
    dets = [det([(50, 50, 59, 59), (0, 0, 9, 9), FAR], [0.9, 0.8, 0.7], [0, 0, 0])]
    result = evaluate_voc(gts, dets, ["a"])
    counts = result.counts["a"]
    assert (counts.ground_truths, counts.detections) == (1, 3)
    assert (counts.true_positives, counts.false_positives, counts.ignored) == (1, 1, 1)
    np.testing.assert_allclose(result.recall["a"], [1.0, 1.0])
    np.testing.assert_allclose(result.precision["a"], [1.0, 0.5])
    assert result.ap_per_class["a"] == 1.0


def test_only_difficult_ground_truth_means_no_ground_truth():
    # As in the tool, a class whose objects are all difficult has no ground truth: no AP.
    gts = [gt([(0, 0, 9, 9), (50, 50, 59, 59)], [0, 1], [False, True])]
    dets = [det([(0, 0, 9, 9), (50, 50, 59, 59)], [0.9, 0.8], [0, 1])]
    result = evaluate_voc(gts, dets, ["a", "b"])
    assert result.ap_per_class == {"a": 1.0}
    assert result.counts["b"].ignored == 1
    assert result.classes_without_ground_truth == ("b",)


def test_default_iou_is_geometric_and_cartucho_adds_a_pixel():
    # A 10 px box and a detection 1 px off in x and y (continuous coordinates):
    #   continuous (default): intersection 9 x 9 = 81, union 100 + 100 - 81 = 119 -> 0.681, the
    #     VOC devkit's value for the same boxes stored 1-based, (1,1,10,10) and (2,2,11,11)
    #   cartucho (+1 on the stored coordinates): 10 x 10 = 100 / (121 + 121 - 100) -> 0.704
    a, b = np.array([[0.0, 0, 10, 10]]), np.array([[1.0, 1, 11, 11]])
    assert pairwise_iou(a, b)[0, 0] == 81 / 119
    assert pairwise_iou(a, b, "continuous")[0, 0] == 81 / 119
    assert pairwise_iou(a, b, "cartucho")[0, 0] == 100 / 142
    result = evaluate_voc([gt(a, [0])], [det(b, [0.9], [0])], ["a"])
    assert result.iou_convention == "continuous"


def test_inclusive_pixel_convention_crosses_the_threshold():
    # GT (0,0,2,2), detection (1,0,3,2):
    #   continuous: intersection 1 x 2 = 2, union 4 + 4 - 2 = 6 -> IoU 1/3 < 0.5 -> FP -> AP 0
    #   cartucho (+1): boxes 3 x 3 = 9, intersection 2 x 3 = 6, union 18 - 6 = 12 -> 0.5 -> TP
    boxes_gt, boxes_det = np.array([[0.0, 0, 2, 2]]), np.array([[1.0, 0, 3, 2]])
    assert pairwise_iou(boxes_det, boxes_gt, "continuous")[0, 0] == pytest.approx(1 / 3)
    assert pairwise_iou(boxes_det, boxes_gt, "cartucho")[0, 0] == 0.5
    gts, dets = [gt(boxes_gt, [0])], [det(boxes_det, [0.9], [0])]
    assert evaluate_voc(gts, dets, ["a"]).map == 0.0
    assert evaluate_voc(gts, dets, ["a"], iou_convention="cartucho").map == 1.0


def test_touching_boxes_overlap_only_with_inclusive_pixels():
    # (0,0,1,1) and (1,0,2,1) share the pixel column x = 1 in the cartucho convention:
    # iw = 1 - 1 + 1 = 1, ih = 2 -> 2 / (4 + 4 - 2) = 1/3; continuously they only touch (-1).
    a, b = np.array([[0.0, 0, 1, 1]]), np.array([[1.0, 0, 2, 1]])
    assert pairwise_iou(a, b, "cartucho")[0, 0] == pytest.approx(1 / 3)
    assert pairwise_iou(a, b)[0, 0] == -1.0


def test_class_without_detections_has_ap_zero_and_counts_in_map():
    gts = [gt([(0, 0, 9, 9), (20, 20, 29, 29)], [0, 1])]
    dets = [det([(0, 0, 9, 9)], [0.9], [0])]
    result = evaluate_voc(gts, dets, ["a", "b"])
    assert result.ap_per_class == {"a": 1.0, "b": 0.0}
    assert result.map == 0.5  # (1 + 0) / 2
    assert len(result.precision["b"]) == 0


def test_classes_without_ground_truth_are_left_out_of_the_map():
    gts = [gt([(0, 0, 9, 9)], [0])]
    dets = [det([(0, 0, 9, 9), (0, 0, 9, 9), FAR], [0.9, 0.95, 0.5], [0, 2, 2])]
    result = evaluate_voc(gts, dets, ["a", "b", "c"])
    assert result.ap_per_class == {"a": 1.0}
    assert result.map == 1.0
    assert result.classes_without_ground_truth == ("c",)  # "b": neither ground truth nor detection
    assert result.counts["c"].false_positives == 2
    assert result.counts["b"].detections == 0


def test_no_ground_truth_at_all_gives_nan_map():
    result = evaluate_voc([gt(np.zeros((0, 4)), [])], [det([FAR], [0.5], [0])], ["a"])
    assert np.isnan(result.map) and result.ap_per_class == {}


def test_equal_scores_keep_image_then_detection_order():
    # Same score: the FP of image 0 ranks before the TP of image 1 -> precision (0, 1/2),
    # recall (0, 1) -> AP = 1 * 1/2. Swapping the images gives AP 1.
    gts = [gt(np.zeros((0, 4)), []), gt([(0, 0, 9, 9)], [0])]
    dets = [det([FAR], [0.5], [0]), det([(0, 0, 9, 9)], [0.5], [0])]
    assert evaluate_voc(gts, dets, ["a"]).map == 0.5
    assert evaluate_voc(gts[::-1], dets[::-1], ["a"]).map == 1.0


def test_all_point_ap_envelope():
    # Points (0.2, 1), (0.4, 0.5), (0.6, 0.75): envelope 1, 0.75, 0.75 -> 0.2 + 0.2 * 0.75 * 2
    assert all_point_ap(np.array([0.2, 0.4, 0.6]), np.array([1.0, 0.5, 0.75])) == pytest.approx(0.5)
    assert all_point_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_accepts_objects_with_the_attributes():
    ground_truth = SimpleNamespace(boxes_xyxy=[[0, 0, 9, 9]], class_ids=[0], difficult=[False])
    detections = SimpleNamespace(boxes_xyxy=[[0, 0, 9, 9]], scores=[0.3], class_ids=[0])
    assert evaluate_voc([ground_truth], [detections], ["a"]).map == 1.0


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="ground-truth images"):
        evaluate_voc([gt([(0, 0, 9, 9)], [0])], [], ["a"])
    with pytest.raises(ValueError, match="outside"):
        evaluate_voc([gt([(0, 0, 9, 9)], [3])], [det([FAR], [0.5], [0])], ["a"])
    with pytest.raises(ValueError, match="iou_convention"):
        evaluate_voc([], [], ["a"], iou_convention="pixels")


def test_the_former_voc_convention_name_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"'continuous' or 'cartucho'.*'voc'"):
        evaluate_voc([], [], ["a"], iou_convention="voc")


def test_iou_threshold_bounds_are_inclusive():
    # GT (0,0,10,10) and a detection (9,9,19,19) sharing one pixel: IoU 1 / (100 + 100 - 1)
    # = 1/199 >= 0, a TP at threshold 0; a detection that does not overlap (IoU -1) stays an FP.
    # At threshold 1 an exact detection (IoU 1 >= 1) is a TP.
    gts = [gt([(0, 0, 10, 10)], [0])]
    corner = [det([(9, 9, 19, 19)], [0.9], [0])]
    exact = [det([(0, 0, 10, 10)], [0.9], [0])]
    assert evaluate_voc(gts, corner, ["a"], iou_threshold=0.0).map == 1.0
    assert evaluate_voc(gts, [det([FAR], [0.9], [0])], ["a"], iou_threshold=0.0).map == 0.0
    assert evaluate_voc(gts, corner, ["a"], iou_threshold=1 / 199).map == 1.0
    assert evaluate_voc(gts, exact, ["a"], iou_threshold=1.0).map == 1.0
    assert evaluate_voc(gts, corner, ["a"], iou_threshold=0.3).iou_threshold == 0.3
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=rf"^iou_threshold must be in \[0, 1\], got {bad}$"):
            evaluate_voc(gts, exact, ["a"], iou_threshold=bad)


def test_unknown_iou_convention_message_names_the_valid_ones():
    valid = "iou_convention must be 'continuous' or 'cartucho'"
    with pytest.raises(ValueError, match=f"^{valid}, got 'pixels'$"):
        evaluate_voc([], [], ["a"], iou_convention="pixels")
    with pytest.raises(
        ValueError, match=rf"^{valid}, got 'voc' \(the former name of 'cartucho'\)$"
    ):
        evaluate_voc([], [], ["a"], iou_convention="voc")


@pytest.mark.filterwarnings("error")
def test_no_ground_truth_gives_nan_without_a_numpy_warning():
    # The mean of no APs is not taken (numpy would warn "Mean of empty slice").
    result = evaluate_voc([gt(np.zeros((0, 4)), [])], [det([FAR], [0.5], [0])], ["a"])
    assert np.isnan(result.map)
    assert evaluate_voc([], [], ["a"]).counts["a"].detections == 0


def test_detection_of_another_class_does_not_take_the_ground_truth():
    # Image 0: GT class 0, detections class 1 (exact box) and class 0 (exact box). The class-1
    # detection has no same-class ground truth (FP for "b"); the class-0 one is a TP.
    # Image 1 (offset 1 in the flat ground truth): its class-0 detection is a TP on its own GT.
    gts = [gt([(0, 0, 9, 9)], [0]), gt([(0, 0, 9, 9), (20, 20, 29, 29)], [1, 0])]
    dets = [
        det([(0, 0, 9, 9), (0, 0, 9, 9)], [0.9, 0.8], [1, 0]),
        det([(20, 20, 29, 29), (0, 0, 9, 9)], [0.7, 0.6], [0, 1]),
    ]
    result = evaluate_voc(gts, dets, ["a", "b"])
    assert result.counts["a"] == ClassCounts(2, 2, 2, 0, 0)
    assert result.counts["b"] == ClassCounts(1, 2, 1, 1, 0)
    np.testing.assert_allclose(result.precision["b"], [0.0, 0.5])  # FP (0.9) then TP (0.6)
