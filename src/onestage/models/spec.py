"""Model specs: a detector declared as named layers in YAML (or Python), built into a module graph.

A spec has a `name`, an `input_size` (the side of the square image it is built for; a build call
may change it), an optional `init` (`torch`: each layer's own initialisation, the default;
`glorot`: Keras' Glorot-uniform kernels with zero biases, as the seed), optional `imports`
(the plugin files that register the user's own blocks: named in errors, never imported; the
user passes them with `--plugin`, `onestage.models.plugins`) and three sections, `backbone`,
`neck` (optional) and `head`, each a list of layers that run in order:

    - {name: NAME, block: BLOCK, from: NAME or [NAMES], ARG: VALUE, ...}

`name` is the layer's attribute name in the model, so its state-dict keys are `NAME.weight`, ...
`block` is a name in `onestage.models.blocks.BLOCKS`. `from` names the layers it reads: by
default the previous layer; the first layer reads `input`, the image (B, 3, S, S). Every other
key is an argument of the block (they may also go under `args: {...}`). Input channels are never
written: the builder runs a dummy image through the layers built so far and takes each layer's
`in_channels` from the shapes its inputs have. `num_classes` is never written either: it comes
from the build call and goes to every block with a `num_classes` parameter. The last layer is
a head (`onestage.models.heads`): anchor-based, (B, A, 4 + num_classes + 1), or anchor-free,
(B, A, 4 (reg_max + 1) + num_classes). A worked example, two levels at 16 and 8 px:

    name: tiny
    input_size: 64
    imports: [my_blocks.py]           # optional: the plugin files the spec needs (--plugin)
    backbone:
      - {name: stem, block: conv, out: 16, k: 3, s: 2, act: relu}    # (B, 16, 32, 32)
      - {name: c4, block: csp, out: 32, n: 1}                         # (B, 32, 32, 32)
      - {name: down, block: conv_bn, out: 32, k: 3, s: 2}             # (B, 32, 16, 16)
      - {name: c5, block: sppf, out: 64}                              # (B, 64, 16, 16)
    neck:
      - {name: up, block: upsample, scale: 2}                         # (B, 64, 32, 32)
      - {name: p4, block: concat, from: [up, c4]}                     # (B, 96, 32, 32)
    head:
      - {name: box_p4, block: ssd_box, from: p4, anchors: 3}
      - {name: class_p4, block: ssd_class, from: p4, anchors: 3}
      - {name: box_p5, block: ssd_box, from: c5, anchors: 3}
      - {name: class_p5, block: ssd_class, from: c5, anchors: 3}
      - name: detect                                                  # (B, 3840, 4 + K + 1)
        block: ssd_output
        from: [box_p4, class_p4, box_p5, class_p5]

The same graph in Python: `Spec(name="tiny", input_size=64, backbone=[Layer("stem", "conv",
out=16, k=3, s=2, act="relu"), ...], neck=[..., Layer("p4", "concat", ["up", "c4"])], head=[...])`.

A broken spec fails at build time with one line (an `OnestageError`) naming the layer, its input
shapes and what is wrong: an unknown block (with a "did you mean"), an unknown `from`, a bad
argument or a shape mismatch in the dry run.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from torch import nn

from onestage.errors import OnestageError, first_line
from onestage.limits import read_text_within
from onestage.models.blocks import BLOCKS, keras_initialise
from onestage.models.heads import HEAD_ATTRIBUTES, is_head, output_values
from onestage.parsing import MalformedText, parse_yaml

SPECS_DIR = Path(__file__).parent / "specs"
SECTIONS = ("backbone", "neck", "head")
TOP_KEYS = ("name", "input_size", "init", "imports", *SECTIONS)
LAYER_KEYS = ("name", "block", "from", "args")
INITS = ("torch", "glorot")
INPUT = "input"  # the name under which layers read the image
MAX_LAYER_PARAMETERS = 50_000_000
MAX_INPUT_SIZE = 4096  # pixels, the side of the square input


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 with `1e-3` read as a float (PyYAML alone reads it as a string)."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass(init=False)
class Layer:
    """One layer: `Layer("p4", "concat", ["up", "c4"])`, `Layer("stem", "conv", out=16, k=3)`.

    `sources` are the names of the layers it reads; None means the previous layer (or `input`).
    """

    name: str
    block: str
    sources: tuple[str, ...] | None
    args: dict[str, Any]

    def __init__(
        self, name: str, block: str, from_: str | Iterable[str] | None = None, **args: Any
    ) -> None:
        self.name = name
        self.block = block
        self.sources = (
            (from_,) if isinstance(from_, str) else None if from_ is None else tuple(from_)
        )
        self.args = args

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form: name, block, from (when given), args."""
        data: dict[str, Any] = {"name": self.name, "block": self.block}
        if self.sources is not None:
            data["from"] = self.sources[0] if len(self.sources) == 1 else list(self.sources)
        return {**data, "args": dict(self.args)}


@dataclass(kw_only=True)
class Spec:
    """A detector: layers of a backbone, a neck and a head, run in that order (see the module).

    `origin` (the file, or `spec 'name'`) starts every error message; it is not compared.
    """

    name: str
    backbone: list[Layer]
    head: list[Layer]
    neck: list[Layer] = field(default_factory=list)
    input_size: int = 320
    init: str = "torch"
    imports: tuple[str, ...] = ()
    origin: str = field(default="", compare=False)

    def where(self) -> str:
        """How error messages name this spec."""
        return self.origin or f"spec {self.name!r}"

    def layers(self) -> list[tuple[str, Layer]]:
        """Every layer in run order with its position, e.g. ("neck[1]", layer)."""
        return [
            (f"{section}[{index}]", layer)
            for section in SECTIONS
            for index, layer in enumerate(getattr(self, section))
        ]

    def to_dict(self) -> dict[str, Any]:
        """A plain (JSON- and YAML-ready) mapping that `spec_from_dict` reads back."""
        data: dict[str, Any] = {"name": self.name, "input_size": self.input_size}
        data |= {"init": self.init, "imports": list(self.imports)}
        return data | {s: [layer.to_dict() for layer in getattr(self, s)] for s in SECTIONS}


# Reading specs ----------------------------------------------------------------------------------


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    """'; did you mean 'x'?' for a close option (or the longest one that starts the word, as
    `k` for `kernel`), else ''."""
    options = list(options)
    close = difflib.get_close_matches(word, options, n=1)
    close += sorted((o for o in options if word.startswith(o)), key=len, reverse=True)
    return f"; did you mean {close[0]!r}?" if close else ""


def _layer_from(item: Any, origin: str, position: str) -> Layer:
    """A Layer from its YAML mapping, with inline arguments merged into `args`."""
    if not isinstance(item, dict):
        raise OnestageError(f"{origin}: {position}: a layer is a mapping with name and block")
    for key in ("name", "block"):
        if not isinstance(item.get(key), str):
            raise OnestageError(f"{origin}: {position}: a layer needs a {key} (a string)")
    sources = item.get("from")
    names = [sources] if isinstance(sources, str) else sources
    if sources is not None and not (
        isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    ):
        raise OnestageError(
            f"{origin}: {position} ({item['name']!r}): from must be a layer name or a list of them"
        )
    args = item.get("args") or {}
    if not isinstance(args, dict):
        raise OnestageError(f"{origin}: {position} ({item['name']!r}): args must be a mapping")
    if not all(isinstance(key, str) for key in (*item, *args)):
        raise OnestageError(
            f"{origin}: {position} ({item['name']!r}): argument names must be strings"
        )
    inline = {key: value for key, value in item.items() if key not in LAYER_KEYS}
    if twice := sorted(set(args) & set(inline)):
        raise OnestageError(
            f"{origin}: {position} ({item['name']!r}): argument {twice[0]!r} given twice"
        )
    return Layer(item["name"], item["block"], sources, **args, **inline)


def spec_from_dict(data: dict[str, Any], origin: str = "") -> Spec:
    """A Spec from its mapping (parsed YAML or `Spec.to_dict()`)."""
    origin = origin or f"spec {data.get('name')!r}"
    for key in data:
        if key not in TOP_KEYS:
            hint = _did_you_mean(str(key), TOP_KEYS) or f"; valid keys: {', '.join(TOP_KEYS)}"
            raise OnestageError(f"{origin}: unknown key {key!r}{hint}")
    if not isinstance(data.get("name"), str):
        raise OnestageError(f"{origin}: a spec needs a name (a string)")
    size = data.get("input_size", 320)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_INPUT_SIZE:
        raise OnestageError(
            f"{origin}: input_size must be an integer from 1 to {MAX_INPUT_SIZE}, got {size!r:.40}"
        )
    imports = data.get("imports") or []
    if not isinstance(imports, list) or not all(isinstance(p, str) for p in imports):
        raise OnestageError(f"{origin}: imports must be a list of Python file paths")
    sections = {}
    for section in SECTIONS:
        items = data.get(section) or []
        if not isinstance(items, list):
            raise OnestageError(f"{origin}: {section} must be a list of layers")
        sections[section] = [
            _layer_from(item, origin, f"{section}[{index}]") for index, item in enumerate(items)
        ]
    return Spec(
        name=data["name"],
        input_size=size,
        init=data.get("init", "torch"),
        imports=tuple(imports),
        origin=origin,
        **sections,
    )


def parse_spec(text: str, origin: str = "<spec>") -> Spec:
    """A Spec from YAML text; malformed YAML is one line with its line and column."""
    try:
        data = parse_yaml(text, _SpecLoader)
    except MalformedText as error:
        where = f":{error.line}" if error.line is not None else ""
        where += f":{error.column}" if error.line is not None and error.column is not None else ""
        raise OnestageError(f"{origin}{where}: malformed YAML: {error.problem}") from None
    if not isinstance(data, dict):
        raise OnestageError(f"{origin}: a spec is a mapping with name, backbone, neck and head")
    return spec_from_dict(data, origin)


def spec_names() -> list[str]:
    """The built-in specs (files in `models/specs/`), sorted."""
    return sorted(path.stem for path in SPECS_DIR.glob("*.yaml"))


def load_spec(source: str | Path) -> Spec:
    """A Spec from a YAML file, or a built-in spec by name (`"seed"`)."""
    path = Path(source)
    if not path.is_file() and isinstance(source, str) and source in spec_names():
        path = SPECS_DIR / f"{source}.yaml"
    if not path.is_file():
        raise OnestageError(
            f"{source}: no such spec file, and no built-in spec of that name "
            f"(built-in: {', '.join(spec_names())})"
        )
    try:
        text = read_text_within(path)
    except (OSError, UnicodeDecodeError) as error:
        raise OnestageError(f"{path}: cannot read the spec file ({first_line(error)})") from None
    return parse_spec(text, str(path))


def as_spec(source: Spec | dict[str, Any] | str | Path) -> Spec:
    """A Spec from a Spec, its mapping, a YAML file or a built-in spec name."""
    if isinstance(source, Spec):
        return source
    if isinstance(source, dict):
        return spec_from_dict(source)
    return load_spec(source)


# Building ---------------------------------------------------------------------------------------


class Step(NamedTuple):
    """One layer of the forward pass: its name, its place in the spec, its block, the names it
    reads, how it takes them, and the outputs no later layer reads (freed after it runs)."""

    name: str
    position: str
    block: str
    sources: tuple[str, ...]
    multi_input: bool
    release: tuple[str, ...] = ()


def _shapes(tensors: Iterable[torch.Tensor]) -> str:
    return ", ".join(str(tuple(t.shape)) for t in tensors)


def _check_args(cls: type[nn.Module], layer: Layer) -> str | None:
    """What is wrong with the layer's arguments for the block's constructor, or None."""
    parameters = list(inspect.signature(cls).parameters.values())[1:]  # after in_channels
    if "num_classes" in layer.args:
        return "num_classes comes from the build call (the dataset), not from the spec"
    names = [p.name for p in parameters if p.name != "num_classes"]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        for arg in layer.args:
            if arg not in names:
                takes = f"{layer.block} takes {', '.join(names)}" if names else "it takes none"
                return f"unknown argument {arg!r}{_did_you_mean(arg, names)} ({takes})"
    for p in parameters:
        if (
            p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
            and p.name not in layer.args
            and p.name != "num_classes"
        ):
            return f"missing argument {p.name!r}"
    return None


def _check_size(cls: type[nn.Module], channels: Any, args: dict, extra: dict) -> None:
    """Refuse a layer of more than MAX_LAYER_PARAMETERS parameters before it is allocated:
    the block is first made on the meta device (no memory), where it can be."""
    try:
        with torch.device("meta"):
            probe = cls(channels, **args, **extra)
    except Exception:  # a block that cannot be made on meta: made for real, unchecked
        return
    count = sum(parameter.numel() for parameter in probe.parameters())
    if count > MAX_LAYER_PARAMETERS:
        raise ValueError(
            f"{count:,} parameters in one layer (at most {MAX_LAYER_PARAMETERS:,}; the largest "
            "convolution of a YOLOv8-x has 15M)"
        )


def _on_meta(module: nn.Module, inputs: list[torch.Tensor], multi_input: bool) -> torch.Tensor:
    """The module's output for meta `inputs`, its parameters and buffers swapped for meta
    tensors: shapes only, no arithmetic, so a dry run costs next to nothing at any image size."""
    tensors = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in chain(module.named_parameters(), module.named_buffers())
    }
    arguments = tuple(inputs) if multi_input else (inputs[0],)
    with torch.no_grad():
        output = torch.func.functional_call(module, tensors, arguments)
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"gives a {type(output).__name__}, not a tensor")
    return output


class SpecModel(nn.Module):
    """A detector built from a Spec: (B, 3, S, S) in [0, 1] -> (B, A, values), laid out as its
    head says (`onestage.models.heads`).

    Each layer is an attribute named after it. Like `SeedModel`, it exposes `num_classes`,
    `input_size`, `anchors_per_cell`, `feature_sizes` (the (h, w) of the head's levels at
    `input_size`, in the head's order: largest first) and `feature_sizes_for(size)`, and from its
    head `box_coding` and `reg_max`.

    Dry runs (at build time and in `feature_sizes_for`) run the layers, in eval mode, on meta
    tensors; where that fails (a genuine mistake, or code that meta tensors cannot run), they run
    on a real (1, 3, S, S) image of zeros, which gives torch's own message for the mistake.
    """

    def __init__(
        self,
        spec: Spec,
        num_classes: int,
        input_size: int | None = None,
        bn_momentum: float | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise OnestageError(f"num_classes must be at least 1, got {num_classes}")
        if spec.init not in INITS:
            raise OnestageError(
                f"{spec.where()}: init must be one of {', '.join(INITS)}, got {spec.init!r}"
            )
        self.spec = spec
        self.num_classes = num_classes
        self.input_size = input_size or spec.input_size
        self.steps: list[Step] = []
        self.anchors_per_cell = 0  # these four are set from the head once built
        self.box_coding = "anchors"
        self.reg_max = 0
        self.feature_sizes: tuple[tuple[int, int], ...] = ()
        head_inputs = self._build(self.input_size)
        head = self.head
        self.anchors_per_cell = int(head.anchors_per_cell)
        self.box_coding = str(head.box_coding)
        self.reg_max = int(head.reg_max)
        self.feature_sizes = head.feature_sizes_of(head_inputs)
        if bn_momentum is not None:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = bn_momentum
        if spec.init == "glorot":
            self.reset_parameters()
        self.train()

    def _build(self, size: int) -> list[tuple[int, ...]]:
        """Add the layers in order, each made for the shapes of its inputs in a dry run of the
        layers before it; returns the shapes of the last layer's inputs."""
        origin = self.spec.where()
        if not self.spec.backbone or not self.spec.head:
            raise OnestageError(f"{origin}: a spec needs at least one backbone and one head layer")
        outputs = {INPUT: torch.empty(1, 3, size, size, device="meta")}  # the dummy image
        positions = {INPUT: "the image"}
        for position, layer in self.spec.layers():
            self._check_name(layer.name, position, positions)
            sources = layer.sources or (self.steps[-1].name if self.steps else INPUT,)
            for source in sources:
                if source not in outputs:
                    raise OnestageError(
                        f"{origin}: layer {layer.name!r} ({position}) reads {source!r}, which is "
                        f"not a layer before it{_did_you_mean(source, outputs)} (defined so far: "
                        f"{', '.join(outputs)})"
                    )
            inputs = [outputs[source] for source in sources]
            module, multi = self._make_layer(layer, position, inputs)
            self.add_module(layer.name, module)
            self.steps.append(Step(layer.name, position, layer.block, sources, multi))
            module.eval()
            try:
                outputs[layer.name] = _on_meta(module, inputs, multi)
            except Exception:  # a mistake, or code meta tensors cannot run: run it for real
                outputs[layer.name] = self._real_run(size)[layer.name].to("meta")
            positions[layer.name] = position
        head = self.head
        if not is_head(head):
            raise OnestageError(
                f"{origin}: the last layer {layer.name!r} ({layer.block}) is not a detection head: "
                f"it needs {', '.join(HEAD_ATTRIBUTES)} (box_coding 'anchors' or 'points'), as "
                "ssd_output and decoupled_head"
            )
        self._check_output(outputs[layer.name], inputs, head)
        last_reader = {source: step.name for step in self.steps for source in step.sources}
        self.steps = [
            step._replace(release=tuple(s for s in last_reader if last_reader[s] == step.name))
            for step in self.steps
        ]
        return [tuple(t.shape) for t in inputs]

    def _make_layer(
        self, layer: Layer, position: str, inputs: list[torch.Tensor]
    ) -> tuple[nn.Module, bool]:
        """The layer's block for these inputs, and whether it takes several."""
        origin = self.spec.where()
        if layer.block not in BLOCKS.classes:
            hint = _did_you_mean(layer.block, BLOCKS.names()) or (
                f"; known blocks: {', '.join(BLOCKS.names())} (a block of your own needs its "
                "plugin file passed with --plugin"
                + (f"; the spec names {', '.join(self.spec.imports)}" if self.spec.imports else "")
                + ")"
            )
            where = f"layer {layer.name!r} ({position})"
            raise OnestageError(f"{origin}: unknown block {layer.block!r} in {where}{hint}")
        cls = BLOCKS.classes[layer.block]
        where = f"{origin}: layer {layer.name!r} ({position}, {layer.block} of {_shapes(inputs)})"
        multi = getattr(cls, "multi_input", False)
        if not multi and len(inputs) > 1:
            raise OnestageError(
                f"{where}: block {layer.block!r} reads one input, got {len(inputs)}; "
                "merge them first with concat or add"
            )
        if problem := _check_args(cls, layer):
            raise OnestageError(f"{where}: {problem}")
        channels = [t.shape[1] for t in inputs] if multi else inputs[0].shape[1]
        wants_classes = "num_classes" in inspect.signature(cls).parameters
        extra = {"num_classes": self.num_classes} if wants_classes else {}
        try:
            _check_size(cls, channels, layer.args, extra)
            return cls(channels, **layer.args, **extra), multi
        except (TypeError, ValueError, RuntimeError, OverflowError) as error:
            raise OnestageError(f"{where}: bad arguments: {first_line(error)}") from None

    def _check_name(self, name: str, position: str, positions: dict[str, str]) -> None:
        """A layer name must be a new identifier that is not an attribute of the model."""
        origin = self.spec.where()
        if name in positions:
            raise OnestageError(
                f"{origin}: layer name {name!r} ({position}) is already used by {positions[name]}"
            )
        if not name.isidentifier() or hasattr(self, name):
            raise OnestageError(
                f"{origin}: layer name {name!r} ({position}) must be a Python identifier that "
                "is not an attribute of the model (such as forward, spec or num_classes)"
            )

    def _check_output(
        self, output: torch.Tensor, inputs: list[torch.Tensor], head: nn.Module
    ) -> None:
        """The head's output must be (1, A, values), A matching its levels and values its box
        coding (`heads.output_values`)."""
        sizes = head.feature_sizes_of([tuple(t.shape) for t in inputs])
        priors = sum(h * w for h, w in sizes) * head.anchors_per_cell
        values = output_values(head.box_coding, head.reg_max, self.num_classes)
        expected = (1, priors, values)
        if tuple(output.shape) != expected:
            layout = (
                "4 + classes + 1" if head.box_coding == "anchors" else "4 (reg_max + 1) + classes"
            )
            raise OnestageError(
                f"{self.spec.where()}: the head {self.steps[-1].name!r} gives "
                f"{tuple(output.shape)}, not {expected} (1 image, priors, {layout})"
            )

    def _walk(
        self,
        image: torch.Tensor,
        run_layer: Callable[[Step, nn.Module, list[torch.Tensor]], torch.Tensor] | None = None,
        release: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Every layer's output for `image`, in spec order: each layer called on its inputs, or
        `run_layer(step, layer, inputs)` does it; `release` frees outputs no later layer reads
        (then only the last layer's output is sure to be left)."""
        outputs = {INPUT: image}
        for step in self.steps:
            layer = getattr(self, step.name)
            inputs = [outputs[source] for source in step.sources]
            if run_layer is not None:
                outputs[step.name] = run_layer(step, layer, inputs)
            else:
                outputs[step.name] = layer(*inputs) if step.multi_input else layer(inputs[0])
            if release:
                for name in step.release:
                    del outputs[name]
        return outputs

    def _real_run(self, size: int, context: str = "") -> dict[str, torch.Tensor]:
        """Every layer's output for a (1, 3, size, size) image of zeros, in eval mode without
        gradients; an error is one line naming the layer and its input shapes."""
        reference = self._reference()
        image = torch.zeros(1, 3, size, size, device=reference.device, dtype=reference.dtype)

        def run_layer(step: Step, layer: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
            try:
                with torch.no_grad():
                    output = layer(*inputs) if step.multi_input else layer(inputs[0])
                if not isinstance(output, torch.Tensor):
                    raise TypeError(f"gives a {type(output).__name__}, not a tensor")
            except Exception as error:  # any error in a layer is reported as one line
                raise OnestageError(
                    f"{self.spec.where()}: {context}layer {step.name!r} ({step.position}, "
                    f"{step.block} of {_shapes(inputs)}): {first_line(error)}"
                ) from None
            return output

        was_training = self.training
        self.eval()
        try:
            return self._walk(image, run_layer)
        finally:
            self.train(was_training)

    def _reference(self) -> torch.Tensor:
        """A tensor of the model: its device and dtype are those of the dry runs' image."""
        return next(chain(self.parameters(), self.buffers()), torch.empty(0))

    def feature_sizes_for(self, input_size: int) -> tuple[tuple[int, int], ...]:
        """(height, width) of the head's levels for a square `input_size` image (a dry run)."""
        dtype = self._reference().dtype
        image = torch.empty(1, 3, input_size, input_size, device="meta", dtype=dtype)
        was_training = self.training
        try:
            self.eval()
            outputs = self._walk(
                image, lambda step, layer, inputs: _on_meta(layer, inputs, step.multi_input)
            )
        except Exception:  # a mistake, or code meta tensors cannot run: run it for real
            outputs = self._real_run(input_size, f"input size {input_size} fails at ")
        finally:
            self.train(was_training)
        return self.head.feature_sizes_of([tuple(outputs[s].shape) for s in self.steps[-1].sources])

    @property
    def head(self) -> nn.Module:
        """The last layer, the detection head."""
        return getattr(self, self.steps[-1].name)

    def reset_parameters(self) -> None:
        """Keras initialisation (`blocks.keras_initialise`), the spec's `init: glorot`."""
        keras_initialise(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) float in [0, 1] -> (B, A, values), as the head lays them out."""
        return self._walk(images, release=True)[self.steps[-1].name]


def build_spec_model(
    source: Spec | dict[str, Any] | str | Path,
    num_classes: int,
    input_size: int | None = None,
    bn_momentum: float | None = None,
) -> SpecModel:
    """A fresh model from a spec (a Spec, its mapping, a YAML file or a built-in name).

    Its blocks must be registered (onestage's own, or from plugins the user loaded). `input_size`
    replaces the spec's; `bn_momentum`, when given, replaces every BatchNorm's momentum (as
    `SeedModel`'s option does).
    """
    return SpecModel(as_spec(source), num_classes, input_size, bn_momentum)
