"""Every head type can learn: a few hundred steps on two images recover their boxes at IoU >= 0.9.

The anchor-based heads: `seed` (separate SSD heads per level), `seed-fpn` (FPN neck, one shared
head) and `nano` (depthwise-separable backbone, shared head); the anchor-free decoupled head:
`csp-n` (TAL, BCE, CIoU, DFL). Each model's own recipe (the `fast` schedule) for 100 steps on a
fixed set of two synthetic images with two objects each; the boxes are read back through the
saved weights file (`Detector.load`), so the file alone rebuilds and decodes every head.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from onestage.boxes import box_iou
from onestage.config import make_config
from onestage.engine.predictor import Detector
from onestage.engine.trainer import Trainer


@pytest.mark.parametrize("model", ["seed", "seed-fpn", "nano", "csp-n"])
def test_a_head_overfits_two_images(tmp_path: Path, model: str):
    overrides = {
        "train_images": 2,
        "synthetic_objects": "2",
        "batch": 2,
        "steps": 100,
        "epochs": 1,
        "warmup_steps": 10,
        "hflip": 0.0,
        "amp": "none",
        "channels_last": False,
        "val_every": 0,
        "threads": 2,
        "project": str(tmp_path),
        "name": model,
    }
    trainer = Trainer(make_config("fast" if model == "seed" else model, overrides=overrides))
    result = trainer.run()
    detector = Detector.load(result.run_dir / "weights" / "last.safetensors", "cpu")
    for index in range(2):
        image, boxes_xyxy, class_ids = trainer.train_set[index]  # boxes normalised xyxy
        found = detector.detect([np.ascontiguousarray(image.permute(1, 2, 0).numpy())])[0]
        for box, class_id in zip(boxes_xyxy * 320, class_ids.tolist(), strict=True):
            same = found.class_ids == class_id
            assert same.any(), (model, index, class_id)
            candidates = torch.from_numpy(found.boxes_xyxy[same]).float()  # pixel xyxy
            assert box_iou(candidates, box[None]).max() >= 0.9, (model, index, class_id)
