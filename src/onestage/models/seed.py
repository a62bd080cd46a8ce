"""The seed detector written by hand: the reference that `specs/seed.yaml` is tested against.

Reproduces the Keras model of the seed notebook (3,770,096 parameters for 15 classes, counting
BatchNorm running statistics as non-trainable parameters, as Keras does). Attribute names follow
the Keras layer names. `build_model("seed")` builds the spec, which has the same parameters,
state-dict keys, initial weights and outputs; this class stays as `seed-reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onestage.errors import OnestageError
from onestage.models.blocks import keras_initialise
from onestage.models.heads import head_priors
from onestage.models.registry import register_model
from onestage.priors.anchors import DEFAULT_ANCHOR_CONFIG, anchors_per_cell, resolve_anchor_config

# Filters of the six conv -> max-pool -> batch-norm blocks.
BLOCK_FILTERS = (16, 32, 64, 128, 256, 256)
# Head inputs: the levels the heads read, named by their feature map size at 320x320 input.
LEVEL_NAMES = ("20x20", "10x10", "5x5", "3x3", "1x1")


class Concatenate(nn.Module):
    """`torch.cat` along `dim` as a module, so that summaries see it as a layer."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, dim=self.dim)


@register_model("seed-reference")
class SeedModel(nn.Module):
    """The seed architecture: (B, 3, S, S) in [0, 1] -> (B, A, 4 + num_classes + 1).

    Per anchor: 4 box offsets, then num_classes + 1 logits (background last). At S = 320 the
    heads see 20x20, 10x10, 5x5, 3x3 and 1x1 maps with 4 anchors per cell: A = 2140, ordered
    level by level, pixel by pixel (row-major), then anchor within the pixel (Keras' NHWC reshape).
    """

    box_coding = "anchors"  # the head contract of `onestage.models.heads`
    reg_max = 0

    def __init__(
        self,
        num_classes: int,
        input_size: int = 320,
        bn_momentum: float = 0.01,
        anchors: str | None = None,
        score_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_size = input_size
        self.feature_sizes = self.feature_sizes_for(input_size)
        # The heads are as wide as the anchor config's first level asks; every level must agree.
        config = anchors or DEFAULT_ANCHOR_CONFIG
        self.anchors_per_cell = anchors_per_cell(resolve_anchor_config(config)[0])
        self.anchor_config, self.score_mode = head_priors(
            self, len(LEVEL_NAMES), config, score_mode
        )

        in_channels = 3
        for index, filters in enumerate(BLOCK_FILTERS, start=1):
            setattr(self, f"conv2d_{index}", nn.Conv2d(in_channels, filters, 3, padding=1))
            setattr(self, f"maxpool2d_{index}", nn.MaxPool2d(2))
            # Keras defaults: epsilon 1e-3, moving-average momentum 0.99 (torch: 1 - 0.99). Such
            # slow running averages lag behind fast-changing weights in short runs; recipes may
            # pass a larger `bn_momentum` (torch's default is 0.1).
            batchnorm = nn.BatchNorm2d(filters, eps=1e-3, momentum=bn_momentum)
            setattr(self, f"batchnorm_{index}", batchnorm)
            in_channels = filters
        self.conv2d_7 = nn.Conv2d(256, 256, 3)
        self.conv2d_8 = nn.Conv2d(256, 512, 3)

        logits = num_classes + 1
        for level, channels in zip(LEVEL_NAMES, (128, 256, 256, 256, 512), strict=True):
            box_head = nn.Conv2d(channels, self.anchors_per_cell * 4, 3, padding=1)
            class_head = nn.Conv2d(channels, self.anchors_per_cell * logits, 3, padding=1)
            setattr(self, f"box_{level}", box_head)
            setattr(self, f"class_{level}", class_head)
        self.box_out = Concatenate(dim=1)
        self.class_out = Concatenate(dim=1)
        self.final_output = Concatenate(dim=2)
        self.reset_parameters()

    @staticmethod
    def feature_sizes_for(input_size: int) -> tuple[tuple[int, int], ...]:
        """(height, width) of the five head inputs for a square `input_size` image."""
        sizes = []
        size = input_size
        for _ in BLOCK_FILTERS:
            size //= 2
            sizes.append(size)
        sizes += [size - 2, size - 4]  # conv2d_7 and conv2d_8 are 'valid' 3x3 convolutions
        if sizes[-1] < 1:
            raise OnestageError(f"input size {input_size} is too small for the seed model")
        return tuple((s, s) for s in sizes[3:])

    @property
    def backbone_layers(self) -> tuple[str, ...]:
        """The conv -> max-pool -> BatchNorm stack and the two convs after it, the backbone of
        `specs/seed.yaml` (what `freeze=backbone` keeps fixed)."""
        blocks = range(1, len(BLOCK_FILTERS) + 1)
        stack = [f"{kind}_{i}" for i in blocks for kind in ("conv2d", "maxpool2d", "batchnorm")]
        return (*stack, "conv2d_7", "conv2d_8")

    def reset_parameters(self) -> None:
        """Keras initialisation (`blocks.keras_initialise`)."""
        keras_initialise(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) float in [0, 1] -> (B, A, 4 + num_classes + 1)."""
        x = images
        pooled = []
        for index in range(1, len(BLOCK_FILTERS) + 1):
            # maxpool(relu(conv)) computed as relu(maxpool(conv)): the same values and gradients
            # (both are monotone), with the ReLU on a map 4x smaller.
            x = getattr(self, f"maxpool2d_{index}")(getattr(self, f"conv2d_{index}")(x))
            x = F.relu(x, inplace=True)
            pooled.append(x)
            x = getattr(self, f"batchnorm_{index}")(x)
        conv_7 = F.relu(self.conv2d_7(x))  # (B, 256, 3, 3)
        conv_8 = F.relu(self.conv2d_8(conv_7))  # (B, 512, 1, 1)
        # The heads read the pooled maps BEFORE their BatchNorm, as in the seed.
        features = (*pooled[3:], conv_7, conv_8)

        boxes, classes = [], []
        for level, feature in zip(LEVEL_NAMES, features, strict=True):
            boxes.append(self._per_anchor(getattr(self, f"box_{level}")(feature), 4))
            classes.append(
                self._per_anchor(getattr(self, f"class_{level}")(feature), self.num_classes + 1)
            )
        box_out = self.box_out(*boxes)  # (B, A, 4)
        class_out = self.class_out(*classes)  # (B, A, num_classes + 1)
        return self.final_output(box_out, class_out)  # (B, A, 4 + num_classes + 1)

    def _per_anchor(self, head_output: torch.Tensor, values: int) -> torch.Tensor:
        """(B, anchors * values, H, W) -> (B, H * W * anchors, values), pixel-major."""
        batch = head_output.shape[0]
        return head_output.permute(0, 2, 3, 1).reshape(batch, -1, values)
