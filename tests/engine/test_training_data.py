"""The input size a dataset-folder run takes from its images (imgsz=null)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import one_box_yolo_folder
from onestage.config import make_config
from onestage.engine.progress import SilentProgress
from onestage.engine.trainer import Trainer
from onestage.engine.training_data import input_size_from_data
from onestage.errors import OnestageError


def test_the_size_is_the_median_longer_side_rounded_up_to_32_within_320_to_640(tmp_path: Path):
    # longer sides 300, 500, 700: median 500, rounded up to 512
    assert (
        input_size_from_data(
            one_box_yolo_folder(tmp_path / "a", [(300, 200), (400, 500), (700, 90)])
        )
        == 512
    )
    assert input_size_from_data(one_box_yolo_folder(tmp_path / "b", [(448, 448)] * 3)) == 448
    assert input_size_from_data(one_box_yolo_folder(tmp_path / "c", [(100, 80)] * 2)) == 320
    assert input_size_from_data(one_box_yolo_folder(tmp_path / "d", [(1000, 900)] * 2)) == 640


def test_a_run_without_a_size_takes_the_datas_and_records_it(tmp_path: Path):
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

    trainer = Trainer(config, Notes())
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
