"""The input size a dataset-folder run takes from its images (imgsz=null)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import one_box_yolo_folder
from onestage.config import make_config
from onestage.data.formats import read_dataset
from onestage.data.icons import SEED_CLASS_NAMES
from onestage.data.synthetic import SEED_SIZE_RANGE
from onestage.engine import training_data
from onestage.engine.progress import SilentProgress
from onestage.engine.trainer import Trainer
from onestage.engine.training_data import (
    input_size_from_data,
    read_train_folder,
    synthetic_config,
    validation_set,
)
from onestage.errors import OnestageError


def test_the_size_is_the_median_longer_side_rounded_up_to_32_within_320_to_640(tmp_path: Path):
    def size_of(name: str, sides: list[tuple[int, int]]) -> int:
        return input_size_from_data(read_train_folder(one_box_yolo_folder(tmp_path / name, sides)))

    assert size_of("a", [(300, 200), (400, 500), (700, 90)]) == 512  # median 500, up to 512
    assert size_of("b", [(448, 448)] * 3) == 448
    assert size_of("c", [(100, 80)] * 2) == 320
    assert size_of("d", [(1000, 900)] * 2) == 640


def test_a_folder_without_train_images_is_a_one_line_error(tmp_path: Path):
    folder = one_box_yolo_folder(tmp_path / "a", [(64, 64)])
    (folder / "data.yaml").write_text("path: .\nval: images/train\nnames: [thing]\n")
    with pytest.raises(OnestageError) as error:
        read_train_folder(folder)
    assert str(error.value) == f"{folder}: no 'train' split; found val"


def test_a_run_without_a_size_takes_the_datas_and_records_it(tmp_path: Path, monkeypatch):
    data = one_box_yolo_folder(tmp_path / "data", [(400, 300), (420, 300), (380, 200)])
    config = make_config(
        overrides={"data": str(data), "epochs": 1, "steps": 1, "batch": 2, "val_every": 0,
                   "mosaic": 0.0, "project": str(tmp_path / "runs"), "amp": "none"}
    )  # fmt: skip
    assert config.imgsz is None  # the dataset defaults leave it to the data
    messages: list[str] = []

    class Notes(SilentProgress):
        def message(self, text: str) -> None:
            messages.append(text)

    reads = []
    monkeypatch.setattr(
        training_data, "read_dataset", lambda *a, **k: reads.append(a) or read_dataset(*a, **k)
    )
    trainer = Trainer(config, Notes())
    assert len(reads) == 1  # the labels are read once, for the size and the training set
    assert trainer.config.imgsz == 416 and trainer.model.input_size == 416
    assert f"input size 416 px, from the images of {data}" in messages
    result = trainer.run()
    saved = make_config(yaml_path=result.run_dir / "config.yaml")
    assert saved.imgsz == 416


def test_a_size_from_the_data_needs_a_dataset() -> None:
    with pytest.raises(OnestageError) as error:
        make_config(overrides={"imgsz": None})
    assert (
        str(error.value) == "imgsz=null (the input size from the data) needs a dataset (data=DIR)"
    )


def test_synthetic_sizes_set_the_icon_sides_of_training_and_validation_images():
    config = make_config(overrides={"imgsz": 200, "synthetic_sizes": "0.1-0.2", "val_images": 3})
    assert synthetic_config(config).size_limits_px == (20, 40)
    sides = [
        box[2] - box[0]
        for truth in validation_set(config, SEED_CLASS_NAMES, None).ground_truths
        for box in truth.boxes_xyxy
    ]
    assert sides and all(side < 40 for side in sides)
    assert synthetic_config(make_config()).size_range == SEED_SIZE_RANGE
    with pytest.raises(OnestageError, match="size range"):
        synthetic_config(make_config(overrides={"synthetic_sizes": "0.3-0.2"}))
