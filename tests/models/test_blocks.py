"""Spec blocks: known outputs on tiny inputs, channels, the SSD output layout, the registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from onestage.models.blocks import (
    BLOCKS,
    CSP,
    SPPF,
    Activation,
    Add,
    BatchNorm,
    Bottleneck,
    Concat,
    Conv,
    ConvBN,
    DWConv,
    FPNMerge,
    MaxPool,
    Upsample,
    padding_of,
    register_block,
)
from onestage.models.heads import (
    CLASS_PRIOR,
    DecoupledHead,
    SSDBox,
    SSDClass,
    SSDOutput,
    SSDSharedHead,
)

# A 4x4 map with negative and positive values: rows -8..-5, -4..-1, 0..3, 4..7.
RAMP = torch.arange(-8.0, 8.0).reshape(1, 1, 4, 4)


def test_padding_same_valid_and_pixels() -> None:
    assert padding_of("same", 3) == 1
    assert padding_of("same", 5) == 2
    assert padding_of("valid", 3) == 0
    assert padding_of(2, 3) == 2
    for bad in ("full", -1, True):
        with pytest.raises(ValueError, match="padding"):
            padding_of(bad, 3)


def test_conv_keeps_or_shrinks_the_map_and_applies_its_activation() -> None:
    x = torch.rand(2, 3, 10, 10)
    assert Conv(3, 8, k=3)(x).shape == (2, 8, 10, 10)
    assert Conv(3, 8, k=3, p="valid")(x).shape == (2, 8, 8, 8)
    assert Conv(3, 8, k=3, s=2)(x).shape == (2, 8, 5, 5)
    conv = Conv(1, 1, k=1, act="relu")
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(0.5)
        out = conv(RAMP)
    torch.testing.assert_close(out, (RAMP + 0.5).clamp(min=0))
    assert conv.out_channels == 1
    assert "act=relu" in repr(conv)
    # A conv with an activation is still one leaf module: state-dict keys weight and bias.
    assert list(conv.state_dict()) == ["weight", "bias"]
    with pytest.raises(ValueError, match="unknown activation 'swish'; valid: relu, silu"):
        Conv(3, 8, act="swish")


def test_maxpool_then_relu_equals_relu_then_maxpool() -> None:
    pooled = MaxPool(1, k=2, act="relu")(RAMP.clone())
    torch.testing.assert_close(pooled, torch.tensor([[[[0.0, 0.0], [5.0, 7.0]]]]))
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(
        MaxPool(4, k=2, act="relu")(x.clone()), nn.MaxPool2d(2)(torch.relu(x)), rtol=0, atol=0
    )
    assert MaxPool(4, k=3, s=1, p=1)(x).shape == (2, 4, 8, 8)


def test_activation_layer_leaves_its_input_alone() -> None:
    x = RAMP.clone()
    out = Activation(1, fn="relu")(x)
    torch.testing.assert_close(out, RAMP.clamp(min=0))
    torch.testing.assert_close(x, RAMP)  # x may feed other layers: not changed in place
    leaky = Activation(1, fn="leaky_relu")(torch.tensor([-10.0, 3.0]))
    torch.testing.assert_close(leaky, torch.tensor([-1.0, 3.0]))


def test_batchnorm_takes_keras_options() -> None:
    norm = BatchNorm(8, eps=1e-3, momentum=0.01)
    assert (norm.eps, norm.momentum, norm.num_features, norm.out_channels) == (1e-3, 0.01, 8, 8)
    norm.train()
    norm(torch.full((2, 8, 3, 3), 5.0))
    torch.testing.assert_close(norm.running_mean, torch.full((8,), 0.05))  # 0.99 * 0 + 0.01 * 5


def test_upsample_repeats_each_pixel() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = torch.tensor([[[[1.0, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]]])
    torch.testing.assert_close(Upsample(1)(x), expected)
    assert Upsample(1, scale=3)(x).shape == (1, 1, 6, 6)


def test_concat_and_add() -> None:
    a, b = torch.ones(1, 2, 3, 3), torch.full((1, 3, 3, 3), 2.0)
    concat = Concat([2, 3])
    assert concat.out_channels == 5
    out = concat(a, b)
    assert out.shape == (1, 5, 3, 3)
    assert out[0, :2].eq(1).all() and out[0, 2:].eq(2).all()
    add = Add([2, 2, 2])
    torch.testing.assert_close(add(a, a, 2 * a), torch.full((1, 2, 3, 3), 4.0))
    with pytest.raises(RuntimeError, match="must match"):
        Add([2, 3])(a, b)


def test_conv_bn_dwconv_csp_and_sppf_shapes() -> None:
    x = torch.rand(2, 8, 16, 16)
    cases = [
        (ConvBN(8, 12, k=3, s=2), (2, 12, 8, 8)),
        (DWConv(8, 12, s=2), (2, 12, 8, 8)),
        (CSP(8, 16, n=2), (2, 16, 16, 16)),
        (SPPF(8, 6), (2, 6, 16, 16)),
        (Bottleneck(8), (2, 8, 16, 16)),
    ]
    for block, shape in cases:
        assert block.eval()(x).shape == shape, type(block).__name__
        assert block.out_channels == shape[1]
    # The depthwise conv has one 3x3 filter per channel: 8 * 9 weights (no bias, BN after).
    assert DWConv(8, 12).dw.conv.weight.shape == (8, 1, 3, 3)
    # C2f: 1x1 to 2 x 8 hidden, two bottlenecks of 8, 1x1 from (2 + 2) x 8 to 16.
    csp = CSP(8, 16, n=2)
    assert csp.cv1.conv.weight.shape == (16, 8, 1, 1)
    assert csp.cv2.conv.weight.shape == (16, 32, 1, 1)


def test_bottleneck_shortcut_adds_the_input() -> None:
    block = Bottleneck(4).eval()
    with torch.no_grad():
        block.cv2.bn.weight.zero_()  # the residual branch gives silu(0) = 0
        block.cv2.bn.bias.zero_()
    x = torch.rand(1, 4, 5, 5)
    torch.testing.assert_close(block(x), x)
    no_shortcut = Bottleneck(4, shortcut=False).eval()
    no_shortcut.load_state_dict(block.state_dict())
    torch.testing.assert_close(no_shortcut(x), torch.zeros_like(x))


def test_sppf_of_a_constant_map_pools_to_the_same_constant() -> None:
    sppf = SPPF(4, 4, act=None).eval()
    with torch.no_grad():
        for conv_bn in (sppf.cv1, sppf.cv2):
            conv_bn.conv.weight.fill_(1.0)
    # cv1: 4 channels of 1 -> 2 channels of 4; pools keep 4; cv2: 4 maps x 2 channels x 4 = 32,
    # each BatchNorm (eval, fresh statistics) dividing by sqrt(1 + eps).
    out = sppf(torch.ones(1, 4, 6, 6))
    torch.testing.assert_close(out, torch.full((1, 4, 6, 6), 32.0 / 1.001))


def test_ssd_convs_have_anchor_times_value_channels() -> None:
    assert SSDBox(64, anchors=4).out_channels == 16
    assert SSDClass(64, num_classes=15, anchors=4).out_channels == 64
    assert SSDClass(64, num_classes=3, anchors=6, k=1).weight.shape == (24, 64, 1, 1)


def test_ssd_output_lays_out_level_then_pixel_then_anchor() -> None:
    head = SSDOutput([8, 6, 8, 6], num_classes=2)  # 2 anchors, 2 classes + background
    assert head.anchors_per_cell == 2
    # Each channel c of the box map at (h, w) holds 100 h + 10 w + c.
    h, w, c = torch.meshgrid(torch.arange(3), torch.arange(2), torch.arange(8), indexing="ij")
    boxes = (100 * h + 10 * w + c).float().permute(2, 0, 1).unsqueeze(0)  # (1, 8, 3, 2)
    classes = -torch.ones(1, 6, 3, 2)
    small_boxes = torch.full((1, 8, 1, 1), 7.0)
    small_classes = torch.full((1, 6, 1, 1), 9.0)
    out = head(boxes, classes, small_boxes, small_classes)
    assert out.shape == (1, 3 * 2 * 2 + 1 * 1 * 2, 4 + 2 + 1)
    # Anchor index (row * 2 + col) * 2 + anchor of the first level: channels 4 anchor + 0..3.
    for row, col, anchor in [(0, 0, 0), (0, 1, 1), (2, 1, 0)]:
        expected = 100 * row + 10 * col + 4 * anchor + torch.arange(4.0)
        torch.testing.assert_close(out[0, (row * 2 + col) * 2 + anchor, :4], expected)
    assert out[0, :12, 4:].eq(-1).all()
    assert out[0, 12:, :4].eq(7).all() and out[0, 12:, 4:].eq(9).all()
    shapes = [(1, 8, 3, 2), (1, 6, 3, 2), (1, 8, 1, 1), (1, 6, 1, 1)]
    assert head.feature_sizes_of(shapes) == ((3, 2), (1, 1))


def test_ssd_output_rejects_channels_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="pairs"):
        SSDOutput([8, 6, 8], num_classes=2)
    with pytest.raises(ValueError, match="level 1 has 12 box and 6 class channels"):
        SSDOutput([8, 6, 12, 6], num_classes=2)
    with pytest.raises(ValueError, match="level 0 has 8 box and 8 class channels"):
        SSDOutput([8, 8], num_classes=2)


def test_registry_holds_the_built_ins_and_refuses_a_name_twice(restore_blocks: None) -> None:
    for name in ("conv", "maxpool", "act", "batchnorm", "upsample", "concat", "add", "dwconv"):
        assert name in BLOCKS.names()
    for name in ("csp", "sppf", "conv_bn", "ssd_box", "ssd_class", "ssd_output"):
        assert name in BLOCKS.names()
    assert BLOCKS.get("conv") is Conv

    @register_block("test_blocks_identity")
    class Identity(nn.Module):
        def __init__(self, in_channels: int) -> None:
            super().__init__()
            self.out_channels = in_channels

    assert BLOCKS.get("test_blocks_identity") is Identity
    with pytest.raises(ValueError, match="already registered"):
        register_block("conv")(Identity)


def test_fpn_merge_adds_the_coarse_map_resized_to_the_lateral() -> None:
    merge = FPNMerge([1, 1])
    coarse = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
    out = merge(coarse, torch.full((1, 1, 4, 4), 10.0))
    expected = torch.tensor(
        [[11, 11, 12, 12], [11, 11, 12, 12], [13, 13, 14, 14], [13, 13, 14, 14.0]]
    )
    torch.testing.assert_close(out[0, 0], expected)
    # any ratio: a 1x1 map spread over 3x3, as the seed's levels need
    torch.testing.assert_close(
        merge(torch.full((1, 1, 1, 1), 2.0), torch.ones(1, 1, 3, 3)), torch.full((1, 1, 3, 3), 3.0)
    )
    with pytest.raises(ValueError, match=r"equal channels, got channels \[8, 4\]"):
        FPNMerge([8, 4])


def test_shared_head_runs_the_same_convs_on_every_level() -> None:
    head = SSDSharedHead([2, 2], num_classes=2, anchors=2, convs=0)
    nn.init.zeros_(head.box.weight)
    nn.init.zeros_(head.classes.weight)
    with torch.no_grad():
        head.box.bias.copy_(torch.arange(8.0))  # anchor 0: 0..3, anchor 1: 4..7
        head.classes.bias.copy_(torch.arange(6.0) + 100)
    levels = (torch.rand(1, 2, 3, 3), torch.rand(1, 2, 1, 2))
    out = head(*levels)
    assert out.shape == (1, (9 + 2) * 2, 4 + 3)
    assert head.feature_sizes_of([tuple(x.shape) for x in levels]) == ((3, 3), (1, 2))
    per_anchor_row = torch.tensor([[0, 1, 2, 3, 100, 101, 102], [4, 5, 6, 7, 103, 104, 105.0]])
    torch.testing.assert_close(out[0], per_anchor_row.repeat(11, 1))  # every level, every cell
    assert sum(p.numel() for p in head.parameters()) == (2 * 8 * 9 + 8) + (2 * 6 * 9 + 6)
    with pytest.raises(ValueError, match="same channels"):
        SSDSharedHead([2, 4], num_classes=2, anchors=2)


def test_the_decoupled_head_lays_out_distance_bins_then_class_logits_per_cell():
    head = DecoupledHead([8, 16], num_classes=3, reg_max=4).eval()
    assert (head.box_coding, head.anchors_per_cell, head.reg_max) == ("points", 1, 4)
    assert head.out_channels == 4 * 5 + 3
    levels = (torch.rand(2, 8, 4, 4), torch.rand(2, 16, 2, 2))
    with torch.no_grad():
        out = head(*levels)
        first = torch.cat((head.box_branches[0](levels[0]), head.class_branches[0](levels[0])), 1)
    assert out.shape == (2, 16 + 4, 23)
    torch.testing.assert_close(out[:, 5], first[:, :, 1, 1])  # cell (row 1, column 1) of level 0
    assert head.feature_sizes_of([(2, 8, 4, 4), (2, 16, 2, 2)]) == ((4, 4), (2, 2))
    # YOLOv8's widths: box max(16, 8 / 4, 4 x 4) = 16, class max(8, 3) = 8
    assert head.box_branches[1][0].conv.out_channels == 16
    assert head.class_branches[1][0].conv.out_channels == 8
    torch.testing.assert_close(head.box_branches[0][-1].bias, torch.ones(20))
    torch.testing.assert_close(
        head.class_branches[0][-1].bias.sigmoid(), torch.full((3,), CLASS_PRIOR)
    )


def test_the_decoupled_head_without_distributions_and_its_errors():
    head = DecoupledHead([8], num_classes=2, reg_max=0)
    assert head.out_channels == 4 + 2
    with pytest.raises(ValueError, match="reg_max must be 0"):
        DecoupledHead([8], num_classes=2, reg_max=-1)
    with pytest.raises(ValueError, match="built for 1 levels, got 2"):
        head(torch.rand(1, 8, 2, 2), torch.rand(1, 8, 1, 1))


def test_a_head_of_many_classes_starts_each_at_one_over_their_number():
    head = DecoupledHead([8], num_classes=400, reg_max=4)
    torch.testing.assert_close(
        head.class_branches[0][-1].bias.sigmoid(), torch.full((400,), 1 / 400)
    )
    head = DecoupledHead([8], num_classes=100, reg_max=4)
    torch.testing.assert_close(head.class_branches[0][-1].bias.sigmoid(), torch.full((100,), 0.01))
