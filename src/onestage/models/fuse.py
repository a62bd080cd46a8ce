"""Inference-time folding of BatchNorm into the convolution before it (Ultralytics' `fuse`).

In eval mode a `conv_bn` computes act(BN(conv(x))), and BN with frozen statistics is a per-channel
affine map: scale = gamma / sqrt(var + eps), so BN(conv(x)) = conv'(x) with weights W * scale and
bias beta - mean * scale. The folded model computes the same outputs up to float rounding with one
op fewer per unit. Only `ConvBN` units are folded: a standalone `batchnorm` layer (the seed's,
after a max-pool) has no convolution right before it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from onestage.models.blocks import ConvBN


def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A biased Conv2d computing bn(conv(x)) with `bn`'s running statistics (eval mode)."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (out,)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(bn.bias + (conv_bias - bn.running_mean) * scale)
    return fused


def fused_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every `ConvBN`'s BatchNorm folded into its conv, or
    `model` itself (in eval mode) when it has nothing to fold.

    `model` itself is left as it is (its parameters and BatchNorm layers keep counting in its
    summary); the copy is for inference only: it cannot be trained."""
    if not any(_foldable(module) for module in model.modules()):
        return model.eval()
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if _foldable(module):
            module.conv = folded_conv(module.conv, module.bn)
            module.bn = nn.Identity()
    return fused.requires_grad_(False)


def _foldable(module: nn.Module) -> bool:
    return isinstance(module, ConvBN) and isinstance(module.bn, nn.BatchNorm2d)
