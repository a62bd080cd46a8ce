"""A tuning study's search space: a YAML mapping from config keys to what a trial may give them.

    lr: {log_range: [0.0001, 0.01]}     # a float, sampled on a log scale
    mosaic: {range: [0.0, 1.0]}         # a float, uniform
    epochs: {int_range: [10, 30]}       # an integer, both ends included
    model: {choices: [csp-t, csp-n]}    # one of a list

Every key must be a config key (`onestage.config.config_keys`); a bad file is a one-line error
naming it and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onestage.config import config_keys
from onestage.errors import OnestageError
from onestage.limits import read_text_within
from onestage.parsing import MalformedText, parse_yaml

KINDS = ("range", "log_range", "int_range", "choices")
MAX_SPACE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Dimension:
    """One key's range: `kind` one of KINDS, `values` (lo, hi) or the choices."""

    key: str
    kind: str
    values: tuple[Any, ...]

    def suggest(self, trial: Any) -> Any:
        """This key's value for an Optuna trial."""
        if self.kind == "choices":
            return trial.suggest_categorical(self.key, list(self.values))
        low, high = self.values
        if self.kind == "int_range":
            return trial.suggest_int(self.key, low, high)
        return trial.suggest_float(self.key, low, high, log=self.kind == "log_range")


def read_space(path: Path) -> tuple[Dimension, ...]:
    """The search space in the YAML file at `path` (module docstring)."""
    try:
        loaded = parse_yaml(read_text_within(path, MAX_SPACE_BYTES))
    except FileNotFoundError:
        raise OnestageError(f"{path}: no such search-space file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise OnestageError(f"{path}: cannot read it ({error})") from None
    except MalformedText as error:
        raise OnestageError(f"{path}: malformed YAML ({error.problem})") from None
    if not isinstance(loaded, dict) or not loaded:
        raise OnestageError(f"{path}: a search space is a mapping of config keys to ranges")
    return tuple(_dimension(path, key, value) for key, value in loaded.items())


def _dimension(path: Path, key: Any, value: Any) -> Dimension:
    """One entry of the file, checked."""
    where = f"{path}: {key!r}"
    if key not in config_keys():
        raise OnestageError(f"{where} is not a config key")
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in KINDS:
        raise OnestageError(f"{where}: give one of {', '.join(KINDS)}, e.g. {{range: [0, 1]}}")
    kind, values = next(iter(value.items()))
    if not isinstance(values, list) or not values:
        raise OnestageError(f"{where}: {kind} takes a list")
    if kind == "choices":
        if not all(v is None or isinstance(v, str | int | float | bool) for v in values):
            raise OnestageError(f"{where}: choices are plain values (numbers, text, true/false)")
        return Dimension(key, kind, tuple(values))
    numbers = int if kind == "int_range" else int | float
    if len(values) != 2 or not all(
        isinstance(v, numbers) and not isinstance(v, bool) for v in values
    ):
        raise OnestageError(f"{where}: {kind} takes [low, high], two numbers")
    low, high = values
    if not low < high or (kind == "log_range" and low <= 0):
        raise OnestageError(
            f"{where}: {kind} needs low < high" + (", both above 0" if kind == "log_range" else "")
        )
    return Dimension(key, kind, (low, high))
