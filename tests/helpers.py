"""What tests in more than one file share (fixtures stay in the conftest.py files):

- images: flat and noise PNG files, image bytes, PNG headers that declare any size (bombs), the
  bytes of every file in a folder;
- metrics inputs: `gt` and `det`, one image's ground truth and detections;
- full-height strip boxes, the errors a call raises, a seeded conv + BatchNorm model;
- small model specs, each named for what it is, the README's user block, and the tiny
  training run the reliability tests kill;
- `onestage` run from a test, in a subprocess or in this process;
- the serve tests' synthetic scenes and a free port.

`from helpers import ...` works from every test: tests/ has no __init__.py, so pytest puts it on
sys.path (each folder below it is a package). torch and the model code are imported inside the
functions that need them, so a test that does not use them does not pay for them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from onestage.cli import main as onestage_main
from onestage.detections import ImageDetections
from onestage.errors import OnestageError
from onestage.metrics import ImageGroundTruth

if TYPE_CHECKING:
    import torch

    from onestage.engine.evaluator import EvalSet

# Images -------------------------------------------------------------------------------------------


def write_flat_png(path: Path, width: int = 32, height: int = 24) -> Path:
    """A width x height RGB PNG of one flat colour at `path` (its folders made); `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 30)).save(path)
    return path


def one_box_yolo_folder(root: Path, sizes: list[tuple[int, int]]) -> Path:
    """A YOLO folder whose train split has one flat image per (width, height) in `sizes`, each
    with one centred box of class "thing"; `root`."""
    for index, (width, height) in enumerate(sizes):
        write_flat_png(root / "images" / "train" / f"{index}.png", width, height)
        label = root / "labels" / "train" / f"{index}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [thing]\n")
    return root


def write_noise_png(path: Path, width: int = 40, height: int = 40) -> Path:
    """A width x height RGB PNG of Gaussian noise at `path` (its folders made); `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise((width, height), 40).convert("RGB").save(path)
    return path


def encode(image: np.ndarray | Image.Image, image_format: str = "PNG") -> bytes:
    """`image` (an array or a Pillow image) encoded as `image_format` bytes."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, image_format)
    return buffer.getvalue()


def png_header(width: int, height: int, mode: int = 2, body: bytes = b"\0" * 64) -> bytes:
    """A PNG declaring width x height (colour type `mode`, 2 = RGB; 8 bits) with a valid IHDR
    and `body` as its only, compressed, image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(body))


def bomb_png(side: int = 30_000) -> bytes:
    """The header of a side x side RGB PNG (900M pixels at the default): a decompression bomb's
    first bytes, which is all a decoder reads before it must refuse."""
    return png_header(side, side)


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by its path relative to `root`: its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# Metrics inputs -----------------------------------------------------------------------------------


def gt(boxes, class_ids, difficult=None) -> ImageGroundTruth:
    """One image's ground truth; no object difficult unless `difficult` says so."""
    difficult = [False] * len(class_ids) if difficult is None else difficult
    return ImageGroundTruth(boxes, class_ids, difficult)


def det(boxes, scores, class_ids) -> ImageDetections:
    """One image's detections."""
    return ImageDetections(boxes, scores, class_ids)


# Boxes, errors, models --------------------------------------------------------------------------


def strips(*intervals: tuple[float, float]) -> torch.Tensor:
    """Full-height boxes [x0, 0, x1, 1]: their IoU is the IoU of the x intervals, and their
    centres all lie at y = 0.5, so distances between centres are distances along x."""
    import torch

    return torch.tensor([[x0, 0.0, x1, 1.0] for x0, x1 in intervals])


def error_of(action: Callable[[], object]) -> str:
    """The message of the OnestageError that `action()` raises (the test fails if none)."""
    with pytest.raises(OnestageError) as raised:
        action()
    return str(raised.value)


def seeded_conv_bn() -> torch.nn.Module:
    """Conv2d(3, 4, 3) then BatchNorm2d(4), from torch seed 0: a small model with buffers."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


# Specs --------------------------------------------------------------------------------------------

# A detector that builds in milliseconds: two stride-2 convolutions and an anchor-free head on a
# 32-pixel input (the fuzz tests' model).
TINY_ANCHOR_FREE_SPEC = """\
name: fuzz-tiny
input_size: 32
backbone:
  - {name: stem, block: conv_bn, out: 8, k: 3, s: 2, act: relu}
  - {name: down, block: conv_bn, out: 8, k: 3, s: 2, act: relu}
head:
  - {name: detect, block: decoupled_head, from: [down], reg_max: 4, box_width: 8, class_width: 8}
"""

# Five levels of four anchors (the seed anchors' layout) on a 32-pixel input: a fast anchor-based
# model (the reliability tests' training run).
TINY_FIVE_LEVEL_SSD_SPEC = """\
name: tiny
input_size: 32
backbone:
  - {name: l16, block: conv, out: 8, k: 3, s: 2}
  - {name: l8, block: conv, out: 8, k: 3, s: 2}
  - {name: l4, block: conv, out: 8, k: 3, s: 2}
  - {name: l2, block: conv, out: 8, k: 3, s: 2}
  - {name: l1, block: conv, out: 8, k: 3, s: 2}
head:
  - {name: box16, block: ssd_box, from: l16, anchors: 4}
  - {name: cls16, block: ssd_class, from: l16, anchors: 4}
  - {name: box8, block: ssd_box, from: l8, anchors: 4}
  - {name: cls8, block: ssd_class, from: l8, anchors: 4}
  - {name: box4, block: ssd_box, from: l4, anchors: 4}
  - {name: cls4, block: ssd_class, from: l4, anchors: 4}
  - {name: box2, block: ssd_box, from: l2, anchors: 4}
  - {name: cls2, block: ssd_class, from: l2, anchors: 4}
  - {name: box1, block: ssd_box, from: l1, anchors: 4}
  - {name: cls1, block: ssd_class, from: l1, anchors: 4}
  - name: detect
    block: ssd_output
    from: [box16, cls16, box8, cls8, box4, cls4, box2, cls2, box1, cls1]
"""

# The training overrides of the tiny run (TINY_FIVE_LEVEL_SSD_SPEC) the reliability tests kill.
TINY_TRAINING_OVERRIDES = {
    "epochs": 12,
    "steps": 2,
    "batch": 2,
    "amp": "none",  # the same arithmetic on every CPU
    "imgsz": 32,
    "threads": 1,
    "val_every": 3,
    "val_images": 2,
    "synthetic_objects": "1",
    "exist_ok": True,
}

# The README's worked example, shared by the tests of specs, plugins and the command line: a user
# block in a plugin file, a 3x3 convolution whose output is doubled (its file registers it) ...
USER_BLOCK_PLUGIN = """
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

# ... and a spec that uses it: five levels (20, 10, 5, 3, 1 at 320 px) with 4 anchors per cell, as
# the seed anchors expect.
USER_BLOCK_SPEC = """
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


def write_user_block_spec(folder: Path, text: str = USER_BLOCK_SPEC) -> Path:
    """`folder`/tiny.yaml holding `text`, beside the plugin it imports (blocks/mine.py)."""
    (folder / "blocks").mkdir(parents=True, exist_ok=True)
    (folder / "blocks" / "mine.py").write_text(USER_BLOCK_PLUGIN)
    (folder / "tiny.yaml").write_text(text)
    return folder / "tiny.yaml"


def reliability_report(test: str, figures: dict[str, object]) -> None:
    """Append the figures as one JSON line to $ONESTAGE_RELIABILITY_REPORT, when it is set."""
    path = os.environ.get("ONESTAGE_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"test": test, **figures}) + "\n")


# Running `onestage` ------------------------------------------------------------------------------
# In a subprocess (the real entry point, as a user runs it) or in this process (no interpreter
# start-up and imports, about 3 s less per call on two cores; monkeypatches apply). Both give a
# `subprocess.CompletedProcess` with the exit code and output.


def run_onestage(
    *arguments: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m onestage ARGUMENTS` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "onestage", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def run_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *arguments: str
) -> subprocess.CompletedProcess:
    """`onestage ARGUMENTS` through its entry point in this process. The logging set-up `main`
    makes is undone after the test; an exception that is not a clean exit fails the test."""
    library_log = logging.getLogger("onestage")
    monkeypatch.setattr(library_log, "handlers", list(library_log.handlers))
    monkeypatch.setattr(library_log, "propagate", library_log.propagate)
    monkeypatch.setattr(sys, "argv", ["onestage", *arguments])
    capsys.readouterr()
    code = 0
    try:
        onestage_main()
    except SystemExit as exit_info:
        code = _exit_code(exit_info.code)
    output = capsys.readouterr()
    return subprocess.CompletedProcess(["onestage", *arguments], code, output.out, output.err)


def _exit_code(value: object) -> int:
    """The exit status of a process that called `sys.exit(value)`."""
    if value is None:
        return 0
    return value if isinstance(value, int) else 1


# Serving ------------------------------------------------------------------------------------------

SCENES = 12  # scenes per class list and size; each new seed would cost a texture pool (1.5 s)
SERVE_BODY_LIMIT = 2 * 1024 * 1024  # the request body limit of the apps the serve tests make


def scene(class_names: tuple[str, ...], index: int, size: int = 320) -> np.ndarray:
    """Scene `index` (< SCENES) of a fixed synthetic set: a (size, size, 3) uint8 RGB image with
    4 of `class_names`' icons on it."""
    return _scenes(tuple(class_names), size).load_image(index)


@lru_cache(maxsize=4)
def _scenes(class_names: tuple[str, ...], size: int) -> EvalSet:
    from onestage.engine.evaluator import synthetic_eval_set

    return synthetic_eval_set(class_names, SCENES, size=size)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
