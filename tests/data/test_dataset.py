"""Torch datasets and collation: what the trainer receives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from onestage.data.dataset import RecordDataset, collate_detections
from onestage.data.records import ImageRecord


def test_difficult_objects_reach_training_as_ignored_class_ids(tmp_path: Path):
    path = tmp_path / "a.png"
    Image.new("RGB", (200, 100)).save(path)
    record = ImageRecord(
        image_path=path,
        width=200,
        height=100,
        boxes_xyxy=np.array([[0, 0, 100, 50], [100, 50, 200, 100]], dtype=np.float64),
        class_ids=np.array([1, 0]),
        class_names=("a", "b"),
        difficult=np.array([False, True]),
    )
    image, boxes, class_ids = RecordDataset([record], size=64)[0]
    assert image.shape == (3, 64, 64)
    assert class_ids.tolist() == [1, -2]  # IGNORED_CLASS_ID for the difficult one
    torch.testing.assert_close(boxes, torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]))
    _, _, batch_ids = collate_detections(
        [(image, boxes, class_ids), (image, boxes[:1], class_ids[:1])]
    )
    assert batch_ids.tolist() == [[1, -2], [1, -1]]  # -1 pads
