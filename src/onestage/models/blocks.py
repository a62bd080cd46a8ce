"""Building blocks of model specs, by name: `conv`, `maxpool`, `csp`, `ssd_output`, ...

A block is an `nn.Module` class filed with `@register_block("name")`. Its constructor takes the
input channels first, inferred by the spec builder from a dry run and never written in a spec:
`in_channels: int` for a block that reads one tensor, `in_channels: list[int]` for a block with
`multi_input = True` (its `forward` then takes the tensors as positional arguments). Every other
constructor argument is a keyword from the spec's `args`. A constructor with a `num_classes`
parameter receives the model's class count from the build call, never from the spec. Each
built-in block has an `out_channels` attribute, for people reading the model; the builder itself
goes by the shapes of the dry run.

A user's own block lives in their own file, registered the same way:

    from torch import nn
    from onestage.models.blocks import register_block

    @register_block("double")
    class Double(nn.Module):
        def __init__(self, in_channels: int) -> None:
            super().__init__()
            self.out_channels = in_channels

        def forward(self, x):
            return 2 * x

The last layer of a detector is a head (`onestage.models.heads`: the SSD heads and the
anchor-free decoupled head, and the contract a head of one's own keeps).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from onestage.registry import Registry

BLOCKS: Registry[type[nn.Module]] = Registry("block")
register_block = BLOCKS.register

# Activations by name, as functions (x, inplace) -> tensor: no module, so a conv with an `act`
# stays one leaf layer (one summary row, state-dict keys `<layer>.weight`).
ACTIVATIONS: dict[str, Callable[[torch.Tensor, bool], torch.Tensor]] = {
    "relu": lambda x, inplace: F.relu(x, inplace=inplace),
    "silu": lambda x, inplace: F.silu(x, inplace=inplace),
    "leaky_relu": lambda x, inplace: F.leaky_relu(x, 0.1, inplace=inplace),
}


def check_activation(act: str | None) -> str | None:
    """`act` itself when it names an activation (or is None); ValueError otherwise."""
    if act is not None and act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; valid: {', '.join(ACTIVATIONS)}")
    return act


def padding_of(p: int | str, k: int) -> int:
    """Padding in pixels: an int, "same" (k // 2: the size kept at stride 1, odd k) or "valid"."""
    if p == "same":
        return k // 2
    if p == "valid":
        return 0
    if isinstance(p, int) and not isinstance(p, bool) and p >= 0:
        return p
    raise ValueError(f"padding p must be 'same', 'valid' or an int >= 0, got {p!r}")


@register_block("conv")
class Conv(nn.Conv2d):
    """Conv2d: `out` filters of size `k`, stride `s`, padding `p`, then optional `act`."""

    def __init__(
        self,
        in_channels: int,
        out: int,
        k: int = 3,
        s: int = 1,
        p: int | str = "same",
        groups: int = 1,
        bias: bool = True,
        act: str | None = None,
    ) -> None:
        super().__init__(in_channels, out, k, s, padding_of(p, k), groups=groups, bias=bias)
        self.act = check_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # (B, out, H', W')
        # In place: the conv output is fresh, and a conv's backward does not need it.
        return y if self.act is None else ACTIVATIONS[self.act](y, True)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.act is None else f", act={self.act}")


@register_block("maxpool")
class MaxPool(nn.MaxPool2d):
    """MaxPool2d of size `k`, stride `s` (default `k`), padding `p`, then optional `act`.

    The seed pools, then applies its ReLU: max-pooling and ReLU commute (the same values and
    gradients), and the ReLU then runs on a map 4x smaller than the conv's output.
    """

    def __init__(
        self, in_channels: int, k: int = 2, s: int | None = None, p: int = 0, act: str | None = None
    ) -> None:
        super().__init__(k, s, p)
        self.out_channels = in_channels
        self.act = check_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # (B, C, H', W')
        return y if self.act is None else ACTIVATIONS[self.act](y, True)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.act is None else f", act={self.act}")


@register_block("act")
class Activation(nn.Module):
    """An activation `fn` as a layer of its own (relu, silu or leaky_relu)."""

    def __init__(self, in_channels: int, fn: str = "relu") -> None:
        super().__init__()
        self.out_channels = in_channels
        self.fn = check_activation(fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.fn](x, False)  # not in place: x may feed other layers too

    def extra_repr(self) -> str:
        return self.fn


@register_block("batchnorm")
class BatchNorm(nn.BatchNorm2d):
    """BatchNorm2d; `momentum` is torch's (Keras' 0.99 is torch's 0.01)."""

    def __init__(self, in_channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(in_channels, eps=eps, momentum=momentum)
        self.out_channels = in_channels


@register_block("upsample")
class Upsample(nn.Module):
    """Resize by an integer `scale` (nearest by default): (B, C, H, W) -> (B, C, sH, sW)."""

    def __init__(self, in_channels: int, scale: int = 2, mode: str = "nearest") -> None:
        super().__init__()
        self.out_channels = in_channels
        self.scale = scale
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode)


@register_block("concat")
class Concat(nn.Module):
    """Concatenate the inputs along `dim` (channels by default)."""

    multi_input = True

    def __init__(self, in_channels: list[int], dim: int = 1) -> None:
        super().__init__()
        self.out_channels = sum(in_channels) if dim == 1 else in_channels[0]
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


@register_block("add")
class Add(nn.Module):
    """Sum the inputs, which must have the same shape (a residual or FPN merge)."""

    multi_input = True

    def __init__(self, in_channels: list[int]) -> None:
        super().__init__()
        self.out_channels = in_channels[0]

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total


@register_block("conv_bn")
class ConvBN(nn.Module):
    """Conv2d without bias -> BatchNorm -> `act` (SiLU): the YOLO-style unit.

    BatchNorm as in YOLOv5/v8: eps 1e-3, momentum 0.03. Layers `conv` and `bn`.
    """

    def __init__(
        self,
        in_channels: int,
        out: int,
        k: int = 1,
        s: int = 1,
        p: int | str = "same",
        groups: int = 1,
        act: str | None = "silu",
    ) -> None:
        super().__init__()
        self.out_channels = out
        self.conv = nn.Conv2d(in_channels, out, k, s, padding_of(p, k), groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out, eps=1e-3, momentum=0.03)
        self.act = check_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))  # (B, out, H', W')
        return y if self.act is None else ACTIVATIONS[self.act](y, True)


@register_block("dwconv")
class DWConv(nn.Module):
    """Depthwise-separable conv: a k x k `conv_bn` per channel, then a 1x1 `conv_bn` to `out`."""

    def __init__(
        self, in_channels: int, out: int, k: int = 3, s: int = 1, act: str | None = "silu"
    ) -> None:
        super().__init__()
        self.out_channels = out
        self.dw = ConvBN(in_channels, in_channels, k, s, groups=in_channels, act=act)
        self.pw = ConvBN(in_channels, out, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


@register_block("bottleneck")
class Bottleneck(nn.Module):
    """Two 3x3 `conv_bn` keeping the channels, plus the input when `shortcut`."""

    def __init__(self, in_channels: int, shortcut: bool = True, act: str | None = "silu") -> None:
        super().__init__()
        self.out_channels = in_channels
        self.cv1 = ConvBN(in_channels, in_channels, 3, act=act)
        self.cv2 = ConvBN(in_channels, in_channels, 3, act=act)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.shortcut else y


@register_block("csp")
class CSP(nn.Module):
    """A C2f-style CSP block: split a 1x1 conv in two halves, chain `n` bottlenecks on the second
    half, concatenate every intermediate map and fuse them with a 1x1 conv to `out` channels.

    `e` is the hidden width as a fraction of `out`.
    """

    def __init__(
        self,
        in_channels: int,
        out: int,
        n: int = 1,
        shortcut: bool = True,
        e: float = 0.5,
        act: str | None = "silu",
    ) -> None:
        super().__init__()
        self.out_channels = out
        hidden = max(1, int(out * e))
        self.cv1 = ConvBN(in_channels, 2 * hidden, act=act)
        self.blocks = nn.ModuleList(Bottleneck(hidden, shortcut, act) for _ in range(n))
        self.cv2 = ConvBN((2 + n) * hidden, out, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).chunk(2, dim=1))  # 2 x (B, hidden, H, W)
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))  # (B, (2 + n) hidden, H, W) -> (B, out, H, W)


@register_block("sppf")
class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: a 1x1 conv to half the channels, three chained k x k
    max-pools (stride 1), the four maps concatenated and fused by a 1x1 conv to `out`."""

    def __init__(self, in_channels: int, out: int, k: int = 5, act: str | None = "silu") -> None:
        super().__init__()
        self.out_channels = out
        hidden = max(1, in_channels // 2)
        self.cv1 = ConvBN(in_channels, hidden, act=act)
        self.pool = nn.MaxPool2d(k, 1, k // 2)
        self.cv2 = ConvBN(4 * hidden, out, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [self.cv1(x)]  # (B, hidden, H, W)
        for _ in range(3):
            maps.append(self.pool(maps[-1]))
        return self.cv2(torch.cat(maps, dim=1))  # (B, 4 hidden, H, W) -> (B, out, H, W)


@register_block("fpn_merge")
class FPNMerge(nn.Module):
    """FPN's top-down step: [coarse, lateral] -> lateral + the coarse map resized (nearest) to
    the lateral's height and width. Both need the same channels (give the laterals 1x1 convs);
    any size ratio works (the seed's levels go 1 -> 3 -> 5 -> 10 -> 20)."""

    multi_input = True

    def __init__(self, in_channels: list[int]) -> None:
        super().__init__()
        if len(in_channels) != 2 or in_channels[0] != in_channels[1]:
            raise ValueError(
                f"needs [coarse, lateral] with equal channels, got channels {in_channels}"
            )
        self.out_channels = in_channels[1]

    def forward(self, coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        resized = nn.functional.interpolate(coarse, size=lateral.shape[-2:], mode="nearest")
        return lateral + resized  # (B, C, H, W) of the lateral


def keras_initialise(model: nn.Module) -> None:
    """Keras initialisation: Glorot-uniform kernels, zero biases, BatchNorm weight 1, bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
