"""Architectures by name: hand-written model classes and the built-in specs.

`build_model(name, num_classes)` takes a registered class name, a built-in spec name
(`models/specs/NAME.yaml`) or the path of a spec file.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any

from torch import nn

from onestage.errors import OnestageError
from onestage.models.spec import SPECS_DIR, spec_names
from onestage.models.spec_model import build_spec_model
from onestage.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")
register_model = MODELS.register
model_class = MODELS.get


def model_names() -> list[str]:
    """Every built-in architecture: the built-in specs and the registered classes."""
    return sorted({*spec_names(), *MODELS.names()})


def is_spec_file(name: str | Path) -> bool:
    """Whether `name` names a spec file rather than a built-in architecture."""
    return Path(name).suffix in (".yaml", ".yml")


def build_model(name: str | Path, num_classes: int, **options: Any) -> nn.Module:
    """A fresh model for `num_classes` object classes (background not counted).

    `name`: a built-in spec, a spec file (.yaml) or a registered class. `options` go to the
    spec builder or the class (e.g. `input_size`, `bn_momentum`).
    """
    if num_classes < 1:
        raise OnestageError(f"num_classes must be at least 1, got {num_classes}")
    if is_spec_file(name):
        return build_spec_model(name, num_classes, **options)
    return build_built_in(str(name), num_classes, **options)


def build_built_in(name: str, num_classes: int, **options: Any) -> nn.Module:
    """A fresh built-in architecture (a built-in spec or a registered class) by name; unlike
    `build_model`, never a file: for names read from a file (weights metadata)."""
    if name in spec_names():
        return build_spec_model(SPECS_DIR / f"{name}.yaml", num_classes, **options)
    if name in MODELS.names():
        return _build_class(model_class(name), num_classes, options)
    close = difflib.get_close_matches(str(name), model_names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise OnestageError(
        f"unknown model {str(name)!r}{hint} (built-in: {', '.join(model_names())}; "
        "or give a spec file NAME.yaml)"
    )


# The build options that say a head's priors and score mode (`heads.head_priors`).
PRIOR_OPTIONS = ("anchors", "score_mode")


def _build_class(cls: type[nn.Module], num_classes: int, options: dict[str, Any]) -> nn.Module:
    """A registered class built with `options`. A class written before heads declared their
    priors takes no `anchors` or `score_mode`: it is built without them, and the model says the
    ones asked for (unchecked, as the class's output was before)."""
    if {"width", "depth"} & options.keys():
        raise OnestageError(
            f"width_multiple and depth_multiple scale a model built from a spec; "
            f"{cls.__name__} is a registered class"
        )
    accepted = inspect.signature(cls).parameters
    priors = {key: options.pop(key) for key in PRIOR_OPTIONS if key in options}
    model = cls(
        num_classes=num_classes, **options, **{k: v for k, v in priors.items() if k in accepted}
    )
    for key, attribute in zip(PRIOR_OPTIONS, ("anchor_config", "score_mode"), strict=True):
        if not hasattr(model, attribute) and priors.get(key) is not None:
            setattr(model, attribute, priors[key])
    return model
