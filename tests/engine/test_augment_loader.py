"""Augmentation from the config to the loader: defaults keep the plain training set, the
pipeline's batches do not depend on the worker count, keys are range-checked, `data show
--augment` draws what training sees, and cache=ram stays within its budget."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import TINY_ANCHOR_FREE_SPEC, error_of, run_in_process
from onestage.config import RECIPES, TrainConfig, make_config
from onestage.data import dataset as dataset_module
from onestage.data.augmented import AugmentedDataset, SampleKey
from onestage.data.dataset import RecordDataset
from onestage.data.synthesize import synthesize_dataset
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.engine.distributed import DistContext
from onestage.engine.sampler import EpochSampler
from onestage.engine.train_process import TrainProcess
from onestage.engine.training_data import augment_settings, epoch_loader, training_set

PIPELINE = {
    "mosaic": 1.0,
    "degrees": 5.0,
    "translate": 0.1,
    "scale": 0.5,
    "shear": 2.0,
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "mixup": 0.3,
    "copy_paste": 0.5,
}
AUGMENT_KEYS = (*PIPELINE, "close_mosaic")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLO folder of 8 train and 2 val synthetic 64 px images."""
    out = tmp_path_factory.mktemp("folder") / "yolo"
    generator = SyntheticGenerator(SyntheticConfig(width=64, height=64, seed=1))
    synthesize_dataset(generator, out, "yolo", {"train": 8, "val": 2})
    return out


def config_for(folder: Path, **values) -> TrainConfig:
    """A config of the `fast` recipe on the folder: augmentation only where `values` ask."""
    return make_config("fast", overrides={"data": str(folder), "imgsz": 64, **values})


def batches(config: TrainConfig, train_set, epochs: int = 2) -> list[tuple]:
    process = TrainProcess(torch.device("cpu"), DistContext(), config.batch, "fp32", None)
    sampler, loader = epoch_loader(config, train_set, 2, process)
    found = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        found.extend(loader)
    return found


def test_defaults_and_every_recipe_keep_augmentation_off(folder: Path) -> None:
    defaults = asdict(TrainConfig())
    assert {key: defaults[key] for key in AUGMENT_KEYS} == dict.fromkeys(AUGMENT_KEYS, 0)
    assert defaults["cache"] == "auto"
    for name in RECIPES:
        assert not augment_settings(make_config(name)).active, name
    # a dataset folder with no recipe named takes the newcomer's defaults, augmentation on
    assert augment_settings(make_config(overrides={"data": str(folder)})).active
    train_set, _, _ = training_set(config_for(folder, cache="none"))
    assert type(train_set) is RecordDataset and train_set._cache is None
    assert batches(config_for(folder, batch=4), train_set, epochs=1)[0][0].dtype == torch.uint8


def test_the_pipeline_gives_the_same_batches_whatever_the_worker_count(folder: Path) -> None:
    runs = []
    for workers in (0, 2):
        config = config_for(folder, batch=4, workers=workers, seed=5, **PIPELINE)
        train_set, _, _ = training_set(config)
        assert isinstance(train_set, AugmentedDataset)
        runs.append(batches(config, train_set))
    assert len(runs[0]) == 4  # 2 epochs of 2 steps
    for zero, two in zip(*runs, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(zero, two, strict=True))
    assert not torch.equal(runs[0][0][0], runs[0][2][0])  # epoch 1 differs from epoch 0


def test_sample_keys_number_the_epochs_draws_across_ranks() -> None:
    whole = list(EpochSampler(3, 5, True, 0, DistContext(), keys=True))
    assert [key.position for key in whole] == [0, 1, 2, 3, 4]
    assert all(isinstance(key, SampleKey) and key.epoch == 0 for key in whole)
    for rank in (0, 1):
        assert list(EpochSampler(3, 5, True, 0, DistContext(rank, 2), keys=True)) == whole[rank::2]
    plain = list(EpochSampler(3, 5, True, 0, DistContext()))
    assert plain == [key.image for key in whole]


def test_close_mosaic_counts_from_the_configs_last_epoch(folder: Path) -> None:
    train_set, _, _ = training_set(config_for(folder, epochs=6, close_mosaic=2, mosaic=1.0))
    assert [train_set.strong_in(epoch) for epoch in range(6)] == [True] * 4 + [False] * 2


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("mosaic", 1.5, "[0, 1]"),
        ("mixup", -0.1, "[0, 1]"),
        ("copy_paste", 2.0, "[0, 1]"),
        ("degrees", 200.0, "[0, 180]"),
        ("translate", 0.6, "[0, 0.5]"),
        ("scale", 1.0, "[0, 1)"),
        ("shear", 46.0, "[0, 45]"),
        ("hsv_h", 0.6, "[0, 0.5]"),
        ("hsv_s", 1.5, "[0, 1]"),
        ("hsv_v", -0.4, "[0, 1]"),
        ("close_mosaic", -1, ">= 0"),
    ],
)
def test_augmentation_keys_out_of_range_are_one_line(key: str, value: float, valid: str) -> None:
    assert error_of(lambda: make_config(overrides={key: value})) == (
        f"override: config key {key!r}: {value!r} is out of range; valid: {valid}"
    )


def test_bad_cache_values_and_synthetic_augmentation_are_refused() -> None:
    assert error_of(lambda: make_config(overrides={"cache": "disk"})) == (
        "override: config key 'cache': unknown value 'disk'; valid: auto, ram, none"
    )
    for values in ({"mosaic": 0.5}, {"hsv_v": 0.4}, {"cache": "ram"}):
        message = error_of(lambda values=values: training_set(make_config(overrides=values)))
        assert message.startswith("augmentation keys and cache=ram need a dataset folder")


def test_cache_ram_fills_before_the_loader_and_refuses_over_budget(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_set, _, _ = training_set(config_for(folder, cache="ram", mosaic=1.0))
    assert len(train_set.records._cache) == 8
    monkeypatch.setattr(dataset_module, "available_memory", lambda: 100_000)
    message = error_of(lambda: training_set(config_for(folder, cache="ram")))
    assert message == (
        "cache=ram: 8 images at 64 px need 0.00 GiB, over the budget of 0.00 GiB "
        "(50% of the memory available); use cache=none"
    )


def test_cache_auto_keeps_the_images_only_when_they_fit(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert make_config(overrides={"data": str(folder)}).cache == "auto"  # the default
    train_set, _, _ = training_set(config_for(folder, mosaic=1.0))
    assert len(train_set.records._cache) == 8
    needed = 8 * 64 * 64 * 3  # 8 images at 64 px; the budget is half the memory available
    monkeypatch.setattr(dataset_module, "available_memory", lambda: 2 * needed - 2)
    train_set, _, _ = training_set(config_for(folder, mosaic=1.0))
    assert train_set.records._cache is None  # read each time, no error
    monkeypatch.setattr(dataset_module, "available_memory", lambda: 2 * needed)
    train_set, _, _ = training_set(config_for(folder, mosaic=1.0))
    assert len(train_set.records._cache) == 8
    synthetic, _, _ = training_set(make_config(overrides={"cache": "auto", "steps": 1}))
    assert len(synthetic) == make_config().batch


def test_data_show_augment_draws_the_training_view(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    grid = tmp_path / "grid.png"
    settings = [item for key, value in PIPELINE.items() for item in ("--set", f"{key}={value}")]
    shown = run_in_process(
        monkeypatch,
        capsys,
        *("data", "show", str(folder), "--augment", "--count", "4", "--out", str(grid)),
        *settings,
        *("--set", "imgsz=64", "--set", "hflip=0.5"),
    )
    assert shown.returncode == 0, shown.stderr
    with Image.open(grid) as image:
        assert image.size == (2 * 64 + 4, 2 * 64 + 4)  # 2 x 2 tiles, 4 px gutters
    plain = run_in_process(  # no settings: the dataset defaults a training run would take
        monkeypatch, capsys, "data", "show", str(folder), "--augment", "--out", str(grid)
    )
    assert plain.returncode == 0 and "no augmentation on" not in plain.stdout
    zeroed = [item for key in PIPELINE for item in ("--set", f"{key}=0")]
    off = run_in_process(
        monkeypatch, capsys, "data", "show", str(folder), "--augment", "--out", str(grid), *zeroed
    )
    assert off.returncode == 0 and "no augmentation on" in off.stdout
    refused = run_in_process(
        monkeypatch, capsys, "data", "show", str(folder), "--set", "mosaic=1", "--out", str(grid)
    )
    assert refused.returncode != 0 and "--config and --set go with --augment" in refused.stderr


def test_a_run_trains_on_the_augmented_folder_with_a_worker(folder: Path, tmp_path: Path) -> None:
    from onestage.engine.trainer import train

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_ANCHOR_FREE_SPEC)
    config = config_for(
        folder,
        **PIPELINE,
        model=str(spec),
        loss="quality",
        epochs=2,
        close_mosaic=1,
        steps=2,
        batch=2,
        workers=1,
        cache="ram",
        val_every=0,
        amp="none",
        project=str(tmp_path),
    )
    result = train(config)
    assert result.epochs_done == 2
    assert all(torch.isfinite(torch.tensor(row["train/loss"])) for row in result.history)
