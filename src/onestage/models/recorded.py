"""The model a weights file records: its architecture rebuilt from its metadata, checked first
by `onestage.metadata.check_metadata`.

A weights file is data. Nothing in it makes onestage import code, read another file or load
another YAML: the architecture comes from the spec the file carries, or from the name of a
built-in (never a file path); blocks and models of the user's own must already be registered by
plugins the user loaded, and they are checked against the plugins the file records
(`onestage.models.plugins`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from onestage.errors import OnestageError
from onestage.metadata import recorded_score_mode
from onestage.models.plugins import check_recorded_plugins
from onestage.models.registry import build_built_in
from onestage.models.spec_model import build_spec_model


def model_from_metadata(metadata: dict[str, Any], path: Path, **options: Any) -> nn.Module:
    """A fresh model of the architecture that checked metadata (`check_metadata`) of the weights
    file at `path` records: its spec, else a built-in by name, built for its classes, input
    size, anchors and score mode unless `options` say otherwise (a training run's classes and
    input size, say; `bn_momentum` too). Errors are one line naming `path`: a block or model no
    loaded plugin registers, a plugin whose source differs from the recorded one, a spec that
    does not build."""
    check_recorded_plugins(metadata.get("plugins"), path)
    options = {
        "num_classes": len(metadata["class_names"]),
        "input_size": metadata["input_size"],
        "anchors": metadata["anchors"],
        "score_mode": recorded_score_mode(metadata),
        **options,
    }
    try:
        if "spec" in metadata:
            return build_spec_model(metadata["spec"], **options)
        return build_built_in(metadata["model"], **options)
    except OnestageError as error:
        raise OnestageError(f"{path}: the model it names does not build: {error}") from None
