"""The metrics' input forms: ImageGroundTruth, ImageDetections and as_evaluation_inputs."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from onestage.detections import ImageDetections
from onestage.metrics import ImageGroundTruth, as_evaluation_inputs


def test_ground_truth_converts_to_float_boxes_int_ids_and_bool_flags():
    # Integer boxes (as a VOC reader or a user may give them) become float64; ids int64.
    gt = ImageGroundTruth([(0, 0, 5, 5), (1, 2, 3, 4)], [1, 0], [0, 1])
    assert gt.boxes_xyxy.dtype == np.float64 and gt.boxes_xyxy.shape == (2, 4)
    assert gt.class_ids.dtype == np.int64 and gt.class_ids.tolist() == [1, 0]
    assert gt.difficult.dtype == bool and gt.difficult.tolist() == [False, True]


def test_detections_convert_to_float_boxes_and_scores():
    # Integer boxes and scores, float32 scores (a model's output): all float64 afterwards.
    det = ImageDetections([(0, 0, 5, 5)], [1], [0])
    assert det.boxes_xyxy.dtype == det.scores.dtype == np.float64
    assert det.class_ids.dtype == np.int64
    det = ImageDetections(np.zeros((2, 4), np.float32), np.array([0.5, 0.25], np.float32), [0, 1])
    assert det.scores.dtype == np.float64 and det.scores.tolist() == [0.5, 0.25]


def test_one_object_given_as_flat_values_and_column_shaped_ids_are_flattened():
    # A single object as a flat box and scalar id/flag; a (D, 1) id column as models return it.
    gt = ImageGroundTruth([0, 0, 5, 5], 3, True)
    assert gt.boxes_xyxy.shape == (1, 4)
    assert gt.class_ids.shape == gt.difficult.shape == (1,)
    det = ImageDetections(np.zeros((2, 4)), np.array([[0.9], [0.8]]), np.array([[2], [1]]))
    assert det.scores.shape == det.class_ids.shape == (2,)
    assert det.class_ids.tolist() == [2, 1]
    gt = ImageGroundTruth(np.zeros((2, 4)), np.array([[2], [1]]), np.array([[False], [True]]))
    assert gt.class_ids.tolist() == [2, 1] and gt.difficult.tolist() == [False, True]


def test_length_mismatches_name_every_length():
    message = "ground truth: 2 boxes, 1 class ids and 2 difficult flags differ in length"
    with pytest.raises(ValueError, match=f"^{message}$"):
        ImageGroundTruth(np.zeros((2, 4)), [0], [False, False])
    message = "detections: 1 boxes, 2 scores and 1 class ids differ in length"
    with pytest.raises(ValueError, match=f"^{message}$"):
        ImageDetections(np.zeros((1, 4)), [0.5, 0.4], [0])


@pytest.mark.parametrize("score", [float("nan"), float("inf"), -float("inf")])
def test_scores_must_be_finite(score):
    message = "detections: scores must be finite (they are sorted)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ImageDetections(np.zeros((2, 4)), [0.5, score], [0, 0])


def test_of_keeps_a_converted_value_and_converts_lookalikes():
    gt = ImageGroundTruth([(0, 0, 5, 5)], [0], [False])
    assert ImageGroundTruth.of(gt) is gt
    lookalike = SimpleNamespace(boxes_xyxy=[(0, 0, 5, 5)], class_ids=[0], difficult=[True])
    converted = ImageGroundTruth.of(lookalike)
    assert isinstance(converted, ImageGroundTruth) and converted.difficult.tolist() == [True]


def test_class_ids_outside_the_range_are_listed_once_sorted():
    # num_classes 3: valid ids 0, 1, 2. The image holds 0 and 2 (valid), 3 (= num_classes, one
    # past the end), -1 and 3 again: the message lists -1 and 3, each once, ascending.
    gts = [ImageGroundTruth(np.zeros((3, 4)), [0, 3, 2], [False] * 3)]
    dets = [ImageDetections(np.zeros((2, 4)), [0.5, 0.5], [-1, 3])]
    message = "image 0: class ids [-1, 3] outside [0, 3)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        as_evaluation_inputs(gts, dets, num_classes=3)


def test_the_failing_image_is_named_by_position_and_lookalikes_are_converted():
    box = [(0, 0, 5, 5)]
    gts = [SimpleNamespace(boxes_xyxy=box, class_ids=[1], difficult=[False])] * 2
    dets = [ImageDetections(box, [0.5], [0]), ImageDetections(box, [0.5], [2])]
    message = "image 1: class ids [2] outside [0, 2)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        as_evaluation_inputs(gts, dets, num_classes=2)
    converted, _ = as_evaluation_inputs(gts, dets[:1] * 2, num_classes=2)
    assert all(isinstance(g, ImageGroundTruth) for g in converted)


def test_image_counts_must_match():
    message = "2 ground-truth images but 1 detection images"
    gts = [ImageGroundTruth(np.zeros((0, 4)), [], [])] * 2
    with pytest.raises(ValueError, match=f"^{message}$"):
        as_evaluation_inputs(gts, [ImageDetections(np.zeros((0, 4)), [], [])], num_classes=1)
