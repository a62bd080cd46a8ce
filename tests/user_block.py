"""A user block in a plugin file, and a spec that uses it: the worked example of the README,
shared by the tests of specs, plugins and the command line."""

from __future__ import annotations

from pathlib import Path

# A user block: a 3x3 convolution whose output is doubled (its file registers it).
PLUGIN = """
from torch import nn

from onestage.models import register_block


@register_block("my_double_conv")
class DoubleConv(nn.Conv2d):
    def __init__(self, in_channels: int, out: int) -> None:
        super().__init__(in_channels, out, 3, padding=1)
        self.out_channels = out

    def forward(self, x):
        return 2 * super().forward(x)
"""

# Five levels (20, 10, 5, 3, 1 at 320 px) with 4 anchors per cell, as the seed anchors expect.
SPEC = """
name: tiny-user
input_size: 320
imports: [blocks/mine.py]
backbone:
  - {name: stem, block: conv, out: 8, k: 3, s: 4, act: relu}      # 80x80
  - {name: down1, block: conv, out: 8, k: 3, s: 2, act: relu}     # 40x40
  - {name: down2, block: conv, out: 16, k: 3, s: 2, act: relu}    # 20x20
  - {name: mine, block: my_double_conv, out: 16}                  # 20x20, the user's block
  - {name: down3, block: conv, out: 16, k: 3, s: 2, act: relu}    # 10x10
  - {name: down4, block: conv, out: 16, k: 3, s: 2, act: relu}    # 5x5
  - {name: down5, block: conv, out: 16, k: 3, p: valid, act: relu}  # 3x3
  - {name: down6, block: conv, out: 16, k: 3, p: valid, act: relu}  # 1x1
head:
  - {name: box_a, block: ssd_box, from: mine, anchors: 4}
  - {name: cls_a, block: ssd_class, from: mine, anchors: 4}
  - {name: box_b, block: ssd_box, from: down3, anchors: 4}
  - {name: cls_b, block: ssd_class, from: down3, anchors: 4}
  - {name: box_c, block: ssd_box, from: down4, anchors: 4}
  - {name: cls_c, block: ssd_class, from: down4, anchors: 4}
  - {name: box_d, block: ssd_box, from: down5, anchors: 4}
  - {name: cls_d, block: ssd_class, from: down5, anchors: 4}
  - {name: box_e, block: ssd_box, from: down6, anchors: 4}
  - {name: cls_e, block: ssd_class, from: down6, anchors: 4}
  - name: out
    block: ssd_output
    from: [box_a, cls_a, box_b, cls_b, box_c, cls_c, box_d, cls_d, box_e, cls_e]
"""


def write_spec(folder: Path, text: str = SPEC) -> Path:
    (folder / "blocks").mkdir(parents=True, exist_ok=True)
    (folder / "blocks" / "mine.py").write_text(PLUGIN)
    (folder / "tiny.yaml").write_text(text)
    return folder / "tiny.yaml"
