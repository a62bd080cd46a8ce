"""The onestage metadata a weights file or an exported file carries, checked without torch.

`check_metadata` refuses, in one line naming the file, metadata a Detector cannot use;
`exported_coding_layout` is what reading an exported graph's raw output needs
(`priors.numpy_codings.numpy_coding`). Rebuilding the torch model a weights file records is
`models.recorded`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onestage.errors import OnestageError
from onestage.limits import MAX_INPUT_SIZE
from onestage.priors.numpy_codings import SCORE_MODES, default_score_mode

# What a plugin registers, by the key its record in a weights file's `plugins` lists them under.
PLUGIN_RECORD_KEYS = ("blocks", "models")


def check_metadata(metadata: dict[str, Any], path: Path, exported: bool = False) -> None:
    """A one-line error naming `path` for metadata a Detector cannot use: a missing key or a
    value of the wrong kind (`exported`: also the coding layout an exported file needs)."""

    def refuse(key: str, expected: str) -> None:
        raise OnestageError(
            f"{path}: onestage metadata: {key!r} must be {expected}, got {metadata[key]!r:.60}"
        )

    required = ("model", "class_names", "anchors", "input_size", *(("coding",) if exported else ()))
    for key in required:
        if key not in metadata:
            raise OnestageError(f"{path}: onestage metadata lacks {key!r}")
    names = metadata["class_names"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        refuse("class_names", "a list of class names")
    size = metadata["input_size"]
    if not (type(size) is int and 1 <= size <= MAX_INPUT_SIZE):
        refuse("input_size", f"an integer from 1 to {MAX_INPUT_SIZE}")
    for key in ("model", "anchors"):
        if not isinstance(metadata[key], str):
            refuse(key, "a string")
    for key, kind, expected in (
        ("loss", str | None, "a string"),
        ("score_mode", str, "a string"),
        ("letterbox", bool, "true or false"),
        ("spec", dict, "a mapping"),
        ("category_ids", list, "a list of integers"),
        ("pretrained", dict, "a mapping"),
    ):
        if key in metadata and not isinstance(metadata[key], kind):
            refuse(key, expected)
    if "plugins" in metadata and not validate_records(metadata["plugins"]):
        refuse("plugins", "a list of plugin records (file, sha256, blocks, models)")
    if exported:
        _check_coding(metadata, path, size)


def _check_coding(metadata: dict[str, Any], path: Path, input_size: int) -> None:
    """The coding layout of an exported file: its box coding, the count that coding needs
    (reg_max or anchors per cell) and levels no larger than the input."""
    coding = metadata["coding"]
    if isinstance(coding, dict):
        box_coding = coding.get("box_coding")
        count_keys = {"points": "reg_max", "anchors": "anchors_per_cell"}
        count_key = count_keys.get(box_coding) if isinstance(box_coding, str) else None
        levels = coding.get("feature_sizes")
        count = coding.get(count_key) if count_key else None
        if (
            type(count) is int
            and 0 <= count <= 64
            and coding.get("score_mode", SCORE_MODES[0]) in SCORE_MODES
            and isinstance(coding.get("anchor_config", ""), str | None)
            and isinstance(levels, list)
            and levels
            and all(
                isinstance(level, list)
                and len(level) == 2
                and all(type(side) is int and 1 <= side <= input_size for side in level)
                for level in levels
            )
        ):
            return
    raise OnestageError(
        f"{path}: onestage metadata: 'coding' is not a coding layout onestage writes, "
        f"got {coding!r:.60}"
    )


def recorded_score_mode(metadata: dict[str, Any]) -> str | None:
    """The score mode the model was built with: recorded since weights record it; before, the
    focal loss's sigmoid, else None (the head's default)."""
    if "score_mode" in metadata:
        return metadata["score_mode"]
    return "sigmoid" if metadata.get("loss") == "focal" else None


def exported_coding_layout(metadata: dict[str, Any]) -> dict[str, Any]:
    """The coding layout of checked exported metadata; files exported before the layout named
    its anchor config and score mode take them from the weights' "anchors" and loss."""
    layout = dict(metadata["coding"])
    anchors = layout["box_coding"] == "anchors"
    layout.setdefault("anchor_config", metadata["anchors"] if anchors else None)
    score_mode = recorded_score_mode(metadata) or default_score_mode(layout["box_coding"])
    layout.setdefault("score_mode", score_mode)
    return layout


def validate_records(records: Any) -> bool:
    """Whether `records` has the shape a weights file's `plugins` takes: a list of records
    (`plugin_records`) or, from older onestage, of file paths."""
    if not isinstance(records, list):
        return False
    for record in records:
        if isinstance(record, str):
            continue
        if not (
            isinstance(record, dict)
            and isinstance(record.get("file"), str)
            and isinstance(record.get("sha256"), str)
            and all(
                isinstance(record.get(kind, []), list)
                and all(isinstance(name, str) for name in record.get(kind, []))
                for kind in PLUGIN_RECORD_KEYS
            )
        ):
            return False
    return True
