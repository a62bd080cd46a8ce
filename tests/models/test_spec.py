"""Model specs: the seed spec is the seed model, small specs build from YAML or Python, user
blocks load from their file, and a broken spec fails at build time with one clear line."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import onestage
from onestage.checkpoint import load_model_weights, load_weights
from onestage.errors import OnestageError
from onestage.models import load_plugins
from onestage.models import spec as spec_module
from onestage.models.blocks import register_block
from onestage.models.heads import SSDOutput
from onestage.models.seed import SeedModel
from onestage.models.spec import Layer, Spec, load_spec, parse_spec, spec_from_dict, spec_names
from onestage.models.spec_model import SpecModel, build_spec_model
from onestage.models.summary import format_summary, summarize

SEED_WEIGHTS = Path(onestage.__file__).parent / "weights" / "seed_animals.safetensors"

# Two levels: 16x16 (the stem plus the upsampled second conv) and 8x8, 2 anchors per cell.
TINY = """\
name: tiny
input_size: 32
backbone:
  - {name: stem, block: conv, out: 8, k: 3, s: 2, act: relu}   # (1, 8, 16, 16)
  - {name: down, block: conv, out: 8, k: 3, s: 2}              # (1, 8, 8, 8)
neck:
  - {name: up, block: upsample}                                 # (1, 8, 16, 16)
  - {name: merge, block: add, from: [up, stem]}                 # (1, 8, 16, 16)
head:
  - {name: box_16, block: ssd_box, anchors: 2}
  - {name: class_16, block: ssd_class, from: merge, args: {anchors: 2}}
  - {name: box_8, block: ssd_box, from: down, anchors: 2}
  - {name: class_8, block: ssd_class, from: down, anchors: 2}
  - {name: detect, block: ssd_output, from: [box_16, class_16, box_8, class_8]}
"""
TINY_ANCHORS = 16 * 16 * 2 + 8 * 8 * 2


@pytest.fixture(scope="module")
def seed_spec_model() -> SpecModel:
    torch.manual_seed(0)
    return build_spec_model("seed", num_classes=15)


def one_line_error(build: Callable[[], object]) -> str:
    """The OnestageError message of `build()`, checked to be one line."""
    with pytest.raises(OnestageError) as info:
        build()
    message = str(info.value)
    assert "\n" not in message
    return message


def build_tiny(text: str = TINY, num_classes: int = 3) -> SpecModel:
    return build_spec_model(parse_spec(text, "tiny.yaml"), num_classes)


# The seed as a spec ------------------------------------------------------------------------------


def test_seed_spec_counts_the_seed_parameters(seed_spec_model: SpecModel) -> None:
    assert "seed" in spec_names()
    trainable = sum(p.numel() for p in seed_spec_model.parameters() if p.requires_grad)
    running = sum(b.numel() for n, b in seed_spec_model.named_buffers() if "running" in n)
    assert (trainable, running, trainable + running) == (3_768_592, 1_504, 3_770_096)
    lines = format_summary(summarize(seed_spec_model)).splitlines()
    assert "Total params: 3,770,096" in lines
    assert seed_spec_model.training  # the summary's eval pass put training mode back


def test_seed_spec_has_the_seed_state_dict_and_initialisation(seed_spec_model: SpecModel) -> None:
    torch.manual_seed(0)  # as the fixture: the same random draws in the same order
    seed = SeedModel(num_classes=15)
    ours, theirs = seed_spec_model.state_dict(), seed.state_dict()
    assert list(ours) == list(theirs)  # conv2d_1.weight, ..., class_1x1.bias
    for key, tensor in theirs.items():
        assert torch.equal(ours[key], tensor), key
    assert torch.count_nonzero(seed_spec_model.class_1x1.bias) == 0  # Keras: zero biases
    assert seed_spec_model.batchnorm_3.eps == pytest.approx(1e-3)
    assert seed_spec_model.batchnorm_3.momentum == pytest.approx(0.01)


def test_seed_spec_gives_the_seed_outputs_for_the_shipped_weights() -> None:
    spec_model = build_spec_model("seed", num_classes=15)
    metadata = load_model_weights(spec_model, SEED_WEIGHTS, {"model": "seed", "num_classes": 15})
    assert metadata["input_size"] == 320
    seed = SeedModel(num_classes=15)
    seed.load_state_dict(load_weights(SEED_WEIGHTS)[0])
    images = torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = seed.eval()(images)
        output = spec_model.eval()(images)
    assert output.shape == (2, 2140, 4 + 15 + 1)
    torch.testing.assert_close(output, expected, rtol=1e-6, atol=1e-6)
    assert expected.abs().max() > 1  # trained weights: not a near-zero output


def test_seed_spec_feature_sizes_match_the_seed(seed_spec_model: SpecModel) -> None:
    assert seed_spec_model.feature_sizes == SeedModel.feature_sizes_for(320)
    assert seed_spec_model.anchors_per_cell == SeedModel(num_classes=15).anchors_per_cell == 4
    assert (seed_spec_model.anchor_config, seed_spec_model.score_mode) == ("seed", "softmax")
    assert (seed_spec_model.num_classes, seed_spec_model.input_size) == (15, 320)
    for size in (384, 512):
        assert seed_spec_model.feature_sizes_for(size) == SeedModel.feature_sizes_for(size)
    message = one_line_error(lambda: seed_spec_model.feature_sizes_for(200))
    assert message.startswith(f"{spec_module.SPECS_DIR / 'seed.yaml'}: input size 200 fails at")
    assert "layer 'conv2d_8' (backbone[19], conv of (1, 256, 1, 1)): RuntimeError:" in message
    assert seed_spec_model.training


def test_build_options_input_size_and_batchnorm_momentum() -> None:
    model = build_spec_model("seed", num_classes=3, input_size=384, bn_momentum=0.1)
    assert model.input_size == 384
    assert model.feature_sizes[-1] == (2, 2)
    momenta = {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}
    with torch.no_grad():
        output = model.eval()(torch.rand(1, 3, 384, 384))
    assert output.shape == (1, sum(h * w * 4 for h, w in model.feature_sizes), 4 + 3 + 1)


# Small specs, YAML and Python --------------------------------------------------------------------


def test_a_small_yaml_spec_builds_runs_and_trains() -> None:
    model = build_tiny()
    assert model.training
    assert model.feature_sizes == ((16, 16), (8, 8))
    assert model.anchors_per_cell == 2
    assert model.merge.out_channels == 8
    output = model(torch.rand(2, 3, 32, 32))
    assert output.shape == (2, TINY_ANCHORS, 4 + 3 + 1)
    output.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model.feature_sizes_for(64) == ((32, 32), (16, 16))


def test_the_python_composition_is_the_yaml_spec() -> None:
    composed = Spec(
        name="tiny",
        input_size=32,
        backbone=[
            Layer("stem", "conv", out=8, k=3, s=2, act="relu"),
            Layer("down", "conv", out=8, k=3, s=2),
        ],
        neck=[Layer("up", "upsample"), Layer("merge", "add", ["up", "stem"])],
        head=[
            Layer("box_16", "ssd_box", anchors=2),
            Layer("class_16", "ssd_class", "merge", anchors=2),
            Layer("box_8", "ssd_box", "down", anchors=2),
            Layer("class_8", "ssd_class", "down", anchors=2),
            Layer("detect", "ssd_output", ["box_16", "class_16", "box_8", "class_8"]),
        ],
    )
    from_yaml = parse_spec(TINY)
    assert composed == from_yaml
    torch.manual_seed(1)
    python_model = build_spec_model(composed, num_classes=3)
    torch.manual_seed(1)
    yaml_model = build_spec_model(from_yaml, num_classes=3)
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(python_model(images), yaml_model(images), rtol=0, atol=0)
    assert spec_from_dict(json.loads(json.dumps(from_yaml.to_dict()))) == from_yaml


def test_the_seed_spec_round_trips_through_its_mapping() -> None:
    seed = load_spec("seed")
    again = spec_from_dict(json.loads(json.dumps(seed.to_dict())))
    assert again == seed
    assert [layer.name for layer in seed.backbone[:3]] == ["conv2d_1", "maxpool2d_1", "batchnorm_1"]
    assert seed.backbone[2].args == {"eps": 1e-3, "momentum": 0.01}


def test_the_worked_example_of_the_module_docstring(tmp_path: Path) -> None:
    doc = spec_module.__doc__
    example = textwrap.dedent(doc[doc.index("    name: tiny") : doc.index("\nThe same graph")])
    (tmp_path / "my_blocks.py").write_text("# no blocks of its own\n", encoding="utf-8")
    (tmp_path / "tiny.yaml").write_text(example, encoding="utf-8")
    model = build_spec_model(tmp_path / "tiny.yaml", num_classes=3)
    shapes = {}
    for name in ("stem", "c4", "down", "c5", "up", "p4"):
        getattr(model, name).register_forward_hook(
            lambda _m, _i, output, name=name: shapes.update({name: tuple(output.shape[1:])})
        )
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 3840, 4 + 3 + 1)
    assert shapes == {
        "stem": (16, 32, 32),
        "c4": (32, 32, 32),
        "down": (32, 16, 16),
        "c5": (64, 16, 16),
        "up": (64, 32, 32),
        "p4": (96, 32, 32),
    }


def test_exponent_floats_without_a_dot_are_floats() -> None:
    # PyYAML alone reads 1e-3 as the string '1e-3'.
    text = "name: x\nbackbone:\n  - {name: a, block: batchnorm, eps: 1e-3, momentum: 3E-2}\n"
    assert parse_spec(text).backbone[0].args == {"eps": 0.001, "momentum": 0.03}
    assert parse_spec("name: x\ninput_size: 64\n").input_size == 64  # ints stay ints


def test_a_block_meta_tensors_cannot_run_is_dry_run_for_real(restore_blocks: None) -> None:
    @register_block("test_spec_gate")
    class Gate(nn.Module):
        """Halves the map after reading a value: meta tensors have no values to read."""

        def __init__(self, in_channels: int) -> None:
            super().__init__()
            self.out_channels = in_channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[..., ::2, ::2] if float(x.abs().max()) >= 0 else x

    # 16x16 stem -> 8x8 gate -> 4x4 down -> 16x16 up, merged with the stem.
    text = TINY.replace(
        "  - {name: down,", "  - {name: gate, block: test_spec_gate}\n  - {name: down,"
    )
    text = text.replace("{name: up, block: upsample}", "{name: up, block: upsample, scale: 4}")
    model = build_tiny(text)
    assert model.feature_sizes == ((16, 16), (4, 4))
    assert model.feature_sizes_for(64) == ((32, 32), (8, 8))


def test_feature_sizes_follow_the_model_dtype() -> None:
    model = build_tiny().to(torch.bfloat16)
    assert model.feature_sizes_for(64) == ((32, 32), (16, 16))


# User blocks -------------------------------------------------------------------------------------

PLUGIN = """\
from torch import nn

from onestage.models.blocks import register_block


@register_block("test_spec_negate")
class Negate(nn.Module):
    def __init__(self, in_channels: int, scale: float = 1.0) -> None:
        super().__init__()
        self.out_channels = in_channels
        self.scale = scale

    def forward(self, x):
        return -self.scale * x
"""


def test_a_user_block_from_a_plugin(tmp_path: Path, restore_blocks: None) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "negate.py").write_text(PLUGIN, encoding="utf-8")
    text = "imports: [plugins/negate.py]\n" + TINY.replace(
        "  - {name: down,",
        "  - {name: flip, block: test_spec_negate, scale: 2.0}\n  - {name: down,",
    )
    (tmp_path / "custom.yaml").write_text(text, encoding="utf-8")
    # The spec's imports are named in the error, never imported: the user passes the plugin.
    message = one_line_error(lambda: build_spec_model(tmp_path / "custom.yaml", num_classes=3))
    assert "unknown block 'test_spec_negate'" in message
    assert message.endswith("passed with --plugin; the spec names plugins/negate.py)")
    load_plugins([tmp_path / "plugins" / "negate.py"])
    model = build_spec_model(tmp_path / "custom.yaml", num_classes=3)
    assert type(model.flip).__name__ == "Negate"
    seen = {}
    for name in ("stem", "flip"):
        getattr(model, name).register_forward_hook(
            lambda _m, _i, output, name=name: seen.update({name: output})
        )
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    torch.testing.assert_close(seen["flip"], -2 * seen["stem"])
    # The file runs once: loading it again does not register the block twice.
    load_plugins([tmp_path / "plugins" / "negate.py"])
    assert type(build_spec_model(tmp_path / "custom.yaml", num_classes=3).flip) is type(model.flip)


# Broken specs: one line naming the layer and what is wrong ---------------------------------------


def test_unknown_block_suggests_the_close_name() -> None:
    text = TINY.replace(
        "block: conv, out: 8, k: 3, s: 2, act", "block: cnov, out: 8, k: 3, s: 2, act"
    )
    message = one_line_error(lambda: build_tiny(text))
    assert (
        message
        == "tiny.yaml: unknown block 'cnov' in layer 'stem' (backbone[0]); did you mean 'conv'?"
    )
    message = one_line_error(lambda: build_tiny(TINY.replace("block: upsample", "block: zzz")))
    assert "unknown block 'zzz' in layer 'up' (neck[0]); known blocks: act, add," in message
    assert message.endswith("(a block of your own needs its plugin file passed with --plugin)")


def test_unknown_reference_lists_the_names_defined_so_far() -> None:
    message = one_line_error(lambda: build_tiny(TINY.replace("[up, stem]", "[up, stme]")))
    assert message == (
        "tiny.yaml: layer 'merge' (neck[1]) reads 'stme', which is not a layer before it; "
        "did you mean 'stem'? (defined so far: input, stem, down, up)"
    )
    # A layer can only read layers before it.
    message = one_line_error(lambda: build_tiny(TINY.replace("[up, stem]", "[up, box_8]")))
    assert "layer 'merge' (neck[1]) reads 'box_8', which is not a layer before it" in message


def test_shape_mismatch_names_the_layer_and_its_input_shapes() -> None:
    message = one_line_error(lambda: build_tiny(TINY.replace("[up, stem]", "[down, stem]")))
    assert message.startswith(
        "tiny.yaml: layer 'merge' (neck[1], add of (1, 8, 8, 8), (1, 8, 16, 16)): RuntimeError: "
        "The size of tensor a (8) must match the size of tensor b (16)"
    )


def test_bad_arguments_name_the_layer_block_and_input() -> None:
    where = "tiny.yaml: layer 'down' (backbone[1], conv of (1, 8, 16, 16))"
    down = "{name: down, block: conv, out: 8, k: 3, s: 2}"
    cases = {
        "{name: down, block: conv, out: 8, kernel: 3}": (
            f"{where}: unknown argument 'kernel'; did you mean 'k'? "
            "(conv takes out, k, s, p, groups, bias, act)"
        ),
        "{name: down, block: conv, out: 8, act: swish}": (
            f"{where}: bad arguments: ValueError: unknown activation 'swish'; "
            "valid: relu, silu, leaky_relu"
        ),
        "{name: down, block: conv, k: 3}": f"{where}: missing argument 'out'",
        "{name: down, block: conv, out: 8, p: full}": (
            f"{where}: bad arguments: ValueError: padding p must be 'same', 'valid' or an int "
            ">= 0, got 'full'"
        ),
    }
    for replacement, expected in cases.items():
        assert one_line_error(lambda r=replacement: build_tiny(TINY.replace(down, r))) == expected
    class_8 = "{name: class_8, block: ssd_class, from: down, anchors: 2"
    message = one_line_error(
        lambda: build_tiny(TINY.replace(class_8, class_8 + ", num_classes: 3"))
    )
    assert "layer 'class_8' (head[3], ssd_class of (1, 8, 8, 8)): num_classes comes from" in message


def test_layer_names_must_be_unique_and_free() -> None:
    message = one_line_error(lambda: build_tiny(TINY.replace("name: down", "name: stem")))
    assert message == "tiny.yaml: layer name 'stem' (backbone[1]) is already used by backbone[0]"
    message = one_line_error(lambda: build_tiny(TINY.replace("name: up,", "name: input,")))
    assert message == "tiny.yaml: layer name 'input' (neck[0]) is already used by the image"
    for name in ("forward", "num_classes", "box-16"):
        text = TINY.replace("name: box_16", f"name: {name!r}").replace("[box_16", f"[{name!r}")
        message = one_line_error(lambda text=text: build_tiny(text))
        assert f"layer name {name!r} (head[0]) must be a Python identifier" in message


def test_structural_mistakes_are_one_line() -> None:
    message = one_line_error(
        lambda: build_tiny(
            TINY.replace(
                "{name: up, block: upsample}", "{name: up, block: upsample, from: [down, stem]}"
            )
        )
    )
    assert (
        "layer 'up' (neck[0], upsample of (1, 8, 8, 8), (1, 8, 16, 16)): "
        "block 'upsample' reads one input, got 2" in message
    )
    headless = TINY[: TINY.index("  - {name: detect")]
    message = one_line_error(lambda: build_tiny(headless))
    assert message.startswith(
        "tiny.yaml: the last layer 'class_8' (ssd_class) is not a detection head"
    )
    message = one_line_error(lambda: parse_spec(TINY.replace("backbone:", "bakbone:"), "tiny.yaml"))
    assert message == "tiny.yaml: unknown key 'bakbone'; did you mean 'backbone'?"
    message = one_line_error(
        lambda: parse_spec(TINY.replace("- {name: stem, block", "- {name: stem, blk"), "tiny.yaml")
    )
    assert message == "tiny.yaml: backbone[0]: a layer needs a block (a string)"
    message = one_line_error(
        lambda: parse_spec("name: x\ninput_size: big\nbackbone: []\n", "x.yaml")
    )
    assert message == "x.yaml: input_size must be an integer from 1 to 4096, got 'big'"


def test_a_head_must_give_one_row_per_anchor(restore_blocks: None) -> None:
    @register_block("test_spec_short_head")
    class ShortHead(SSDOutput):
        """ssd_output without its last anchor."""

        def forward(self, *maps: torch.Tensor) -> torch.Tensor:
            return super().forward(*maps)[:, :-1]

    message = one_line_error(lambda: build_tiny(TINY.replace("ssd_output", "test_spec_short_head")))
    assert message == (
        "tiny.yaml: the head 'detect' gives (1, 639, 8), not (1, 640, 8) "
        "(1 image, priors, 4 + classes + 1)"
    )
    message = one_line_error(lambda: build_tiny("init: keras\n" + TINY))
    assert message == "tiny.yaml: init must be one of torch, glorot, got 'keras'"


def test_malformed_yaml_names_the_line() -> None:
    broken = TINY.replace("{name: up, block: upsample}", "{name: up, block: upsample")
    message = one_line_error(lambda: parse_spec(broken, "tiny.yaml"))
    assert message.startswith("tiny.yaml:8:")
    assert "malformed YAML" in message
    assert one_line_error(lambda: parse_spec("- a\n- b\n", "list.yaml")) == (
        "list.yaml: a spec is a mapping with name, backbone, neck and head"
    )
    assert "no such spec file" in one_line_error(lambda: load_spec("nope.yaml"))
