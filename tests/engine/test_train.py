"""The training engine on tiny synthetic data: learning, run folder, resume, errors."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import yaml

from helpers import run_in_process, run_onestage
from onestage.checkpoint import load_model_weights, load_weights, save_weights
from onestage.cli.train_commands import training_summary
from onestage.config import make_config
from onestage.engine.progress import InterruptAfterEpoch
from onestage.engine.run_folder import resume_config
from onestage.engine.step_loop import TrainingDiverged
from onestage.engine.trainer import Trainer, train
from onestage.errors import OnestageError
from onestage.models import build_model

TINY = {
    "batch": 4,
    "steps": 2,
    "threads": 2,
    "synthetic_objects": "1-3",
    "val_images": 4,
    "amp": "none",  # the same precision on every CPU (auto depends on it)
}


def tiny_config(tmp_path: Path, **overrides):
    return make_config("seed", overrides={**TINY, "project": str(tmp_path), **overrides})


def test_seed_model_loss_falls_on_a_tiny_fixed_set(tmp_path: Path):
    config = tiny_config(
        tmp_path, epochs=8, steps=3, batch=4, train_images=4, lr=1e-3, val_every=0, name="learn"
    )
    result = train(config)
    losses = [row["train/loss"] for row in result.history]
    assert len(losses) == 8
    assert losses[-1] < 0.5 * losses[0], losses


def ranked_validation(monkeypatch: pytest.MonkeyPatch, maps: list[float]) -> None:
    """Replace validation by known scores: epoch e gets mAP50-95 maps[e - 1] (mAP50 + 0.3)."""

    def validate(self: Trainer, epochs_done: int) -> dict[str, float]:
        return {"val/mAP50": maps[epochs_done - 1] + 0.3, "val/mAP50-95": maps[epochs_done - 1]}

    monkeypatch.setattr(Trainer, "_validate", validate)


def test_persistent_data_workers_make_new_images_every_epoch(tmp_path: Path):
    trainer = Trainer(tiny_config(tmp_path, workers=1, batch=2, steps=1, val_every=0))
    epochs = []
    for epoch in (0, 1):
        trainer.sampler.set_epoch(epoch)
        epochs.append([images for images, _, _ in trainer.loader])

    assert trainer.loader.persistent_workers
    assert not torch.equal(epochs[0][0], epochs[1][0])
    assert torch.equal(epochs[1][0][0], trainer.train_set[2][0])  # item 0 of epoch 1


def test_run_folder_contents(tmp_path: Path):
    result = train(tiny_config(tmp_path, epochs=2, name="run"))
    run = result.run_dir
    assert run == tmp_path / "run"
    for name in ("config.yaml", "results.csv", "results.png"):
        assert (run / name).is_file(), name
    header, *rows = (run / "results.csv").read_text().splitlines()
    columns = header.split(",")
    assert columns[:4] == ["epoch", "train/loss", "train/cls", "train/box"]
    assert columns[-2:] == ["val/mAP50", "val/mAP50-95"]
    assert [row.split(",")[0] for row in rows] == ["1", "2"]
    assert sorted(p.name for p in (run / "val").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    _, metadata = load_weights(run / "weights" / "last.safetensors")
    assert metadata["model"] == "seed" and metadata["num_classes"] == 15
    assert metadata["class_names"][:2] == ["octopus", "cat"]
    assert metadata["anchors"] == "seed" and metadata["input_size"] == 320
    assert metadata["epoch"] == 2 and "val/mAP50-95" in metadata["metrics"]
    assert (run / "weights" / "last.json").is_file()
    # a second run with the same name gets a fresh folder, Ultralytics-style
    assert train(tiny_config(tmp_path, epochs=1, name="run")).run_dir == tmp_path / "run2"


def test_best_weights_are_the_epoch_with_the_highest_map50_95(tmp_path, monkeypatch):
    ranked_validation(monkeypatch, [0.2, 0.6, 0.4])
    result = train(tiny_config(tmp_path, epochs=3, steps=1, batch=2, name="best"))
    assert result.best_epoch == 2 and result.best_row["val/mAP50-95"] == 0.6
    _, best = load_weights(result.run_dir / "weights" / "best.safetensors")
    assert best["epoch"] == 2 and best["metrics"]["val/mAP50-95"] == 0.6
    _, last = load_weights(result.run_dir / "weights" / "last.safetensors")
    assert last["epoch"] == 3 and last["metrics"]["val/mAP50-95"] == 0.4
    assert training_summary(result) == (
        f"done: 3 epochs; best epoch 2: mAP@0.5 0.9000, mAP@[.5:.95] 0.6000; best weights "
        f"{result.run_dir / 'weights' / 'best.safetensors'}; results in {result.run_dir}"
    )


def test_patience_stops_after_that_many_validations_without_improvement(tmp_path, monkeypatch):
    ranked_validation(monkeypatch, [0.5, 0.4, 0.45, 0.9, 0.9, 0.9])
    quick = {"steps": 1, "batch": 2, "patience": 2}
    result = train(tiny_config(tmp_path, epochs=6, name="patience", **quick))
    assert result.stopped_early and result.epochs_done == 3 and result.best_epoch == 1
    assert training_summary(result).startswith("done: 3 epochs (stopped early); best epoch 1")
    ranked_validation(monkeypatch, [0.5, 0.4, 0.6, 0.5, 0.7, 0.8])
    patient = train(tiny_config(tmp_path, epochs=6, name="patient", **quick))
    assert not patient.stopped_early and patient.epochs_done == 6 and patient.best_epoch == 6


def test_extending_a_step_schedule_run_equals_the_longer_run(tmp_path: Path):
    # the step schedule does not depend on the number of epochs: 2 + 2 extended = 4 straight
    recipe = {"hflip": 0.5, "ema": 0.9, "ema_tau": 2.0, "val_every": 0, "steps": 1, "batch": 2}
    straight = train(tiny_config(tmp_path, epochs=4, name="straight", **recipe))
    first = train(tiny_config(tmp_path, epochs=2, name="split", **recipe))
    config = resume_config(first.run_dir, {"epochs": 4})
    resumed = train(config, resume=first.run_dir)
    assert resumed.epochs_done == 4
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    rows = (first.run_dir / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 4


COSINE = {
    "scheduler": "cosine",
    "lr": 1e-3,
    "min_lr": 1e-5,
    "warmup_steps": 3,
    "hflip": 0.5,
    "val_every": 0,
}


def test_plain_resume_of_an_interrupted_cosine_run_is_bit_identical(tmp_path: Path):
    recipe = {**COSINE, "ema": 0.9, "ema_tau": 2.0, "val_every": 2, "steps": 1, "batch": 2}
    straight = train(tiny_config(tmp_path, epochs=4, name="straight", **recipe))
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path, epochs=4, name="cut", **recipe), InterruptAfterEpoch(2))
    resumed = train(resume_config(tmp_path / "cut", {}), resume=tmp_path / "cut")
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    # (the rows of the first two epochs come back from results.csv, 6 significant digits)
    assert [row["lr"] for row in resumed.history] == pytest.approx(
        [row["lr"] for row in straight.history], rel=1e-5
    )


def test_extending_a_cosine_run_continues_its_learning_rate(tmp_path: Path):
    first = train(tiny_config(tmp_path, epochs=2, name="ext", **COSINE))
    progress = InterruptAfterEpoch(0)
    trainer = Trainer(resume_config(first.run_dir, {"epochs": 4}), progress, first.run_dir)
    # 2 steps per epoch: the first run ended at step 4 with its cosine at min_lr
    assert progress.messages == [
        "extending the run from 2 to 4 epochs (4 more steps): the cosine learning rate "
        "continues from 1.000e-05 at step 4 and decays to min_lr 1.0e-05 over the remaining "
        "steps (it has already reached min_lr: fine-tune with weights=... for a new decay)"
    ]
    assert [trainer._learning_rate(step) for step in range(4, 8)] == [1e-5] * 4
    assert trainer._learning_rate(3) == first.history[-1]["lr"]
    trainer.run()
    saved = resume_config(first.run_dir, {})  # config.yaml now says 4 epochs
    assert saved.epochs == 4


def test_extending_an_interrupted_cosine_run_decays_over_the_new_length(tmp_path: Path):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path, epochs=4, name="mid", **COSINE), InterruptAfterEpoch(2))
    progress = InterruptAfterEpoch(0)
    trainer = Trainer(resume_config(tmp_path / "mid", {"epochs": 8}), progress, tmp_path / "mid")
    rates = [trainer._learning_rate(step) for step in range(16)]
    # the rate at the resume point is the one the run had there: halfway down its cosine
    assert rates[4] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-12)
    assert all(a > b for a, b in itertools.pairwise(rates[3:16]))
    # the second half of the cosine spread over steps 4..16: progress 0.5 + 0.5 * 11 / 12
    last = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * (0.5 + 0.5 * 11 / 12)))
    assert rates[15] == pytest.approx(last, rel=1e-12)
    assert (
        len(progress.messages) == 1
        and "continues from 5.050e-04 at step 4" in (progress.messages[0])
    )


def test_resume_refuses_a_change_of_steps_or_batch(tmp_path: Path):
    first = train(tiny_config(tmp_path, epochs=1, name="steps"))
    with pytest.raises(OnestageError, match=r"--resume cannot change steps \(2 -> 3\)"):
        resume_config(first.run_dir, {"steps": 3, "epochs": 2})
    with pytest.raises(OnestageError, match=r"--resume cannot change batch \(4 -> 8\)"):
        resume_config(first.run_dir, {"batch": 8})
    assert resume_config(first.run_dir, {"steps": 2, "batch": 4}).steps == 2


def test_training_state_keeps_the_cuda_generator_and_the_grad_scaler(tmp_path, monkeypatch):
    """The CUDA path on CPU: the GPU generator is faked, the loss scaler is a CPU one."""
    cuda_states = {"saved": torch.arange(16, dtype=torch.uint8), "restored": None}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: cuda_states["saved"])
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda state, device: cuda_states.update(restored=state)
    )

    def scaler(self):
        return torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)

    monkeypatch.setattr(Trainer, "_make_scaler", scaler)
    first = Trainer(tiny_config(tmp_path, epochs=1, name="cuda"))
    first.run()
    scaled = first.scaler.state_dict()
    assert scaled["scale"] == 2.0**12  # grew once per step: 2 steps
    first.device = torch.device("cuda", 0)  # saved again as a GPU run would save it
    first._save_epoch(1, first.history[-1], improved=False)
    resumed = Trainer(resume_config(first.run_dir, {"epochs": 2}), resume_from=first.run_dir)
    assert resumed.scaler.state_dict() == scaled
    assert cuda_states["restored"] is None  # a CPU run does not touch a GPU generator
    resumed.device = torch.device("cuda", 0)
    resumed._restore(first.run_dir)
    assert torch.equal(cuda_states["restored"], cuda_states["saved"])


def test_resume_cannot_shorten(tmp_path: Path):
    first = train(tiny_config(tmp_path, epochs=2, name="short"))
    with pytest.raises(OnestageError, match="extend"):
        resume_config(first.run_dir, {"epochs": 1})


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path):
    trainer = Trainer(tiny_config(tmp_path, epochs=3, name="nan"))
    real_loss = trainer.criterion.loss
    calls = {"n": 0}

    def loss_that_explodes(*args, **kwargs):
        calls["n"] += 1
        parts = real_loss(*args, **kwargs)
        if calls["n"] > 2:  # the first epoch (2 steps) is fine, then NaN
            parts["loss"] = parts["loss"] * math.nan
        return parts

    trainer.criterion.loss = loss_that_explodes
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2, step 1"):
        trainer.run()
    _, metadata = load_weights(tmp_path / "nan" / "weights" / "last.safetensors")
    assert metadata["epoch"] == 1


def test_weights_of_another_class_count_are_rejected(tmp_path: Path):
    path = tmp_path / "w.safetensors"
    save_weights(path, build_model("seed", 15), {"model": "seed", "num_classes": 15})
    with pytest.raises(OnestageError, match="num_classes 15, not 3"):
        load_model_weights(build_model("seed", 3), path, {"model": "seed", "num_classes": 3})
    with pytest.raises(OnestageError, match="do not fit this architecture"):
        load_model_weights(build_model("seed", 3), path, {})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(OnestageError, match="truncated or corrupt"):
        load_weights(path)


def test_recipe_seed_is_the_seed_schedule():
    config = make_config("seed")
    assert (config.optimizer, config.lr, config.batch, config.steps, config.epochs) == (
        "adam",
        1e-4,
        32,
        100,
        100,
    )
    from onestage.engine.schedule import learning_rate
    from onestage.engine.train_settings import schedule_for

    schedule = schedule_for(config)
    assert learning_rate(schedule, 0, 100) == pytest.approx(1e-4)
    assert learning_rate(schedule, 499, 100) == pytest.approx(1e-4)
    assert learning_rate(schedule, 500, 100) == pytest.approx(0.8e-4)
    assert learning_rate(schedule, 99 * 100, 100) == pytest.approx(1e-4 * 0.8**19)
    config.epochs = 1000
    schedule = schedule_for(config)
    assert learning_rate(schedule, 999 * 100, 100) == pytest.approx(3e-7)


def test_cli_train_writes_run_folder_and_rejects_bad_keys(tmp_path: Path, monkeypatch, capsys):
    arguments = [
        "train",
        "--model",
        "seed",
        "--recipe",
        "seed",
        "--epochs",
        "1",
        "--steps",
        "1",
        "--batch",
        "2",
        "--project",
        str(tmp_path),
        "--name",
        "cli",
        "threads=2",
        "val_images=4",
    ]
    # precedence: recipe seed (lr 1e-4, loss seed) < YAML (lr, hflip, loss) < KEY=VALUE (lr)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lr: 0.5\nhflip: 0.25\nloss: ssd\nepochs: 7\n")
    done = run_onestage(*arguments, "--config", str(yaml_file), "lr=0.002")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli" / "weights" / "last.safetensors").is_file()
    saved = yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())
    assert (saved["lr"], saved["hflip"], saved["loss"]) == (0.002, 0.25, "ssd")
    assert (saved["epochs"], saved["steps"], saved["batch"]) == (1, 1, 2)  # flags beat YAML
    assert (saved["optimizer"], saved["anchors"]) == ("adam", "seed")  # from the recipe
    assert saved["ema"] == 0.0  # a field default nothing overrides
    last_line = done.stdout.strip().splitlines()[-1]
    assert last_line.startswith("done: 1 epochs; best epoch 1: mAP@0.5 ")
    assert str(tmp_path / "cli" / "weights" / "best.safetensors") in last_line
    bad = run_in_process(monkeypatch, capsys, *arguments, "lrr=3")
    assert bad.returncode == 2 and "unknown config key(s) 'lrr'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_train_refuses_a_bad_value_before_writing_anything(tmp_path, monkeypatch, capsys):
    project = tmp_path / "runs"
    for mistake, line in (
        ("scheduler=stepp", "override: config key 'scheduler': unknown value 'stepp'; valid: "),
        ("batch=0", "override: config key 'batch': 0 is out of range; valid: >= 1"),
    ):
        bad = run_in_process(monkeypatch, capsys, "train", mistake, f"project={project}")
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
        assert bad.stderr.startswith(f"error: {line}"), bad.stderr
        assert not project.exists()  # no run folder, no config.yaml


def test_train_on_a_voc_folder_with_letterbox_and_fine_tune_weights(tmp_path: Path):
    from onestage.data.synthesize import synthesize_dataset
    from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator

    generator = SyntheticGenerator(
        SyntheticConfig(width=200, height=120, objects=(1, 2), classes=("cat", "dog"))
    )
    synthesize_dataset(generator, tmp_path / "voc", "voc", {"train": 4})
    first = train(
        tiny_config(tmp_path, data=str(tmp_path / "voc"), letterbox=True, epochs=1, name="voc")
    )
    _, metadata = load_weights(first.run_dir / "weights" / "last.safetensors")
    assert metadata["class_names"] == ["cat", "dog"] and metadata["letterbox"] is True
    weights = str(first.run_dir / "weights" / "last.safetensors")
    tuned = Trainer(tiny_config(tmp_path, data=str(tmp_path / "voc"), weights=weights, name="ft"))
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, tuned.model.state_dict()[name]), name
    # on the 15 synthetic animals: a transfer, the 5 class convolutions re-initialised
    animals = Trainer(tiny_config(tmp_path, weights=weights, name="animals"))
    assert animals.pretrained["reinitialised"] == 10


def test_anchors_command_writes_the_seed_anchors(tmp_path: Path):
    import numpy as np

    from onestage.priors.anchors import generate_anchors

    out = tmp_path / "a.npy"
    done = run_onestage("anchors", "--model", "seed", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2,140" in done.stdout and "1,600" in done.stdout
    anchors = np.load(out)
    assert anchors.shape == (2140, 4)
    np.testing.assert_array_equal(anchors, generate_anchors("seed", (20, 10, 5, 3, 1)))
    # first 20x20 cell: (0.2, 0.272) sizes, ratios (0.5, 1, 2), centre (0.025, 0.025)
    np.testing.assert_allclose(
        anchors[2], [0.025 - 0.1, 0.025 - 0.1, 0.025 + 0.1, 0.025 + 0.1], atol=1e-6
    )


def test_validation_reads_the_datasets_val_split(tmp_path: Path):
    from onestage.data.synthesize import synthesize_dataset
    from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator

    generator = SyntheticGenerator(
        SyntheticConfig(width=160, height=160, objects=(1, 2), classes=("cat", "dog"))
    )
    synthesize_dataset(generator, tmp_path / "yolo", "yolo", {"train": 4, "val": 3, "test": 2})
    trainer = Trainer(tiny_config(tmp_path, data=str(tmp_path / "yolo"), epochs=1, name="val"))
    val_names = sorted(p.stem for p in (tmp_path / "yolo" / "images" / "val").iterdir())
    assert sorted(trainer.val_set.names) == val_names and len(val_names) == 3
    result = trainer.run()
    assert not math.isnan(result.history[0]["val/mAP50-95"])
    other = Trainer(
        tiny_config(tmp_path, data=str(tmp_path / "yolo"), val_split="test", name="test")
    )
    assert len(other.val_set) == 2


def test_labels_slightly_outside_the_image_are_clipped_unless_strict(tmp_path: Path, caplog):
    from PIL import Image

    root = tmp_path / "yolo"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (640, 640)).save(root / "images" / "train" / "a.png")
    (root / "labels" / "train" / "a.txt").write_text("0 0.995 0.5 0.02 0.1\n")  # 3.2 px over
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat]\n")
    with caplog.at_level("WARNING", logger="onestage"):
        trainer = Trainer(tiny_config(tmp_path, data=str(root), val_every=0, name="lenient"))
    assert "1 box clipped to the image" in caplog.text
    assert trainer.train_set[0][1].tolist() == [pytest.approx([0.985, 0.45, 1.0, 0.55])]
    with pytest.raises(OnestageError, match=r"a.txt:1: box .* lies outside the 640x640 image"):
        Trainer(tiny_config(tmp_path, data=str(root), strict_labels=True, name="strict"))
