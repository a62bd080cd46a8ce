"""Your own architecture end to end: list, print, summarise, train from a spec file with a user
block, and load the weights back without the spec file."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from cli_helpers import run_onestage
from onestage.config import make_config
from onestage.engine.predictor import Detector
from onestage.engine.trainer import Trainer, train
from onestage.models import load_plugins, load_spec

# A user block: a 3x3 convolution whose output is doubled (its file registers it).
PLUGIN = """
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

# Five levels (20, 10, 5, 3, 1 at 320 px) with 4 anchors per cell, as the seed anchors expect.
SPEC = """
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


def write_spec(folder: Path, text: str = SPEC) -> Path:
    (folder / "blocks").mkdir(parents=True, exist_ok=True)
    (folder / "blocks" / "mine.py").write_text(PLUGIN)
    (folder / "tiny.yaml").write_text(text)
    return folder / "tiny.yaml"


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
    spec = write_spec(tmp_path)
    plugin = str(tmp_path / "blocks" / "mine.py")
    summary = run_onestage("summary", "--model", str(spec), "--classes", "3", "--plugin", plugin)
    assert summary.returncode == 0, summary.stderr
    assert "mine" in summary.stdout and "DoubleConv" in summary.stdout
    broken = write_spec(tmp_path / "b", SPEC.replace("block: my_double_conv", "block: my_dubble"))
    failed = run_onestage("summary", "--model", str(broken), "--plugin", plugin)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().count("\n") == 0
    assert "unknown block 'my_dubble' in layer 'mine'" in failed.stderr
    assert "did you mean 'my_double_conv'?" in failed.stderr


def test_a_run_from_a_spec_file_loads_back_from_its_weights_alone(
    tmp_path: Path, restore_blocks: None
):
    spec = write_spec(tmp_path / "arch")
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
