"""Starting a run from weights of other classes: what loads, what is re-initialised, the
architecture without a model, frozen layers, the pretrained learning rate and the record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from helpers import (
    TINY_ANCHOR_FREE_SPEC,
    TINY_FIVE_LEVEL_SSD_SPEC,
    error_of,
    run_in_process,
    write_flat_png,
)
from onestage.checkpoint import METADATA_KEY, load_weights, read_metadata, save_weights
from onestage.config import make_config
from onestage.engine.predictor import WEIGHTS_DIR
from onestage.engine.progress import SilentProgress
from onestage.engine.run_folder import resume_config
from onestage.engine.trainer import Trainer
from onestage.metadata import check_metadata
from onestage.models import build_model
from onestage.models.heads import CLASS_PRIOR

ANIMALS = ("octopus", "cat", "cow", "tiger", "cock", "turtle", "monkey", "rat")
TINY = {"epochs": 1, "steps": 1, "batch": 2, "imgsz": 32, "threads": 2, "amp": "none"}


class Notes(SilentProgress):
    """Keeps the trainer's messages."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def write_dataset(root: Path, names: tuple[str, ...], side: int = 32) -> Path:
    """A YOLO folder of two flat side x side images, one box each, for `names`."""
    for index in range(2):
        write_flat_png(root / "images" / "train" / f"{index}.png", side, side)
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        label = f"{index % len(names)} 0.5 0.5 0.5 0.5\n"
        (root / "labels" / "train" / f"{index}.txt").write_text(label)
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {list(names)}\n")
    return root


def write_source(
    folder: Path, spec: str, names: tuple[str, ...], loss: str = "quality", **options: str
) -> Path:
    """Weights of the spec for `names` (torch seed 7, not a run's 0), with the metadata a
    run writes; `options` are the model's build options (anchors, score_mode)."""
    spec_file = folder / "source.yaml"
    spec_file.write_text(spec)
    torch.manual_seed(7)
    model = build_model(spec_file, num_classes=len(names), **options)
    path = folder / "source.safetensors"
    save_weights(
        path,
        model,
        {
            "model": model.spec.name,
            "num_classes": len(names),
            "class_names": list(names),
            "anchors": options.get("anchors", "seed"),
            "input_size": 32,
            "loss": loss,
            "score_mode": model.score_mode,
            "spec": model.spec.to_dict(),
        },
    )
    return path


def tiny_run(tmp_path: Path, spec: str | None = TINY_ANCHOR_FREE_SPEC, **overrides):
    """The config of a 1-step run of the spec (None: no model named) on the dataset `data`."""
    values = {**TINY, "project": str(tmp_path / "runs"), "val_every": 0, **overrides}
    if spec is not None:
        spec_file = tmp_path / "model.yaml"
        spec_file.write_text(spec)
        values["model"] = str(spec_file)
    return make_config(overrides=values)


@pytest.fixture
def three_classes(tmp_path: Path) -> str:
    return str(write_dataset(tmp_path / "three", ("car", "bus", "bike")))


def test_matching_tensors_load_and_the_class_branches_start_fresh(tmp_path, three_classes):
    source = write_source(tmp_path, TINY_ANCHOR_FREE_SPEC, ANIMALS)
    notes = Notes()
    tuned = Trainer(tiny_run(tmp_path, data=three_classes, weights=str(source)), notes)
    fresh = Trainer(tiny_run(tmp_path, data=three_classes))
    theirs, _ = load_weights(source)
    branches = {"detect.class_branches.0.2.weight", "detect.class_branches.0.2.bias"}
    mine = tuned.model.state_dict()
    for name, tensor in mine.items():
        if name in branches:
            assert torch.equal(tensor, fresh.model.state_dict()[name]), name
            assert tensor.shape != theirs[name].shape
        else:
            assert torch.equal(tensor, theirs[name]), name
    assert not torch.equal(mine["stem.conv.weight"], fresh.model.state_dict()["stem.conv.weight"])
    bias = mine["detect.class_branches.0.2.bias"]
    assert torch.allclose(bias, torch.full_like(bias, math.log(CLASS_PRIOR / (1 - CLASS_PRIOR))))
    assert notes.lines == [
        f"loaded {len(mine) - 2} of {len(mine)} tensors from {source}; re-initialised 2: "
        "detect.class_branches.0.2"
    ]
    assert tuned.pretrained == {
        "file": "source.safetensors",
        "sha256": read_metadata(source)["content_sha256"],
        "loaded": len(mine) - 2,
        "reinitialised": 2,
    }


def test_other_classes_of_the_same_count_re_initialise_the_class_convolutions(tmp_path):
    source = write_source(tmp_path, TINY_FIVE_LEVEL_SSD_SPEC, ("cat", "dog"), "ssd")
    data = str(write_dataset(tmp_path / "swapped", ("dog", "cat")))
    notes = Notes()
    tuned = Trainer(
        tiny_run(tmp_path, TINY_FIVE_LEVEL_SSD_SPEC, data=data, weights=str(source)), notes
    )
    theirs, _ = load_weights(source)
    class_convs = [f"cls{side}" for side in (16, 8, 4, 2, 1)]
    for name, tensor in tuned.model.state_dict().items():
        assert torch.equal(tensor, theirs[name]) != name.startswith("cls"), name
    assert notes.lines == [
        f"loaded 20 of 30 tensors from {source}; re-initialised 10: {', '.join(class_convs)}"
    ]


def test_the_weights_own_classes_load_strictly_as_before(tmp_path: Path):
    source = write_source(tmp_path, TINY_ANCHOR_FREE_SPEC, ("car", "bus", "bike"))
    data = str(write_dataset(tmp_path / "same", ("car", "bus", "bike")))
    notes = Notes()
    tuned = Trainer(tiny_run(tmp_path, data=data, weights=str(source)), notes)
    theirs, _ = load_weights(source)
    mine = tuned.model.state_dict()
    assert all(torch.equal(tensor, theirs[name]) for name, tensor in mine.items())
    assert notes.lines == [] and tuned.pretrained["reinitialised"] == 0
    other_name = TINY_ANCHOR_FREE_SPEC.replace("name: fuzz-tiny", "name: other")
    assert error_of(
        lambda: Trainer(tiny_run(tmp_path, other_name, data=data, weights=str(source)))
    ) == (f"{source}: weights are for model 'fuzz-tiny', not 'other'")


def test_without_a_model_the_run_trains_the_weights_own_architecture(tmp_path, three_classes):
    focal = {"anchors": "seed-intended", "score_mode": "sigmoid"}
    source = write_source(tmp_path, TINY_FIVE_LEVEL_SSD_SPEC, ANIMALS, "focal", **focal)
    trainer = Trainer(tiny_run(tmp_path, None, data=three_classes, weights=str(source)))
    assert (
        trainer.model_name == "tiny"
        and trainer.spec == build_model(tmp_path / "source.yaml", num_classes=3).spec
    )
    assert (trainer.config.anchors, trainer.coding.score_mode) == ("seed-intended", "sigmoid")
    assert trainer.criterion.loss_name == "focal" and trainer.model.num_classes == 3
    assert make_config().model is None  # the weights' own, else seed
    assert make_config("seed").model == make_config("fast").model == "seed"


def test_freeze_backbone_keeps_its_parameters_and_batchnorm_statistics(tmp_path, three_classes):
    source = write_source(tmp_path, TINY_ANCHOR_FREE_SPEC, ANIMALS)
    config = tiny_run(tmp_path, data=three_classes, weights=str(source), freeze="backbone")
    trainer = Trainer(config)
    before = {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}
    trainer.run()
    for name, tensor in trainer.model.state_dict().items():
        if name.startswith(("stem.", "down.")):  # the backbone: weights and BatchNorm statistics
            assert torch.equal(tensor, before[name]), name
        elif name.endswith(("weight", "running_mean")):
            assert not torch.equal(tensor, before[name]), name
    model = trainer.model
    assert not model.stem.bn.training and not model.down.bn.training and model.detect.training
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert all(p.requires_grad for p in model.detect.parameters())
    first_only = Trainer(tiny_run(tmp_path, data=three_classes, weights=str(source), freeze=1))
    assert [name for name, p in first_only.model.named_parameters() if not p.requires_grad] == [
        "stem.conv.weight",
        "stem.bn.weight",
        "stem.bn.bias",
    ]


def test_pretrained_lr_scales_the_loaded_tensors_rate_at_every_step(tmp_path, three_classes):
    source = write_source(tmp_path, TINY_ANCHOR_FREE_SPEC, ANIMALS)
    schedule = {
        "scheduler": "step",
        "step_every": 1,
        "step_gamma": 0.5,
        "lr": 1e-3,
        "warmup_steps": 0,
    }
    config = tiny_run(
        tmp_path, data=three_classes, weights=str(source), pretrained_lr=0.1, epochs=2, **schedule
    )
    trainer = Trainer(config)
    loaded, fresh = trainer.optimizer.param_groups
    names = {id(p): name for name, p in trainer.model.named_parameters()}
    assert {names[id(p)] for p in fresh["params"]} == {
        "detect.class_branches.0.2.weight",
        "detect.class_branches.0.2.bias",
    }
    assert len(loaded["params"]) == len(names) - 2
    rates = []
    step = trainer._train_step

    def recording_step(*batch):
        rates.append([group["lr"] for group in trainer.optimizer.param_groups])
        return step(*batch)

    trainer._train_step = recording_step
    trainer.run()
    assert rates == [pytest.approx([1e-4, 1e-3]), pytest.approx([0.5e-4, 0.5e-3])]


def test_a_transfer_run_resumes_with_its_groups_and_frozen_layers(tmp_path, three_classes):
    source = write_source(tmp_path, TINY_ANCHOR_FREE_SPEC, ANIMALS)
    transfer = {"weights": str(source), "freeze": "backbone", "pretrained_lr": 0.5}
    first = Trainer(tiny_run(tmp_path, None, data=three_classes, **transfer)).run()
    resumed = Trainer(resume_config(first.run_dir, {"epochs": 2}), resume_from=first.run_dir)
    assert [group["lr_multiplier"] for group in resumed.optimizer.param_groups] == [0.5, 1.0]
    assert resumed.run().epochs_done == 2
    assert not any(p.requires_grad for p in resumed.model.stem.parameters())
    for name, tensor in load_weights(source)[0].items():
        if name.startswith(("stem.", "down.")):
            assert torch.equal(resumed.model.state_dict()[name], tensor), name


def test_the_run_records_its_source_under_the_content_hash(tmp_path, three_classes):
    source = write_source(tmp_path, TINY_ANCHOR_FREE_SPEC, ANIMALS)
    result = Trainer(tiny_run(tmp_path, data=three_classes, weights=str(source))).run()
    last = result.run_dir / "weights" / "last.safetensors"
    _, metadata = load_weights(last)
    assert metadata["pretrained"]["file"] == "source.safetensors"
    assert metadata["pretrained"]["sha256"] == read_metadata(source)["content_sha256"]
    check_metadata(metadata, last)
    data = last.read_bytes()
    edited = {**metadata, "pretrained": {**metadata["pretrained"], "loaded": 1}}
    last.write_bytes(
        save_safetensors_bytes(
            load_safetensors_bytes(data), metadata={METADATA_KEY: json.dumps(edited)}
        )
    )
    assert "do not match its content hash" in error_of(lambda: load_weights(last))
    assert "'pretrained' must be a mapping" in error_of(
        lambda: check_metadata({**metadata, "pretrained": "x"}, last)
    )


def test_mistakes_are_one_line(tmp_path, three_classes):
    source = write_source(tmp_path, TINY_FIVE_LEVEL_SSD_SPEC, ANIMALS, "ssd")
    another = error_of(lambda: Trainer(tiny_run(tmp_path, data=three_classes, weights=str(source))))
    assert another == (
        f"{source}: weights of another architecture: 0 of this model's 40 tensors match them by "
        "name and shape (at least half must); they are for model 'tiny', not 'fuzz-tiny'"
    )
    renamed = TINY_ANCHOR_FREE_SPEC.replace("down", "down2").replace("name: detect", "name: d2")
    anchor_free = write_source(tmp_path, TINY_ANCHOR_FREE_SPEC, ANIMALS)
    only_the_stem = tiny_run(tmp_path, renamed, data=three_classes, weights=str(anchor_free))
    assert error_of(lambda: Trainer(only_the_stem)) == (
        f"{anchor_free}: weights of another architecture: 6 of this model's 40 tensors match "
        "them by name and shape (at least half must)"
    )
    for key, value, line in (
        ("freeze", "top", "unknown value 'top'; valid: backbone or N (the first N layers) or null"),
        ("pretrained_lr", 0, "0.0 is out of range; valid: (0, 1]"),
        ("pretrained_lr", 2, "2.0 is out of range; valid: (0, 1]"),
    ):
        assert error_of(lambda k=key, v=value: make_config(overrides={k: v})) == (
            f"override: config key {key!r}: {line}"
        )
    too_many = tiny_run(tmp_path, data=three_classes, freeze=3)
    assert error_of(lambda: Trainer(too_many)) == (
        "freeze=3 leaves nothing to train: the model has 3 layers"
    )
    assert error_of(
        lambda: Trainer(tiny_run(tmp_path, data=three_classes, weights="nonesuch"))
    ).startswith(
        "nonesuch: no such weights file, and no shipped weights of that name (shipped: animals"
    )


def test_cli_fine_tunes_the_shipped_base_on_eight_unseen_classes(tmp_path, monkeypatch, capsys):
    names = ("car", "bus", "bike", "tram", "boat", "ship", "van", "cab")
    data = write_dataset(tmp_path / "eight", names, side=64)
    done = run_in_process(
        monkeypatch,
        capsys,
        "train",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--steps",
        "1",
        "--batch",
        "2",
        "--project",
        str(tmp_path / "runs"),
        "--name",
        "cli",
        "weights=base",
        "imgsz=64",
        "val_every=0",
        "amp=none",
        "threads=2",
    )
    assert done.returncode == 0, done.stderr
    shipped = WEIGHTS_DIR / "base.safetensors"
    assert (
        f"note: loaded 208 of 212 tensors from {shipped}; re-initialised 4: "
        "detect.class_branches.0.2, detect.class_branches.1.2"
    ) in done.stdout.splitlines()
    _, metadata = load_weights(tmp_path / "runs" / "cli" / "weights" / "last.safetensors")
    assert metadata["model"] == "csp-t" and metadata["class_names"] == list(names)
    assert metadata["pretrained"]["file"] == "base.safetensors"
