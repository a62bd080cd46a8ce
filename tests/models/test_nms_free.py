"""The NMS-free head (`dual_head`, spec `csp-t-nms-free`): two outputs in training, the
one-to-one one alone at inference; consistent dual assignment in the criterion (the one-to-many
half by TAL's top 10, the one-to-one half by its top 1, parts summed); post-processing that keeps
the best scores without NMS; the layout that says so, in exports too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onestage.losses.criterion import build_criterion
from onestage.models import build_model
from onestage.priors.codings import box_coding_for, coding_layout
from onestage.priors.numpy_codings import PointArrays, cell_points, numpy_coding
from onestage.runtime.postprocess import postprocess

GT_BOXES = torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.55, 0.5, 0.95, 0.9]]])  # normalised xyxy
GT_IDS = torch.tensor([[0, 2]])


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("csp-t-nms-free", num_classes=3, input_size=128)


def test_training_gives_both_heads_and_inference_the_one_to_one_alone(model):
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    priors = sum(h * w for h, w in model.feature_sizes)
    model.train()
    for module in model.modules():  # batch statistics aside, training and inference agree
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    both = model(images)
    model.eval()
    with torch.no_grad():
        one_to_one = model(images)
    assert both.shape == (2, 2 * priors, 4 * 17 + 3) and one_to_one.shape == (2, priors, 71)
    torch.testing.assert_close(both[:, priors:].detach(), one_to_one)
    assert not torch.allclose(both[:, :priors], both[:, priors:])


def test_the_one_to_one_loss_reaches_its_branch_but_not_the_features(model):
    model.train()
    model.zero_grad()
    priors = sum(h * w for h, w in model.feature_sizes)
    output = model(torch.rand(1, 3, 128, 128))
    output[:, priors:].square().sum().backward()
    assert model.head.one_to_one_head.class_branches[0][-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.stem.parameters())


def test_dual_assignment_sums_the_one_to_many_and_the_one_to_one_losses(model):
    coding = box_coding_for(model, 128)
    criterion = build_criterion(coding, 3)
    assert coding.one_to_one and criterion.one_to_one_assigner.topk == 1
    assert criterion.assigner.topk == 10
    model.train()
    pred = model(torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))).detach()
    priors = pred.shape[1] // 2
    both = criterion(pred, GT_BOXES, GT_IDS)
    many = criterion._parts(pred[:, :priors], GT_BOXES, GT_IDS, criterion.assigner)
    one = criterion._parts(pred[:, priors:], GT_BOXES, GT_IDS, criterion.one_to_one_assigner)
    for name in ("loss", "cls", "box", "dfl"):
        torch.testing.assert_close(both[name], many[name] + one[name])
    assert not torch.allclose(many["cls"], one["cls"])  # the two halves differ


def test_one_to_one_assignment_gives_each_object_one_prior(model):
    coding = box_coding_for(model, 128)
    criterion = build_criterion(coding, 3)
    model.eval()
    with torch.no_grad():
        pred = model(torch.rand(1, 3, 128, 128))
    box_part, logits = coding.split(pred)
    targets = criterion.one_to_one_assigner(
        criterion.priors, GT_BOXES, GT_IDS, 3, coding.class_scores(logits), coding.decode(box_part)
    )
    assert int(targets.positive.sum()) == 2


def _point_coding(one_to_one: bool) -> PointArrays:
    points, strides = cell_points(((2, 2),))
    return PointArrays(points, strides, (4,), reg_max=0, one_to_one=one_to_one)


def test_an_nms_free_coding_keeps_overlapping_boxes_that_nms_would_suppress():
    # two neighbouring cells predict nearly the same box of class 0; softplus distances (reg_max 0)
    pred = np.full((1, 4, 4 + 1), -10.0, dtype=np.float32)
    pred[0, 0] = [2.0, 2.0, 3.0, 3.0, 3.0]  # cell (0, 0): a big box, score sigmoid(3)
    pred[0, 1] = [3.0, 2.0, 2.0, 3.0, 2.0]  # cell (0, 1): nearly the same box, sigmoid(2)
    with_nms = postprocess(pred, _point_coding(False), conf_threshold=0.5)[0]
    without = postprocess(pred, _point_coding(True), conf_threshold=0.5)[0]
    assert with_nms.scores.shape == (1,) and without.scores.shape == (2,)
    np.testing.assert_allclose(without.scores, 1 / (1 + np.exp(-np.array([3.0, 2.0]))), rtol=1e-6)
    assert postprocess(pred, _point_coding(True), conf_threshold=0.5, max_det=1)[
        0
    ].scores.shape == (1,)


def test_the_layout_says_one_to_one_and_older_layouts_do_not(model):
    layout = coding_layout(model, 128)
    assert layout["one_to_one"] is True and numpy_coding(layout).one_to_one
    older = {key: value for key, value in layout.items() if key != "one_to_one"}
    assert numpy_coding(older).one_to_one is False
    plain = coding_layout(build_model("csp-t", num_classes=3, input_size=128), 128)
    assert plain["one_to_one"] is False
