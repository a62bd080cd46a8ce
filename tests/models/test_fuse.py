"""Folding BatchNorm into convs for inference: same outputs, the original model untouched."""

from __future__ import annotations

import torch
from torch import nn

from onestage.checkpoint import save_weights
from onestage.engine.predictor import Detector
from onestage.models import build_spec_model
from onestage.models.blocks import ConvBN
from onestage.models.fuse import folded_conv, fused_for_inference


def _randomise_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Running statistics and affine parameters far from their initial 0/1 values."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator))
            module.running_var.copy_(torch.rand(size, generator=generator) * 2 + 0.1)
            module.weight.data.copy_(torch.randn(size, generator=generator))
            module.bias.data.copy_(torch.randn(size, generator=generator))


def test_folded_conv_matches_conv_then_batchnorm_with_and_without_conv_bias() -> None:
    generator = torch.Generator().manual_seed(0)
    for bias, groups in ((False, 1), (True, 1), (False, 4)):
        conv = nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=groups, bias=bias)
        bn = nn.BatchNorm2d(12)
        _randomise_batchnorm(bn, generator)
        bn.eval()
        x = torch.randn(2, 8, 9, 9, generator=generator)
        expected = bn(conv(x))
        torch.testing.assert_close(folded_conv(conv, bn)(x), expected, rtol=1e-5, atol=1e-5)


def test_fused_model_gives_the_same_outputs_and_leaves_the_model_alone() -> None:
    generator = torch.Generator().manual_seed(1)
    model = build_spec_model("csp-t", num_classes=3, input_size=64)
    _randomise_batchnorm(model, generator)
    model.eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    images = torch.rand(2, 3, 64, 64, generator=generator)

    fused = fused_for_inference(model)

    with torch.no_grad():
        torch.testing.assert_close(fused(images), model(images), rtol=1e-4, atol=1e-4)
    units = [m for m in fused.modules() if isinstance(m, ConvBN)]
    assert units and all(isinstance(unit.bn, nn.Identity) for unit in units)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert all(not p.requires_grad for p in fused.parameters())
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], value) for name, value in before.items())


def test_loaded_detector_predicts_through_the_fused_copy(tmp_path) -> None:
    generator = torch.Generator().manual_seed(2)
    model = build_spec_model("csp-t", num_classes=2, input_size=64)
    _randomise_batchnorm(model, generator)
    metadata = {
        "model": "csp-t",
        "spec": model.spec.to_dict(),
        "class_names": ["a", "b"],
        "anchors": "seed",
        "input_size": 64,
        "loss": "quality",
    }
    path = tmp_path / "w.safetensors"
    save_weights(path, model, metadata)

    detector = Detector.load(path, device="cpu")

    assert detector.forward.inference_model is not detector.model
    assert any(isinstance(m, nn.BatchNorm2d) for m in detector.model.modules())
    assert not any(
        isinstance(m, nn.BatchNorm2d) for m in detector.forward.inference_model.modules()
    )
    images = torch.rand(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        expected = detector.model.eval()(images)
        torch.testing.assert_close(
            detector.forward.inference_model(images), expected, atol=1e-4, rtol=1e-4
        )


def test_a_model_without_conv_bn_is_used_as_it_is() -> None:
    model = build_spec_model("seed", num_classes=2).train()

    assert fused_for_inference(model) is model
    assert not model.training
