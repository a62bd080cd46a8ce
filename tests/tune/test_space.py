"""A tuning study's search space (`tune.space`): the four kinds read from YAML, each suggested
through Optuna's trial API, and every mistake a one-line error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from onestage.errors import OnestageError
from onestage.tune.space import MAX_SPACE_BYTES, Dimension, read_space


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class RecordingTrial:
    """The part of optuna.Trial a dimension calls, recording the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def suggest_float(self, key, low, high, log=False):
        self.calls.append(("float", key, low, high, log))
        return low

    def suggest_int(self, key, low, high):
        self.calls.append(("int", key, low, high))
        return high

    def suggest_categorical(self, key, choices):
        self.calls.append(("categorical", key, choices))
        return choices[-1]


def test_the_four_kinds_are_read_and_suggested(tmp_path):
    path = write(
        tmp_path,
        "lr: {log_range: [0.0001, 0.01]}\nmosaic: {range: [0, 1]}\n"
        "epochs: {int_range: [5, 20]}\nmodel: {choices: [csp-t, csp-n]}\n",
    )
    space = read_space(path)
    assert space == (
        Dimension("lr", "log_range", (0.0001, 0.01)),
        Dimension("mosaic", "range", (0, 1)),
        Dimension("epochs", "int_range", (5, 20)),
        Dimension("model", "choices", ("csp-t", "csp-n")),
    )
    trial = RecordingTrial()
    assert [dimension.suggest(trial) for dimension in space] == [0.0001, 0, 20, "csp-n"]
    assert trial.calls == [
        ("float", "lr", 0.0001, 0.01, True),
        ("float", "mosaic", 0, 1, False),
        ("int", "epochs", 5, 20),
        ("categorical", "model", ["csp-t", "csp-n"]),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lrr: {range: [0, 1]}\n", "'lrr' is not a config key"),
        ("lr: 0.01\n", "'lr': give one of range, log_range, int_range, choices"),
        ("lr: {uniform: [0, 1]}\n", "'lr': give one of range"),
        ("lr: {range: [0, 1], log_range: [1, 2]}\n", "'lr': give one of range"),
        ("lr: {range: 1}\n", "'lr': range takes a list"),
        ("lr: {range: [1, 0]}\n", "'lr': range needs low < high"),
        ("lr: {log_range: [0, 1]}\n", "'lr': log_range needs low < high, both above 0"),
        ("epochs: {int_range: [1.5, 4]}\n", "'epochs': int_range takes [low, high], two numbers"),
        ("lr: {range: [0, 1, 2]}\n", "'lr': range takes [low, high]"),
        ("lr: {range: [true, 2]}\n", "'lr': range takes [low, high]"),
        ("model: {choices: [[1, 2]]}\n", "'model': choices are plain values"),
        ("- lr\n", "a search space is a mapping of config keys to ranges"),
        ("lr: [\n", "malformed YAML"),
    ],
)
def test_a_bad_space_is_a_one_line_error_naming_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(OnestageError) as raised:
        read_space(path)
    assert str(raised.value).startswith(f"{path}: ") and "\n" not in str(raised.value)
    assert message in str(raised.value)


def test_a_missing_or_oversized_space_file_is_refused(tmp_path):
    with pytest.raises(OnestageError, match="no such search-space file"):
        read_space(tmp_path / "absent.yaml")
    huge = write(tmp_path, "lr: {range: [0, 1]}\n" + "#" * MAX_SPACE_BYTES)
    with pytest.raises(OnestageError, match="larger than"):
        read_space(huge)
