"""What the reliability tests share: the tiny training run they kill and their report file."""

from __future__ import annotations

import json
import os

# Five levels of four anchors (the seed anchors' layout) on a 32-pixel input: a fast model.
TINY_SPEC = """\
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
TINY_TRAIN = {
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


def report(test: str, figures: dict[str, object]) -> None:
    """Append the figures as one JSON line to $ONESTAGE_RELIABILITY_REPORT, when it is set."""
    path = os.environ.get("ONESTAGE_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"test": test, **figures}) + "\n")
