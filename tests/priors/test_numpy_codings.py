"""The numpy codings inference reads outputs with agree with training's torch codings: the same
priors bit for bit, boxes and scores within float32 rounding, on every kind of head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from onestage.errors import OnestageError
from onestage.priors import numpy_codings
from onestage.priors.codings import coding_from_layout
from onestage.priors.numpy_codings import (
    AnchorArrays,
    PointArrays,
    numpy_coding,
    sigmoid,
    softmax,
)

ANCHOR_LAYOUT = {
    "box_coding": "anchors",
    "feature_sizes": [[20, 20], [10, 10], [5, 5], [3, 3], [1, 1]],
    "reg_max": 0,
    "anchors_per_cell": 4,
    "anchor_config": "seed",
    "score_mode": "softmax",
}
POINT_LAYOUT = {
    "box_coding": "points",
    "feature_sizes": [[8, 8], [4, 4], [2, 2]],
    "reg_max": 16,
    "anchors_per_cell": 0,
    "anchor_config": None,
    "score_mode": "sigmoid",
}


@pytest.mark.parametrize(
    "layout",
    [
        ANCHOR_LAYOUT,
        {**ANCHOR_LAYOUT, "score_mode": "sigmoid"},
        POINT_LAYOUT,
        {**POINT_LAYOUT, "reg_max": 0},
    ],
    ids=["anchors-softmax", "anchors-sigmoid", "points-dfl", "points-softplus"],
)
def test_numpy_and_torch_codings_read_an_output_alike(layout: dict) -> None:
    arrays, tensors = numpy_coding(layout), coding_from_layout(layout)
    if isinstance(arrays, AnchorArrays):
        assert np.array_equal(arrays.anchors_xyxy, tensors.anchors_xyxy.numpy())
        box_values, logits = 4, 4
    else:
        assert np.array_equal(arrays.points_xy, tensors.points_xy.numpy())
        assert np.array_equal(arrays.strides, tensors.strides.numpy())
        box_values, logits = 4 * (layout["reg_max"] + 1), 3
    assert arrays.level_sizes == tensors.level_sizes
    priors = sum(arrays.level_sizes)
    pred = torch.randn(2, priors, box_values + logits, generator=torch.Generator().manual_seed(0))
    pred[0, :5] *= 40  # wild values: the size clamp, saturated scores
    box_part, class_logits = arrays.split(pred.numpy())
    torch_box_part, torch_logits = tensors.split(pred)
    boxes = tensors.decode(torch_box_part).numpy()
    np.testing.assert_allclose(arrays.decode(box_part), boxes, rtol=1e-5, atol=1e-5)
    scores = tensors.class_scores(torch_logits).numpy()
    np.testing.assert_allclose(arrays.class_scores(class_logits), scores, rtol=1e-5, atol=1e-7)
    index = np.array([[0, 7, priors - 1], [3, 3, 1]])  # the candidates' rows alone
    chosen = np.take_along_axis(box_part, index[..., None], axis=1)
    np.testing.assert_allclose(
        arrays.decode(chosen, index), np.take_along_axis(boxes, index[..., None], 1), atol=1e-5
    )


def test_sigmoid_and_softmax_are_float32_and_finite_at_the_extremes() -> None:
    values = np.array([-1000.0, -20.0, 0.0, 20.0, 1000.0], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        result = sigmoid(values)
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, torch.from_numpy(values).sigmoid().numpy(), atol=1e-7)
        spread = softmax(np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32))
    assert spread.dtype == np.float32 and spread.tolist() == [[1.0, 0.0, 0.0]]


def test_the_layout_errors_are_one_line() -> None:
    with pytest.raises(OnestageError) as raised:
        numpy_coding({**ANCHOR_LAYOUT, "anchor_config": None})
    assert str(raised.value).startswith(
        "the model's anchor head (4 per cell on 5 levels) was built for no anchor config"
    )
    with pytest.raises(OnestageError, match=r"gives .* anchors per level, but the model's head"):
        numpy_coding({**ANCHOR_LAYOUT, "anchors_per_cell": 3})
    with pytest.raises(OnestageError, match="cannot score by 'tanh'"):
        numpy_coding({**ANCHOR_LAYOUT, "score_mode": "tanh"})


def test_a_distance_is_the_expected_bin_times_the_stride() -> None:
    # one 1 x 1 level (point 0.5, 0.5, stride 1), reg_max 2: bins (-30, 30, -30) -> 1 stride
    coding = PointArrays(np.array([[0.5, 0.5]], np.float32), np.ones((1, 2), np.float32), (1,), 2)
    bins = np.tile(np.array([-30.0, 30.0, -30.0], np.float32), 4)[None, None]  # (1, 1, 12)
    bins[0, 0, 9:] = [-30.0, -30.0, 30.0]  # bottom: 2 strides
    np.testing.assert_allclose(coding.decode(bins), [[[-0.5, -0.5, 1.5, 2.5]]], atol=1e-6)
    softplus_coding = PointArrays(coding.points_xy, coding.strides, (1,), 0)
    half = np.float32(math.log(math.expm1(0.5)))  # softplus^-1(0.5)
    np.testing.assert_allclose(
        softplus_coding.decode(np.full((1, 1, 4), half)), [[[0.0, 0.0, 1.0, 1.0]]], atol=1e-6
    )


@pytest.mark.parametrize(
    "layout",
    [ANCHOR_LAYOUT, {**ANCHOR_LAYOUT, "score_mode": "sigmoid"}, POINT_LAYOUT],
    ids=["anchors-softmax", "anchors-sigmoid", "points"],
)
@pytest.mark.parametrize("conf", [0.0, 0.001, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("best_only", [False, True], ids=["all", "argmax"])
def test_candidate_pairs_are_exactly_the_pairs_scoring_above_the_threshold(
    layout: dict, conf: float, best_only: bool
) -> None:
    coding = numpy_coding(layout)
    priors = sum(coding.level_sizes)
    values = 4 * (layout["reg_max"] + 1) + 5 + (layout["box_coding"] == "anchors")
    rng = np.random.default_rng(int(conf * 1000))
    pred = (rng.standard_normal((1, priors, values)) * 4).astype(np.float32)
    pred[0, :3, -3:] = [30.0, 31.0, 32.0]  # sigmoid scores equal in float32 (1.0): ties
    _, logits = coding.split(pred)
    scores = coding.class_scores(logits)[0]  # every pair scored
    valid = scores > np.float32(conf)
    if best_only:
        ranked = logits[0] if coding.score_mode == "softmax" else scores
        valid &= ranked.argmax(axis=-1)[:, None] == np.arange(scores.shape[-1])
    expected_priors, expected_classes = np.nonzero(valid)
    found_priors, found_classes, found_scores = coding.candidate_pairs(logits[0], conf, best_only)
    np.testing.assert_array_equal(found_priors, expected_priors)
    np.testing.assert_array_equal(found_classes, expected_classes)
    np.testing.assert_array_equal(found_scores, scores[expected_priors, expected_classes])
    assert found_scores.dtype == np.float32


def test_candidate_pairs_of_softmax_anchors_bound_by_the_background_logit() -> None:
    coding = numpy_coding(ANCHOR_LAYOUT)
    logits = np.full((sum(coding.level_sizes), 6), -9.0, dtype=np.float32)
    logits[:, -1] = 0.0  # background
    logits[3, 2] = math.log(0.5)  # probability just over 1/3: a candidate at conf 0.25 only
    logits[7, 4] = 5.0
    anchors, class_ids, scores = coding.candidate_pairs(logits, 0.25, False)
    assert (anchors.tolist(), class_ids.tolist()) == ([3, 7], [2, 4])
    np.testing.assert_allclose(scores, [1 / 3, math.exp(5) / (math.exp(5) + 1)], atol=1e-3)
    anchors, class_ids, _ = coding.candidate_pairs(logits, 0.6, False)
    assert (anchors.tolist(), class_ids.tolist()) == ([7], [4])


def test_candidate_pairs_need_a_score_strictly_above_the_threshold_whatever_the_rule() -> None:
    coding = numpy_coding(POINT_LAYOUT)
    logits = np.full((sum(coding.level_sizes), 5), -20.0, dtype=np.float32)
    logits[0, 1] = 0.0  # a score of exactly 0.5
    logits[1, 2] = math.log(0.3 / 0.7) - 5e-4  # its prior's best, just under 0.3: within the margin
    logits[2, [0, 3]] = [3.0, 2.0]  # two classes of one prior above 0.3
    expected = {  # (conf, best_only): (priors, class ids)
        (0.5, False): ([2, 2], [0, 3]),
        (0.5, True): ([2], [0]),
        (0.3, False): ([0, 2, 2], [1, 0, 3]),
        (0.3, True): ([0, 2], [1, 0]),
    }
    for (conf, best_only), pairs in expected.items():
        priors, class_ids, _ = coding.candidate_pairs(logits, conf, best_only)
        assert (priors.tolist(), class_ids.tolist()) == pairs, (conf, best_only)
    priors, _, _ = coding.candidate_pairs(logits, 0.4999, False)
    assert priors.tolist() == [0, 2, 2]


def test_candidate_pairs_score_only_what_their_bound_allows(monkeypatch) -> None:
    """Scoring is the cost: a sigmoid coding scores only the pairs its logit bound lets through,
    a softmax coding only the anchors its background bound lets through."""
    scored: list[tuple[int, ...]] = []
    for name in ("sigmoid", "softmax"):
        exact = getattr(numpy_codings, name)
        monkeypatch.setattr(
            numpy_codings, name, lambda x, exact=exact: scored.append(x.shape) or exact(x)
        )
    points = numpy_coding(POINT_LAYOUT)
    logits = np.full((sum(points.level_sizes), 5), -20.0, dtype=np.float32)
    logits[[3, 9, 9], [1, 0, 4]] = 1.0
    logits[[4, 5], [2, 3]] = -1.5  # scores of 0.18, under 0.25: left unscored
    assert len(points.candidate_pairs(logits, 0.25, False)[0]) == 3
    assert scored == [(3,)]
    scored.clear()
    anchors = numpy_coding(ANCHOR_LAYOUT)
    logits = np.full((sum(anchors.level_sizes), 6), -9.0, dtype=np.float32)
    logits[:, -1] = 0.0
    logits[3, 2], logits[7, 4] = math.log(0.5), 5.0
    anchors.candidate_pairs(logits, 0.6, False)
    anchors.candidate_pairs(logits, 0.25, False)
    assert scored == [(1, 6), (2, 6)]


@pytest.mark.parametrize(
    "layout",
    [ANCHOR_LAYOUT, POINT_LAYOUT, {**POINT_LAYOUT, "reg_max": 0}],
    ids=["anchors", "points-dfl", "points-softplus"],
)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_decoding_and_scoring_give_float32_whatever_the_outputs_dtype(layout: dict, dtype) -> None:
    coding = numpy_coding(layout)
    values = 4 * (layout["reg_max"] + 1) + 5 + (layout["box_coding"] == "anchors")
    rng = np.random.default_rng(3)
    pred = rng.standard_normal((2, sum(coding.level_sizes), values)).astype(dtype)
    box_part, logits = coding.split(pred)
    assert coding.decode(box_part).dtype == np.float32
    assert coding.class_scores(logits).dtype == np.float32
