"""Your own architecture end to end: list, print, summarise, train from a spec file with a user
block, and load the weights back without the spec file."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from helpers import USER_BLOCK_SPEC, run_onestage, write_user_block_spec
from onestage.config import make_config
from onestage.engine.predictor import Detector
from onestage.engine.trainer import Trainer, train
from onestage.models import load_plugins, load_spec


def test_models_lists_the_built_ins_and_prints_a_spec_to_copy(tmp_path: Path):
    listed = run_onestage("models")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "│ seed " in line)
    assert "ssd_output" in row and "3,770,096" in row and "1.29" in row
    printed = run_onestage("models", "seed", "--yaml")
    assert printed.returncode == 0, printed.stderr
    copy = tmp_path / "copy.yaml"
    copy.write_text(printed.stdout)
    assert load_spec(copy).to_dict() == load_spec("seed").to_dict()


def test_summary_of_a_spec_file_and_one_line_errors(tmp_path: Path):
    spec = write_user_block_spec(tmp_path)
    plugin = str(tmp_path / "blocks" / "mine.py")
    summary = run_onestage("summary", "--model", str(spec), "--classes", "3", "--plugin", plugin)
    assert summary.returncode == 0, summary.stderr
    assert "mine" in summary.stdout and "DoubleConv" in summary.stdout
    broken = write_user_block_spec(
        tmp_path / "b", USER_BLOCK_SPEC.replace("block: my_double_conv", "block: my_dubble")
    )
    failed = run_onestage("summary", "--model", str(broken), "--plugin", plugin)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().count("\n") == 0
    assert "unknown block 'my_dubble' in layer 'mine'" in failed.stderr
    assert "did you mean 'my_double_conv'?" in failed.stderr


def test_a_run_from_a_spec_file_loads_back_from_its_weights_alone(
    tmp_path: Path, restore_blocks: None
):
    spec = write_user_block_spec(tmp_path / "arch")
    load_plugins([tmp_path / "arch" / "blocks" / "mine.py"])
    config = make_config(
        "seed",
        overrides={
            "model": str(spec),
            "epochs": 1,
            "steps": 1,
            "batch": 2,
            "val_every": 0,
            "project": str(tmp_path),
            "name": "mine",
        },
    )
    result = train(config)
    saved = yaml.safe_load((result.run_dir / "model.yaml").read_text())
    assert saved["name"] == "tiny-user" and saved["backbone"][3]["block"] == "my_double_conv"
    spec.unlink()  # the weights carry the spec; the plugin's block is registered in this process
    detector = Detector.load(result.run_dir / "weights" / "last.safetensors", "cpu")
    assert detector.metadata["model"] == "tiny-user"
    images = torch.rand(2, 3, 320, 320)
    with torch.no_grad():
        torch.testing.assert_close(detector.model(images), result.model.eval()(images))


def test_seed_fpn_builds_with_a_shared_head_and_trains(tmp_path: Path):
    from onestage.models import build_model
    from onestage.models.summary import summarize

    model = build_model("seed-fpn", num_classes=15).eval()
    assert summarize(model).total_params == 3_914_544
    assert model.feature_sizes == build_model("seed", num_classes=15).feature_sizes
    with torch.no_grad():
        assert model(torch.rand(2, 3, 320, 320)).shape == (2, 2140, 20)
    config = make_config(
        "fast",
        overrides={
            "model": "seed-fpn",
            "epochs": 1,
            "steps": 2,
            "batch": 2,
            "val_every": 0,
            "amp": "none",
            "project": str(tmp_path),
            "name": "fpn",
        },
    )
    trainer = Trainer(config)
    initial = trainer.model.state_dict()["detect.box.weight"].clone()  # the shared box conv
    result = trainer.run()
    assert torch.isfinite(torch.tensor(result.history[0]["train/loss"]))
    assert not torch.equal(result.model.state_dict()["detect.box.weight"], initial)
    detector = Detector.load(result.run_dir / "weights" / "last.safetensors", "cpu")
    assert detector.metadata["model"] == "seed-fpn"


def test_nano_is_under_1_5m_parameters_with_the_seed_levels():
    from onestage.models import build_model
    from onestage.models.summary import summarize

    model = build_model("nano", num_classes=15).eval()
    summary = summarize(model)
    assert summary.total_params == 892_256 and summary.total_params <= 1_500_000
    assert summary.gflops < 0.2 * summarize(build_model("seed", num_classes=15)).gflops
    assert model.feature_sizes == ((20, 20), (10, 10), (5, 5), (3, 3), (1, 1))
    with torch.no_grad():
        assert model(torch.rand(1, 3, 320, 320)).shape == (1, 2140, 20)


def test_csp_t_is_anchor_free_on_strides_16_and_32():
    from onestage.models import build_model
    from onestage.models.summary import summarize

    model = build_model("csp-t", num_classes=15).eval()
    assert summarize(model).total_params == 1_902_742
    assert (model.box_coding, model.reg_max) == ("points", 16)
    assert model.feature_sizes == ((20, 20), (10, 10))  # 400 + 100 prior points at 320 px
    with torch.no_grad():
        assert model(torch.rand(1, 3, 320, 320)).shape == (1, 500, 4 * 17 + 15)


def test_every_built_in_architecture_has_a_recipe():
    from onestage.config import RECIPES, architecture_recipe
    from onestage.models import build_model, model_names

    fast = RECIPES["fast"]
    for name in model_names():
        if name not in ("seed", "seed-reference"):  # seed has the seed and fast recipes
            config = make_config(architecture_recipe(name))
            anchor_free = build_model(name, num_classes=15).box_coding == "points"
            assert config.model == name
            assert config.loss == ("quality" if anchor_free else fast["loss"])
            assert (config.lr, config.epochs, config.steps) == (fast["lr"], 15, 200)
    assert architecture_recipe("seed") == "fast" and architecture_recipe("csp-s") == "csp-s"
