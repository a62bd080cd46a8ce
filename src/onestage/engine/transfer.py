"""Starting a training run from weights (`weights=FILE` or a shipped name): fine-tuning, and
transfer to a dataset of other classes.

- The architecture: the config's `model`; without one, the weights' own (their spec, else the
  built-in they name) with their anchor config and, unless the config names a loss, their loss
  and so their score mode; without weights either, `seed`.
- With the weights' classes (names and order) the load is strict, as it always was: the same
  architecture, every tensor. With other classes, each tensor whose name and shape match is
  loaded and the rest keep the fresh model's initialisation: always the class branches (the
  tensors whose shape depends on the number of classes, found by building the model for one
  class more: re-initialised even when the counts agree, as their rows mean other classes),
  and any tensor of another name or shape. At least half of the model's tensors must load:
  fewer means weights of another architecture, refused in one line naming the counts.
- `freeze` keeps layers fixed (`freeze_layers`): their parameters are not trained and their
  BatchNorm layers stay in eval mode, their running statistics fixed (as Ultralytics does).
- The weights of the run record where they came from (`SourceWeights.record`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from onestage.checkpoint import check_identity, content_hash, load_fitting, load_weights
from onestage.config import DEFAULT_MODEL, TrainConfig
from onestage.engine.predictor import resolve_weights
from onestage.engine.train_settings import model_options_for
from onestage.errors import OnestageError
from onestage.metadata import check_metadata
from onestage.models import build_model
from onestage.models.plugins import check_recorded_plugins
from onestage.models.recorded import model_from_metadata

LISTED_LAYERS = 6  # re-initialised layers the message names before it counts the rest


@dataclass(frozen=True)
class SourceWeights:
    """A weights file a run starts from: its path, tensors and metadata, checked on reading."""

    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any]

    @classmethod
    def read(cls, weights: str) -> SourceWeights:
        """The weights file `weights` names, resolved as `predict` resolves names (a path, or
        shipped weights such as `animals`); the plugins it records are checked."""
        path = resolve_weights(weights)
        tensors, metadata = load_weights(path)
        check_recorded_plugins(metadata.get("plugins"), path)
        return cls(path, tensors, metadata)

    def same_classes(self, class_names: Sequence[str]) -> bool:
        """Whether the weights are for these classes, names and order (files without class
        names: the same number of classes)."""
        recorded = self.metadata.get("class_names")
        if recorded is None:
            return self.metadata.get("num_classes") == len(class_names)
        return recorded == list(class_names)

    def record(self, loaded: int, reinitialised: int) -> dict[str, Any]:
        """The run's "pretrained" metadata: the file's name, its content hash (for current
        files, their own `content_sha256`) and the tensors loaded and re-initialised."""
        return {
            "file": self.path.name,
            "sha256": content_hash(self.tensors, self.metadata),
            "loaded": loaded,
            "reinitialised": reinitialised,
        }


def own_architecture(config: TrainConfig, source: SourceWeights) -> TrainConfig:
    """The config of a run that trains the weights' own architecture: their anchor config, and
    their loss unless the config names one."""
    check_metadata(source.metadata, source.path)
    return dataclasses.replace(
        config, anchors=source.metadata["anchors"], loss=config.loss or source.metadata.get("loss")
    )


def model_builder(config: TrainConfig, source: SourceWeights | None) -> Callable[[int], nn.Module]:
    """Builds the run's architecture for a number of classes: the config's model, else the
    weights' own (their recorded score mode unless the config's loss sets one), else seed."""
    options = model_options_for(config)
    if config.model is None and source is not None:
        chosen = {key: value for key, value in options.items() if value is not None}
        return lambda classes: model_from_metadata(
            source.metadata, source.path, num_classes=classes, **chosen
        )
    model = config.model or DEFAULT_MODEL
    return lambda classes: build_model(model, num_classes=classes, **options)


@dataclass(frozen=True)
class Loaded:
    """What loading the source weights did: the names of the tensors loaded, the model's count,
    and the one line to show (None for a strict load, which says nothing)."""

    names: frozenset[str]
    total: int
    message: str | None = None

    @property
    def reinitialised(self) -> int:
        return self.total - len(self.names)


def load_source(
    model: nn.Module,
    source: SourceWeights,
    identity: dict[str, Any],
    class_names: Sequence[str],
    build: Callable[[int], nn.Module],
) -> Loaded:
    """Load the source weights into `model` (made by `build` for `class_names`): strictly, after
    checking `identity` (model name, class count), when the classes are the weights' own; else
    the tensors that match by name and shape, less the class branches (see the module)."""
    own = model.state_dict()
    if source.same_classes(class_names):
        check_identity(source.metadata, identity, source.path)
        load_fitting(model, source.tensors, source.path)
        return Loaded(frozenset(own), len(own))
    branches = class_tensors(model, build, len(class_names))
    names = frozenset(
        name
        for name, tensor in own.items()
        if name not in branches
        and name in source.tensors
        and source.tensors[name].shape == tensor.shape
    )
    if 2 * len(names) < len(own):
        theirs = source.metadata.get("model")
        mine = identity.get("model")
        raise OnestageError(
            f"{source.path}: weights of another architecture: {len(names)} of this model's "
            f"{len(own)} tensors match them by name and shape (at least half must)"
            + (f"; they are for model {theirs!r}, not {mine!r}" if theirs != mine else "")
        )
    model.load_state_dict({name: source.tensors[name] for name in names}, strict=False)
    reinitialised = [name for name in own if name not in names]
    return Loaded(names, len(own), transfer_message(source.path, len(names), reinitialised))


def class_tensors(model: nn.Module, build: Callable[[int], nn.Module], classes: int) -> set[str]:
    """The names of the model's tensors whose shape depends on the number of classes: those
    that differ in the same architecture built for one class more (on the CPU, the random
    generator left as it was)."""
    with torch.random.fork_rng(devices=[]):
        other = build(classes + 1).state_dict()
    return {
        name
        for name, tensor in model.state_dict().items()
        if name not in other or other[name].shape != tensor.shape
    }


def transfer_message(path: Path, loaded: int, reinitialised: list[str]) -> str:
    """`loaded N of M tensors from FILE; re-initialised K: LAYERS` (the layers that own them,
    the first few named and the rest counted)."""
    total = loaded + len(reinitialised)
    line = f"loaded {loaded} of {total} tensors from {path}; re-initialised {len(reinitialised)}"
    layers = list(dict.fromkeys(name.rpartition(".")[0] or name for name in reinitialised))
    if not layers:
        return line
    named = ", ".join(layers[:LISTED_LAYERS])
    rest = len(layers) - LISTED_LAYERS
    return f"{line}: {named}" + (f" and {rest} more layers" if rest > 0 else "")


def freeze_layers(model: nn.Module, freeze: str | None) -> tuple[nn.Module, ...]:
    """Stop training the layers `freeze` names ("backbone": the model's `backbone_layers`; "N":
    its first N layers, in spec order): their parameters get `requires_grad` False. Returns
    their BatchNorm layers, which the training loop keeps in eval mode."""
    if freeze is None:
        return ()
    layers = dict(model.named_children())
    if freeze == "backbone":
        chosen = getattr(model, "backbone_layers", None)
        if chosen is None:
            raise OnestageError(
                f"freeze=backbone: this model declares no backbone; give freeze=N (the first N "
                f"of its {len(layers)} layers)"
            )
    else:
        count = int(freeze)
        if count >= len(layers):
            raise OnestageError(
                f"freeze={count} leaves nothing to train: the model has {len(layers)} layers"
            )
        chosen = list(layers)[:count]
    norms = []
    for name in chosen:
        for module in layers[name].modules():
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                norms.append(module)
    return tuple(norms)
