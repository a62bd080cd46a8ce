"""Detection heads, the last layer of a spec: anchor-based SSD heads and an anchor-free head.

Every head is a block (registered in `BLOCKS`, `multi_input`) that reads one feature map per
pyramid level, largest first, and lays its output out per prior: (B, A, C_out), priors level by
level, cell by cell (row-major), then anchor within the cell. It tells the rest of onestage how
to read that output through four attributes:

- `box_coding`: "anchors" (SSD offsets against anchors, `priors.offsets.decode_offsets`: 4
  values, then num_classes + 1 class logits with background LAST) or "points" (anchor-free:
  distances from each cell's centre to the box sides, then num_classes sigmoid logits, no
  background);
- `anchors_per_cell`: anchors per cell ("points": 1);
- `reg_max`: "points" only: each distance is a distribution over the bins 0..reg_max (DFL,
  4 x (reg_max + 1) values), or, with 0, one value per side read through softplus;
- `feature_sizes_of(input_shapes)`: the (height, width) of each level from its inputs' shapes.

A model declares, beside its head's attributes, the priors and the score mode it was built with
(`head_priors`, at build time): `anchor_config`, the anchor config (`priors.anchors`) whose
anchors per cell and levels the anchor head's width and inputs must match (None for points),
and `score_mode`, "softmax" (background last) or "sigmoid" (anchor-free heads, and anchor heads
trained with the focal loss). `onestage.priors.codings` turns all of it into priors and
decoders; the trainer, the predictor, the evaluator and export all go through it. A head of
one's own keeps the same attributes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from onestage.errors import OnestageError
from onestage.models.blocks import Conv, ConvBN, check_activation, register_block
from onestage.priors.anchors import DEFAULT_ANCHOR_CONFIG, check_anchor_head
from onestage.priors.numpy_codings import (
    BOX_CODINGS,
    check_score_mode,
    default_score_mode,
)

# The prior probability of an object the anchor-free head's class logits start from (as
# RetinaNet's): almost every cell is background at first, so the loss starts small. With more
# than 1 / CLASS_PRIOR classes each starts at 1 / K instead: a cell's prior mass stays <= 1.
CLASS_PRIOR = 0.01


def per_anchor(head_output: torch.Tensor, values: int) -> torch.Tensor:
    """(B, anchors * values, H, W) -> (B, H * W * anchors, values), pixel-major (Keras' NHWC)."""
    return head_output.permute(0, 2, 3, 1).reshape(head_output.shape[0], -1, values)


def level_sizes(input_shapes: list[tuple[int, ...]]) -> tuple[tuple[int, int], ...]:
    """(height, width) of each (B, C, H, W) input shape."""
    return tuple((shape[-2], shape[-1]) for shape in input_shapes)


@register_block("ssd_box")
class SSDBox(Conv):
    """Box offsets of one level: a k x k conv to `anchors` x 4 channels."""

    def __init__(self, in_channels: int, anchors: int, k: int = 3) -> None:
        super().__init__(in_channels, anchors * 4, k)


@register_block("ssd_class")
class SSDClass(Conv):
    """Class logits of one level: a k x k conv to `anchors` x (num_classes + 1) channels."""

    def __init__(self, in_channels: int, num_classes: int, anchors: int, k: int = 3) -> None:
        super().__init__(in_channels, anchors * (num_classes + 1), k)


@register_block("ssd_output")
class SSDOutput(nn.Module):
    """The SSD head's output: reads (box, class) map pairs, one pair per level, largest level
    first, and lays them out per anchor: (B, A, 4 + num_classes + 1), the 4 box offsets then the
    class logits with background last. `anchors_per_cell` is read from the box maps' channels.
    """

    multi_input = True
    box_coding = "anchors"
    reg_max = 0

    def __init__(self, in_channels: list[int], num_classes: int) -> None:
        super().__init__()
        if len(in_channels) % 2:
            raise ValueError(f"needs (box, class) input pairs, got {len(in_channels)} inputs")
        self.num_classes = num_classes
        self.anchors_per_cell = in_channels[0] // 4
        self.out_channels = 4 + num_classes + 1
        for level, (box, logits) in enumerate(
            zip(in_channels[::2], in_channels[1::2], strict=True)
        ):
            expected = (4 * self.anchors_per_cell, self.anchors_per_cell * (num_classes + 1))
            if self.anchors_per_cell < 1 or (box, logits) != expected:
                raise ValueError(
                    f"level {level} has {box} box and {logits} class channels; "
                    f"expected 4 x anchors and anchors x (num_classes + 1), "
                    f"the same anchors on every level"
                )

    def feature_sizes_of(self, input_shapes: list[tuple[int, ...]]) -> tuple[tuple[int, int], ...]:
        """(height, width) of each level, from the shapes of this layer's inputs."""
        return level_sizes(input_shapes[::2])

    def forward(self, *maps: torch.Tensor) -> torch.Tensor:
        boxes = torch.cat([per_anchor(m, 4) for m in maps[::2]], dim=1)  # (B, A, 4)
        logits = self.num_classes + 1
        classes = torch.cat([per_anchor(m, logits) for m in maps[1::2]], dim=1)  # (B, A, K + 1)
        return torch.cat([boxes, classes], dim=2)  # (B, A, 4 + K + 1)


@register_block("ssd_shared_head")
class SSDSharedHead(nn.Module):
    """An SSD head shared by every level (as RetinaNet's): the same `convs` 3x3 conv + ReLU
    layers, then the same box and class 3x3 convs, run on each input level (largest first, all
    with the same channels). Output (B, A, 4 + num_classes + 1), laid out as `ssd_output`."""

    multi_input = True
    box_coding = "anchors"
    reg_max = 0

    def __init__(
        self, in_channels: list[int], num_classes: int, anchors: int, convs: int = 1
    ) -> None:
        super().__init__()
        if len(set(in_channels)) != 1:
            raise ValueError(f"every level needs the same channels, got {in_channels}")
        channels = in_channels[0]
        self.num_classes = num_classes
        self.anchors_per_cell = anchors
        self.out_channels = 4 + num_classes + 1
        tower: list[nn.Module] = []
        for _ in range(convs):
            tower += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.tower = nn.Sequential(*tower)
        self.box = nn.Conv2d(channels, anchors * 4, 3, padding=1)
        self.classes = nn.Conv2d(channels, anchors * (num_classes + 1), 3, padding=1)

    def feature_sizes_of(self, input_shapes: list[tuple[int, ...]]) -> tuple[tuple[int, int], ...]:
        """(height, width) of each level, from the shapes of this layer's inputs."""
        return level_sizes(input_shapes)

    def forward(self, *levels: torch.Tensor) -> torch.Tensor:
        features = [self.tower(level) for level in levels]
        boxes = torch.cat([per_anchor(self.box(f), 4) for f in features], dim=1)  # (B, A, 4)
        logits = self.num_classes + 1
        classes = torch.cat([per_anchor(self.classes(f), logits) for f in features], dim=1)
        return torch.cat([boxes, classes], dim=2)  # (B, A, 4 + K + 1)


@register_block("decoupled_head")
class DecoupledHead(nn.Module):
    """YOLOv8-style anchor-free head: one prior point per cell, a box branch and a class branch.

    Per level (its own weights, as YOLOv8's), each branch is two 3x3 `conv_bn` then a 1x1 conv:
    the box branch to 4 x (reg_max + 1) values (the distances left, top, right, bottom, each as
    reg_max + 1 bin logits; with reg_max 0 one value per side), the class branch to num_classes
    logits. Output (B, A, 4 (reg_max + 1) + num_classes), A = the cells of every level.
    Branch widths default to YOLOv8's: box max(16, C / 4, 4 reg_max), class max(C, min(K, 100)),
    C the first level's channels. Box biases start at 1, class biases at the logit of
    CLASS_PRIOR.
    """

    multi_input = True
    box_coding = "points"
    anchors_per_cell = 1

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        reg_max: int = 16,
        box_width: int | None = None,
        class_width: int | None = None,
        act: str | None = "silu",
    ) -> None:
        super().__init__()
        if reg_max < 0:
            raise ValueError(f"reg_max must be 0 (no distribution) or more, got {reg_max}")
        check_activation(act)
        self.num_classes = num_classes
        self.reg_max = reg_max
        box_values = 4 * (reg_max + 1)
        self.out_channels = box_values + num_classes
        box_width = box_width or max(16, in_channels[0] // 4, 4 * reg_max)
        class_width = class_width or max(in_channels[0], min(num_classes, 100))
        self.box_branches = nn.ModuleList(
            self._branch(channels, box_width, box_values, act) for channels in in_channels
        )
        self.class_branches = nn.ModuleList(
            self._branch(channels, class_width, num_classes, act) for channels in in_channels
        )
        self.reset_biases()

    @staticmethod
    def _branch(channels: int, width: int, values: int, act: str | None) -> nn.Sequential:
        return nn.Sequential(
            ConvBN(channels, width, 3, act=act),
            ConvBN(width, width, 3, act=act),
            nn.Conv2d(width, values, 1),
        )

    def reset_biases(self) -> None:
        """Box biases 1 (YOLOv8's start), class biases log(p / (1 - p)),
        p = min(CLASS_PRIOR, 1 / K) for K classes."""
        for branch in self.box_branches:
            nn.init.constant_(branch[-1].bias, 1.0)
        for branch in self.class_branches:
            prior = min(CLASS_PRIOR, 1 / branch[-1].out_channels)
            nn.init.constant_(branch[-1].bias, math.log(prior / (1 - prior)))

    def feature_sizes_of(self, input_shapes: list[tuple[int, ...]]) -> tuple[tuple[int, int], ...]:
        """(height, width) of each level, from the shapes of this layer's inputs."""
        return level_sizes(input_shapes)

    def forward(self, *levels: torch.Tensor) -> torch.Tensor:
        if len(levels) != len(self.box_branches):
            raise ValueError(f"built for {len(self.box_branches)} levels, got {len(levels)}")
        outputs = [
            per_anchor(torch.cat((box(level), classes(level)), dim=1), self.out_channels)
            for level, box, classes in zip(
                levels, self.box_branches, self.class_branches, strict=True
            )
        ]
        return torch.cat(outputs, dim=1)  # (B, A, 4 (reg_max + 1) + K)


@register_block("dual_head")
class DualDecoupledHead(DecoupledHead):
    """An NMS-free head (YOLOv10's consistent dual assignment): a `DecoupledHead`, trained
    one-to-many (TAL's top 10 priors per object: the training signal), and a twin of its
    branches, trained one-to-one (the same matching metric's top prior), on the same levels
    (detached: the one-to-one loss does not reach the features). Training gives both outputs,
    the one-to-many priors then the one-to-one ones, (B, 2A, values); evaluation and export give
    the one-to-one output (B, A, values) alone, whose detections need no NMS (`one_to_one`:
    post-processing keeps the top scores)."""

    one_to_one = True

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        reg_max: int = 16,
        box_width: int | None = None,
        class_width: int | None = None,
        act: str | None = "silu",
    ) -> None:
        super().__init__(in_channels, num_classes, reg_max, box_width, class_width, act)
        self.one_to_one_head = DecoupledHead(
            in_channels, num_classes, reg_max, box_width, class_width, act
        )

    def forward(self, *levels: torch.Tensor) -> torch.Tensor:
        one_to_one = self.one_to_one_head(*(level.detach() for level in levels))
        if not self.training:
            return one_to_one
        return torch.cat((super().forward(*levels), one_to_one), dim=1)  # (B, 2A, values)


HEAD_ATTRIBUTES = ("box_coding", "anchors_per_cell", "reg_max", "feature_sizes_of")


def head_priors(
    head: nn.Module, levels: int, anchors: str | None = None, score_mode: str | None = None
) -> tuple[str | None, str]:
    """The (anchor_config, score_mode) of a model built on `head` with `levels` levels.

    `score_mode` defaults to softmax for anchors and sigmoid for points; a head that cannot
    score that way is a one-line error. An anchor head built for the anchor config `anchors`
    must fit it (anchors per cell and levels), else a one-line error; built without naming one,
    it takes `DEFAULT_ANCHOR_CONFIG` where that fits and declares none (None: it cannot be
    trained or decoded) where it does not. Anchor-free heads take no anchor config."""
    score_mode = score_mode or default_score_mode(head.box_coding)
    check_score_mode(head.box_coding, score_mode)
    if head.box_coding != "anchors":
        return None, score_mode
    try:
        check_anchor_head(anchors or DEFAULT_ANCHOR_CONFIG, int(head.anchors_per_cell), levels)
    except OnestageError:
        if anchors is not None:
            raise
        return None, score_mode
    return anchors or DEFAULT_ANCHOR_CONFIG, score_mode


def is_head(module: nn.Module) -> bool:
    """Whether a layer keeps the head contract (see the module docstring)."""
    return all(hasattr(module, name) for name in HEAD_ATTRIBUTES) and (
        module.box_coding in BOX_CODINGS
    )
