"""Box codings: cell points, anchor-free decode and encode, priors, and the coding of each model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from onestage.errors import OnestageError
from onestage.models import build_model, parse_spec
from onestage.models.recorded import model_from_metadata
from onestage.priors.anchors import generate_anchors
from onestage.priors.codings import (
    AnchorCoding,
    PointCoding,
    box_coding_for,
    coding_from_layout,
    coding_layout,
)
from onestage.priors.numpy_codings import PointArrays, cell_points
from onestage.runtime.postprocess import postprocess

BIG = 30.0  # a logit that puts all of a softmax's mass on its bin


def two_level_coding(reg_max: int) -> PointCoding:
    """A 2x2 level and a 1x1 level: 5 points."""
    points, strides = cell_points(((2, 2), (1, 1)))
    return PointCoding(torch.from_numpy(points), torch.from_numpy(strides), (4, 1), reg_max)


def test_cell_points_are_cell_centres_level_by_level_row_major():
    points, strides = cell_points(((2, 2), (1, 1)))
    expected = [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75], [0.5, 0.5]]
    np.testing.assert_array_equal(points, expected)
    np.testing.assert_array_equal(strides, [[0.5, 0.5]] * 4 + [[1.0, 1.0]])
    assert points.dtype == strides.dtype == np.float32
    points, strides = cell_points(((1, 2),))  # a non-square map: cells 1/2 wide, 1 high
    np.testing.assert_array_equal(points, [[0.25, 0.5], [0.75, 0.5]])
    np.testing.assert_array_equal(strides, [[0.5, 1.0], [0.5, 1.0]])


def test_distribution_decode_is_the_expected_bin_times_the_stride():
    coding = two_level_coding(reg_max=2)
    bins = torch.full((1, 5, 4, 3), -BIG)
    bins[..., 1] = BIG  # every side: distance 1 stride
    bins[0, 4, 2] = torch.tensor([0.0, 0.0, 0.0])  # last point, right side: uniform -> 1 too
    bins[0, 4, 3] = torch.tensor([-BIG, -BIG, BIG])  # last point, bottom: 2 strides
    boxes = coding.decode(bins.flatten(-2))
    torch.testing.assert_close(boxes[0, 0], torch.tensor([-0.25, -0.25, 0.75, 0.75]))
    torch.testing.assert_close(boxes[0, 4], torch.tensor([-0.5, -0.5, 1.5, 2.5]))


def test_plain_distances_go_through_softplus_and_encode_inverts_decode():
    coding = two_level_coding(reg_max=0)
    raw = torch.zeros(1, 5, 4)
    boxes = coding.decode(raw)  # softplus(0) = log 2 strides on every side
    side = math.log(2) * 0.5
    torch.testing.assert_close(
        boxes[0, 0], torch.tensor([0.25 - side, 0.25 - side, 0.25 + side, 0.25 + side])
    )
    target = torch.tensor([[[0.1, 0.2, 0.4, 0.3]] * 5])
    distances = coding.encode(target)
    # point (0.25, 0.25), stride 0.5: sides 0.15, 0.05, 0.15, 0.05 away = 0.3, 0.1, 0.3, 0.1 strides
    torch.testing.assert_close(distances[0, 0], torch.tensor([0.3, 0.1, 0.3, 0.1]))
    # softplus^-1(d) = log(exp(d) - 1) decodes back to the target, for points inside it
    inverse = torch.log(torch.expm1(distances[:, :1]))
    torch.testing.assert_close(coding.decode(torch.cat([inverse] * 5, 1))[0, 0], target[0, 0])


def test_points_offer_assigners_boxes_five_strides_wide():
    priors = two_level_coding(reg_max=16).priors()
    torch.testing.assert_close(priors.boxes[0], torch.tensor([-1.0, -1.0, 1.5, 1.5]))
    torch.testing.assert_close(priors.boxes[4], torch.tensor([-2.0, -2.0, 3.0, 3.0]))
    assert priors.level_sizes == (4, 1)


def test_split_and_class_scores_of_each_coding():
    point = two_level_coding(reg_max=1)
    pred = torch.arange(5 * (8 + 3), dtype=torch.float32).reshape(1, 5, 11)
    box_part, logits = point.split(pred)
    assert box_part.shape == (1, 5, 8) and logits.shape == (1, 5, 3)
    torch.testing.assert_close(point.class_scores(logits), logits.sigmoid())
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    logits = torch.tensor([[[1.0, 2.0, 3.0]]])  # 2 classes + background
    softmax = AnchorCoding(anchors, (1,), "softmax").class_scores(logits)
    torch.testing.assert_close(softmax, logits.softmax(-1)[..., :2])
    sigmoid = AnchorCoding(anchors, (1,), "sigmoid").class_scores(logits)
    torch.testing.assert_close(sigmoid, logits[..., :2].sigmoid())


def test_postprocess_reads_an_anchor_free_output():
    coding = PointArrays(*cell_points(((2, 2), (1, 1))), (4, 1), reg_max=0)
    pred = np.full((1, 5, 4 + 2), -10.0, dtype=np.float32)  # softplus(-10) ~ 0: tiny, low
    inverse_half = math.log(math.expm1(0.5))  # softplus^-1(0.5): half a stride
    pred[0, 3, :4] = inverse_half  # point (0.75, 0.75), 0.25 each side (stride 0.5): 0.5..1
    pred[0, 3, 4 + 1] = 2.0  # class 1, sigmoid(2) = 0.881
    (found,) = postprocess(pred, coding, conf_threshold=0.5)
    assert found.class_ids.tolist() == [1]
    np.testing.assert_allclose(found.scores, [1 / (1 + math.exp(-2.0))], rtol=1e-6)
    np.testing.assert_allclose(found.boxes_xyxy, [[0.5, 0.5, 1.0, 1.0]], atol=1e-6)


def test_each_model_gets_the_coding_of_its_head():
    free = box_coding_for(build_model("csp-n", num_classes=15), 320)
    assert isinstance(free, PointCoding) and free.reg_max == 16
    assert free.level_sizes == (1600, 400, 100) and free.points_xy.shape == (2100, 2)
    torch.testing.assert_close(free.strides[0], torch.tensor([8 / 320, 8 / 320]))
    anchored = box_coding_for(build_model("seed", num_classes=15, score_mode="sigmoid"), 320)
    assert isinstance(anchored, AnchorCoding) and anchored.score_mode == "sigmoid"
    assert anchored.anchors_xyxy.shape == (2140, 4)
    assert box_coding_for(build_model("seed", num_classes=15), 320).score_mode == "softmax"
    intended = box_coding_for(build_model("seed", num_classes=15, anchors="seed-intended"), 320)
    torch.testing.assert_close(
        intended.anchors_xyxy,
        torch.from_numpy(generate_anchors("seed-intended", SEED_SIZES)),
        atol=0,
        rtol=0,
    )


def test_an_anchor_config_that_does_not_fit_the_head_is_one_line():
    spec = parse_spec(
        """
name: three-per-cell
input_size: 320
backbone:
  - {name: c1, block: conv, out: 8, k: 3, s: 16}
  - {name: c2, block: conv, out: 8, k: 3, s: 2}
  - {name: c3, block: conv, out: 8, k: 3, s: 2}
  - {name: c4, block: conv, out: 8, k: 3, s: 2}
  - {name: c5, block: conv, out: 8, k: 3, s: 3}
head:
  - {name: detect, block: ssd_shared_head, from: [c1, c2, c3, c4, c5], anchors: 3}
"""
    )
    from onestage.models import SpecModel

    with pytest.raises(OnestageError) as error:
        SpecModel(spec, num_classes=2, anchors="seed")  # width and priors disagree: no model
    assert str(error.value) == (
        "<spec>: anchor config 'seed' has 5 levels of [4, 4, 4, 4, 4] anchors per "
        "cell; the head has 5 levels of 3"
    )
    unfitted = SpecModel(spec, num_classes=2)  # built without naming priors: it declares none
    assert unfitted.anchor_config is None
    with pytest.raises(OnestageError) as unfitted_error:
        box_coding_for(unfitted, 320)
    assert str(unfitted_error.value) == (
        "the model's anchor head (3 per cell on 5 levels) was built for no anchor config: build "
        "it with anchors=NAME (valid: seed, seed-intended) to train or decode it"
    )
    layout = coding_layout(build_model("seed", num_classes=2), 320)
    with pytest.raises(OnestageError, match=r"anchor config 'seed' gives .* 3 per cell"):
        coding_from_layout({**layout, "anchors_per_cell": 3})  # a forged exported layout


def test_decoding_chosen_priors_equals_decoding_all_then_choosing():
    generator = torch.Generator().manual_seed(0)
    points = two_level_coding(reg_max=4)
    anchor_boxes = torch.rand(5, 2, generator=generator) * 0.5
    anchors = AnchorCoding(torch.cat((anchor_boxes, anchor_boxes + 0.3), 1), (4, 1))
    chosen = torch.tensor([[4, 0, 2], [1, 1, 3]])  # (B, k) prior indices
    for coding, values in ((points, 4 * 5), (anchors, 4)):
        box_part = torch.randn(2, 5, values, generator=generator)
        every = coding.decode(box_part)  # (B, A, 4)
        expected = every.gather(1, chosen[:, :, None].expand(-1, -1, 4))
        picked = box_part.gather(1, chosen[:, :, None].expand(-1, -1, values))
        torch.testing.assert_close(coding.decode(picked, chosen), expected)


def test_coding_layout_rebuilds_the_coding_without_the_model():
    for name in ("seed", "csp-t"):
        model = build_model(name, num_classes=3)
        layout = coding_layout(model, 320)
        rebuilt, direct = coding_from_layout(layout), box_coding_for(model, 320)
        assert type(rebuilt) is type(direct) and rebuilt.level_sizes == direct.level_sizes
        torch.testing.assert_close(rebuilt.priors().boxes, direct.priors().boxes)


def test_anchor_decode_uses_the_codings_variances():
    # anchor centre (0.4, 0.4), size 0.2; variances (1, 1): offsets (1, 0, log 2, 0) give the
    # centre 0.4 + 1 * 0.2 = 0.6, y 0.4, width 0.2 * 2 = 0.4, height 0.2 (SSD's 0.1 / 0.2 would
    # give a centre at 0.42 and a width of 0.2 * 2**0.2)
    coding = AnchorCoding(torch.tensor([[0.3, 0.3, 0.5, 0.5]]), (1,), variances=(1.0, 1.0))
    boxes = coding.decode(torch.tensor([[[1.0, 0.0, math.log(2), 0.0]]]))
    torch.testing.assert_close(boxes, torch.tensor([[[0.4, 0.3, 0.8, 0.5]]]))


def test_an_unknown_score_mode_is_one_line():
    with pytest.raises(OnestageError) as error:
        AnchorCoding(torch.tensor([[0.0, 0.0, 0.5, 0.5]]), (1,), "logits")
    assert str(error.value) == "unknown score_mode 'logits'; valid: softmax, sigmoid"


SEED_SIZES = ((20, 20), (10, 10), (5, 5), (3, 3), (1, 1))


class BareModel(nn.Module):
    """A registered model class that says its feature sizes and only the `head` attributes
    given (a class written before the head contract has none)."""

    def __init__(
        self, sizes: tuple[tuple[int, int], ...], device: str = "cpu", **head: object
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, device=device))
        self.sizes = sizes
        for name, value in head.items():
            setattr(self, name, value)

    def feature_sizes_for(self, input_size: int) -> tuple[tuple[int, int], ...]:
        return self.sizes


def test_a_model_without_head_attributes_reads_as_an_anchor_head():
    layout = coding_layout(BareModel(((2, 2), (1, 1))), 64)
    assert layout == {
        "box_coding": "anchors",
        "feature_sizes": [[2, 2], [1, 1]],
        "reg_max": 0,
        "anchors_per_cell": 0,
        "anchor_config": "seed",
        "score_mode": "softmax",
        "one_to_one": False,
    }


def test_the_default_anchor_config_is_the_seed():
    model = BareModel(SEED_SIZES, anchors_per_cell=4)
    seed = torch.from_numpy(generate_anchors("seed", SEED_SIZES))
    torch.testing.assert_close(box_coding_for(model, 320).anchors_xyxy, seed)
    torch.testing.assert_close(coding_from_layout(coding_layout(model, 320)).anchors_xyxy, seed)


def test_a_point_layout_keeps_its_reg_max():
    layout = {"box_coding": "points", "feature_sizes": [[2, 2], [1, 1]], "reg_max": 4}
    coding = coding_from_layout(layout)
    assert isinstance(coding, PointCoding) and coding.reg_max == 4
    assert coding.level_sizes == (4, 1)


def test_each_coding_is_put_on_the_models_device():
    # the meta device (shapes only) stands in for a GPU: a tensor left on the CPU would show
    anchored = box_coding_for(BareModel(SEED_SIZES, "meta", anchors_per_cell=4), 320)
    assert anchored.anchors_xyxy.device.type == "meta" and anchored.anchors_xyxy.shape == (2140, 4)
    free = box_coding_for(BareModel(((2, 2),), "meta", box_coding="points", reg_max=2), 64)
    assert free.points_xy.device.type == "meta" and free.strides.device.type == "meta"
    assert free.points_xy.shape == free.strides.shape == (4, 2)


def test_weights_say_their_score_mode_and_older_ones_read_it_from_their_loss(tmp_path):
    """Weights record the score mode the model was built with; those from before take sigmoid
    from the focal loss and the head's default otherwise."""
    base = {"model": "seed", "class_names": ["cat", "dog"], "anchors": "seed", "input_size": 320}
    for extra, expected in (
        ({"loss": "focal"}, "sigmoid"),
        ({"loss": "ssd"}, "softmax"),
        ({"loss": "focal", "score_mode": "softmax"}, "softmax"),
        ({}, "softmax"),
    ):
        model = model_from_metadata({**base, **extra}, tmp_path / "w.safetensors")
        assert (model.anchor_config, model.score_mode) == ("seed", expected), extra
    intended = model_from_metadata({**base, "anchors": "seed-intended"}, tmp_path / "w")
    assert intended.anchor_config == "seed-intended"
    free = model_from_metadata({**base, "model": "csp-t", "loss": "quality"}, tmp_path / "w")
    assert (free.anchor_config, free.score_mode) == (None, "sigmoid")


def test_an_anchor_free_head_scores_by_sigmoid_only():
    with pytest.raises(OnestageError) as error:
        build_model("csp-t", num_classes=2, score_mode="softmax")
    assert str(error.value).endswith(
        "an anchor-free head cannot score by 'softmax'; valid: sigmoid"
    )


def test_an_anchor_head_scores_by_softmax_or_sigmoid_only():
    with pytest.raises(OnestageError) as error:
        build_model("seed", num_classes=2, score_mode="logits")
    assert str(error.value).endswith(
        "an anchor head cannot score by 'logits'; valid: softmax, sigmoid"
    )


def test_a_point_model_without_anchor_config_lays_out_none():
    layout = coding_layout(BareModel(((2, 2),), box_coding="points", reg_max=2), 64)
    assert (layout["anchor_config"], layout["score_mode"]) == (None, "sigmoid")
