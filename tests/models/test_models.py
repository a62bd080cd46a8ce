"""The seed model: parameter counts, output layout, anchor order, summary, mixed precision; and
the conftest that puts back the torch global state models and inference change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from onestage.engine.predictor import Detector
from onestage.errors import OnestageError
from onestage.models import SeedModel, SpecModel, build_model, model_names
from onestage.models.summary import format_summary, summarize

NUM_ANCHORS = 1600 + 400 + 100 + 36 + 4


@pytest.fixture(scope="module")
def seed_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("seed", num_classes=15).eval()


def test_registry_lists_seed_and_rejects_unknown_names() -> None:
    assert {"seed", "seed-reference"} <= set(model_names())
    assert isinstance(build_model("seed", 3), SpecModel)  # built from specs/seed.yaml
    assert isinstance(build_model("seed-reference", 3), SeedModel)  # the hand-written one
    with pytest.raises(
        OnestageError,
        match=r"unknown model 'resnet9000' \(built-in: .*seed, .*; or give a spec file",
    ):
        build_model("resnet9000", 15)
    with pytest.raises(OnestageError, match="did you mean 'seed'"):
        build_model("sed", 15)


def test_parameter_counts_match_the_seed(seed_model: nn.Module) -> None:
    trainable = sum(p.numel() for p in seed_model.parameters() if p.requires_grad)
    running = sum(b.numel() for name, b in seed_model.named_buffers() if "running" in name)
    assert trainable == 3_768_592
    assert running == 1_504
    assert trainable + running == 3_770_096


def test_keras_style_initialisation_and_batchnorm(seed_model: nn.Module) -> None:
    assert torch.count_nonzero(seed_model.conv2d_1.bias) == 0
    assert torch.count_nonzero(seed_model.class_1x1.bias) == 0
    assert seed_model.batchnorm_3.eps == pytest.approx(1e-3)
    assert seed_model.batchnorm_3.momentum == pytest.approx(0.01)


def test_output_shape_and_attributes(seed_model: nn.Module) -> None:
    with torch.no_grad():
        output = seed_model(torch.rand(2, 3, 320, 320))
    assert output.shape == (2, NUM_ANCHORS, 4 + 15 + 1)
    assert seed_model.feature_sizes == ((20, 20), (10, 10), (5, 5), (3, 3), (1, 1))
    assert seed_model.anchors_per_cell == 4
    assert seed_model.input_size == 320
    assert seed_model.num_classes == 15


def test_three_classes_give_eight_values_per_anchor() -> None:
    with torch.no_grad():
        output = build_model("seed", num_classes=3).eval()(torch.rand(1, 3, 320, 320))
    assert output.shape == (1, NUM_ANCHORS, 4 + 3 + 1)


def test_feature_sizes_match_the_head_inputs(seed_model: nn.Module) -> None:
    seen = []
    handles = [
        getattr(seed_model, f"box_{level}").register_forward_hook(
            lambda _m, inputs, _o: seen.append(tuple(inputs[0].shape[2:]))
        )
        for level in ("20x20", "10x10", "5x5", "3x3", "1x1")
    ]
    with torch.no_grad():
        seed_model(torch.rand(1, 3, 320, 320))
    for handle in handles:
        handle.remove()
    assert tuple(seen) == seed_model.feature_sizes
    with pytest.raises(OnestageError, match="too small"):
        SeedModel.feature_sizes_for(200)


def test_first_1600_anchors_come_from_the_20x20_level() -> None:
    model = build_model("seed", num_classes=3).eval()
    with torch.no_grad():
        for name, module in model.named_children():
            if name.startswith(("box_", "class_")) and isinstance(module, nn.Conv2d):
                module.weight.zero_()
                module.bias.zero_()
        model.box_20x20.bias.copy_(torch.arange(1.0, 17.0))
        output = model(torch.rand(1, 3, 320, 320))
    nonzero_rows = output[0].abs().sum(dim=1) > 0
    assert nonzero_rows[:1600].all()
    assert not nonzero_rows[1600:].any()
    # Within a pixel, anchor a takes the box channels 4a .. 4a + 3.
    expected = torch.arange(1.0, 17.0).reshape(4, 4).repeat(400, 1)
    torch.testing.assert_close(output[0, :1600, :4], expected)


def test_anchors_are_pixel_major_then_anchor_within_the_pixel() -> None:
    model = build_model("seed", num_classes=3).eval()
    # Replace the 10x10 box head's output by codes 1000 h + 100 w + channel.
    h, w, c = torch.meshgrid(torch.arange(10), torch.arange(10), torch.arange(16), indexing="ij")
    codes = (1000 * h + 100 * w + c).float().permute(2, 0, 1).unsqueeze(0)  # (1, 16, 10, 10)
    model.box_10x10.register_forward_hook(lambda _m, _i, _o: codes)
    with torch.no_grad():
        level = model(torch.rand(1, 3, 320, 320))[0, 1600:2000, :4]  # (400, 4)
    for row, col, anchor in [(0, 0, 0), (0, 1, 3), (3, 7, 2), (9, 9, 1)]:
        index = (row * 10 + col) * 4 + anchor
        expected = 1000 * row + 100 * col + 4 * anchor + torch.arange(4.0)
        torch.testing.assert_close(level[index], expected)


def relative_error(approximate: torch.Tensor, exact: torch.Tensor) -> float:
    """Frobenius norm of the difference over the norm of the exact tensor."""
    return float((approximate.float() - exact).norm() / exact.norm())


def test_channels_last_and_bfloat16_autocast() -> None:
    # The shipped trained weights: BatchNorm layers that are not identities (as they are at
    # initialisation) and activations of a trained model's size, up to about 25 here.
    trained = Detector.load("seed_animals", device="cpu").model.eval()
    images = torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = trained(images)
        model = build_model("seed", num_classes=15).eval()
        model.load_state_dict(trained.state_dict())
        model = model.to(memory_format=torch.channels_last)
        images_last = images.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(images_last), reference, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(images_last)
    assert mixed.shape == (2, NUM_ANCHORS, 20)
    assert mixed.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits: 0.2 % relative error here. A wrong computation is far
    # off: the other image's output is 12 % away.
    for part in (slice(0, 4), slice(4, 20)):  # box offsets, class logits
        error = relative_error(mixed[..., part], reference[..., part])
        assert error < 2e-2, (part, error)
    assert relative_error(reference[[1, 0]], reference) > 5e-2  # the bound can tell them apart


def test_summary_rows_and_totals(seed_model: nn.Module) -> None:
    summary = summarize(seed_model)
    names = [row.name for row in summary.rows]
    assert names[:3] == ["conv2d_1", "maxpool2d_1", "batchnorm_1"]
    assert names[-3:] == ["box_1x1", "class_1x1", "final_output"]
    rows = {row.name: row for row in summary.rows}
    assert rows["maxpool2d_4"].output_shape == (128, 20, 20)
    assert rows["batchnorm_6"].params == 4 * 256
    assert rows["final_output"].output_shape == (NUM_ANCHORS, 20)
    assert sum(row.params for row in summary.rows) == summary.total_params
    assert 1.0 < summary.gflops < 1.6
    assert seed_model.training is False

    lines = format_summary(summary).splitlines()
    assert lines[-4:-1] == [
        "Total params: 3,770,096",
        "Trainable params: 3,768,592",
        "Non-trainable params: 1,504",
    ]
    assert lines[-1] == f"GFLOPs per image: {summary.gflops:.2f}"


def test_summary_at_another_input_size_restores_training_mode() -> None:
    model = build_model("seed", num_classes=3, input_size=384)
    summary = summarize(model, input_size=384)
    assert model.training
    anchors = sum(h * w * 4 for h, w in model.feature_sizes)
    assert model.feature_sizes[-1] == (2, 2)
    assert summary.rows[-1].output_shape == (anchors, 8)
