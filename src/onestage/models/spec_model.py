"""Building a spec (`onestage.models.spec`) into a module graph: each layer made for the shapes
its inputs have in a dry run of the layers before it, then run in spec order."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from onestage.errors import OnestageError, first_line
from onestage.models.blocks import BLOCKS, keras_initialise
from onestage.models.heads import HEAD_ATTRIBUTES, head_priors, is_head
from onestage.models.spec import INITS, INPUT, Layer, Spec, as_spec, did_you_mean, scaled_spec
from onestage.priors.numpy_codings import output_values

MAX_LAYER_PARAMETERS = 50_000_000


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
                return f"unknown argument {arg!r}{did_you_mean(arg, names)} ({takes})"
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
    `input_size`, in the head's order: largest first) and `feature_sizes_for(size)`, from its
    head `box_coding` and `reg_max`, and the `anchor_config` and `score_mode` it was built with
    (`heads.head_priors`).

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
        anchors: str | None = None,
        score_mode: str | None = None,
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
        self.one_to_one = bool(getattr(head, "one_to_one", False))
        self.feature_sizes = head.feature_sizes_of(head_inputs)
        try:
            self.anchor_config, self.score_mode = head_priors(
                head, len(self.feature_sizes), anchors, score_mode
            )
        except OnestageError as error:
            raise OnestageError(f"{spec.where()}: {error}") from None
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
                        f"not a layer before it{did_you_mean(source, outputs)} (defined so far: "
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
            hint = did_you_mean(layer.block, BLOCKS.names()) or (
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
        coding (`priors.numpy_codings.output_values`)."""
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

    @property
    def backbone_layers(self) -> tuple[str, ...]:
        """The names of the spec's backbone layers (what `freeze=backbone` keeps fixed)."""
        return tuple(layer.name for layer in self.spec.backbone)

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
    anchors: str | None = None,
    score_mode: str | None = None,
    width: float = 1.0,
    depth: float = 1.0,
) -> SpecModel:
    """A fresh model from a spec (a Spec, its mapping, a YAML file or a built-in name), its
    channels and repeats scaled by `width` and `depth` (`spec.scaled_spec`).

    Its blocks must be registered (onestage's own, or from plugins the user loaded). `input_size`
    replaces the spec's; `bn_momentum`, when given, replaces every BatchNorm's momentum (as
    `SeedModel`'s option does); `anchors` and `score_mode` are the head's priors and score mode
    (`heads.head_priors`).
    """
    spec = scaled_spec(as_spec(source), width, depth)
    return SpecModel(spec, num_classes, input_size, bn_momentum, anchors, score_mode)
