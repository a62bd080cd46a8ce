"""Weights and training state in safetensors files (never pickle), with JSON metadata.

A weights file holds the model's state dict and, in its header, a JSON document under the key
"onestage": model name, class names, anchor config, input size, epoch, metrics and, for weights
trained on a COCO dataset, "category_ids" (its category id per class name, in class order). A
training-state file (for --resume) holds the optimiser's tensors, the torch RNG state and, in its
header, the optimiser's hyper-parameters and the loop counters.

safetensors has no checksum, so both documents carry "content_sha256": a SHA-256 over every
tensor's name, dtype, shape and bytes and over the document itself, less that field
(`content_hash`), checked when the file is read. A mismatch (a flipped byte in the tensor data,
class names swapped, an input size edited) is a one-line error naming the file. Files of format
version 1 hashed their tensors alone: they load with a warning that their metadata is not
checked, as files from before the hash load with a warning that nothing is.

The hash detects damage, not forgery: anyone who edits a file can recompute it. Weights from
someone you do not trust are data that onestage reads with checks and limits, never code it
runs (SECURITY.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from onestage.errors import OnestageError, first_line
from onestage.fileio import atomic_write_bytes, atomic_write_text
from onestage.limits import MAX_WEIGHTS_BYTES, read_bytes_within, read_text_within
from onestage.parsing import MalformedText, parse_json

METADATA_KEY = "onestage"
FORMAT_VERSION = 2  # 2: the content hash covers the document too; 1: the tensors alone
HASH_KEY = "content_sha256"
log = logging.getLogger("onestage.checkpoint")


def content_hash(tensors: dict[str, torch.Tensor], document: dict[str, Any] | None = None) -> str:
    """SHA-256 (hex) of the tensors' names, dtypes, shapes and bytes, in name order, then of
    `document` without its HASH_KEY as canonical JSON (sorted keys, no spaces)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    if document is not None:
        rest = {key: value for key, value in document.items() if key != HASH_KEY}
        digest.update(
            b"document|" + json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
        )
    return digest.hexdigest()


def verify_content(path: Path, tensors: dict[str, torch.Tensor], document: dict[str, Any]) -> None:
    """Check `tensors` and `document` against the document's content hash: a mismatch is an
    error naming `path`; a document without one, or of format version 1 (the tensors alone),
    is a warning."""
    expected = document.get(HASH_KEY)
    if expected is not None and not isinstance(expected, str):
        raise OnestageError(f"{path}: its content hash is not a string (the file is corrupt)")
    if expected is None:
        log.warning("%s: no content hash (an older file): loaded without an integrity check", path)
        return
    covers_document = document.get("format_version") != 1
    if content_hash(tensors, document if covers_document else None) != expected:
        raise OnestageError(
            f"{path}: its tensors or metadata do not match its content hash (the file is "
            "corrupt, or was edited after it was written)"
        )
    if not covers_document:
        log.warning(
            "%s: format version 1: its metadata is not covered by its content hash (loaded "
            "with the tensors checked)",
            path,
        )


def save_weights(
    path: Path, model: torch.nn.Module, metadata: dict[str, Any], half: bool = False
) -> None:
    """Write the model's weights (fp16 floats when `half`) and metadata, atomically.

    A sidecar `<name>.json` repeats the metadata for people and tools that do not read headers.
    """
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        tensors[name] = tensor
    own = {key: value for key, value in metadata.items() if key not in ("format_version", HASH_KEY)}
    document = {"format_version": FORMAT_VERSION, **own}
    document[HASH_KEY] = content_hash(tensors, document)
    header = {METADATA_KEY: json.dumps(document)}
    atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata=header))
    atomic_write_text(path.with_suffix(".json"), json.dumps(document, indent=2) + "\n")


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read (state dict, metadata) from a onestage weights file, with clear errors."""
    tensors, header = _read_safetensors(path)
    if METADATA_KEY not in header:
        raise OnestageError(f"{path}: not a onestage weights file (no onestage metadata)")
    metadata = _document(header, path)
    verify_content(path, tensors, metadata)
    return tensors, metadata


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a weights file from its header alone (no tensor read, no hash check:
    for a look before `load_weights`); one-line errors name `path`."""
    try:
        with safe_open(path, "pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise OnestageError(f"{path}: not a readable safetensors file ({error})") from None
    if METADATA_KEY not in header:
        raise OnestageError(f"{path}: not a onestage weights file (no onestage metadata)")
    return _document(header, path)


def _document(header: dict[str, Any], path: Path) -> dict[str, Any]:
    """onestage's JSON document in a safetensors header, as a dict (one-line errors)."""
    text = header[METADATA_KEY]
    try:
        document = parse_json(text) if isinstance(text, str) else None
    except MalformedText as error:
        raise OnestageError(f"{path}: onestage metadata is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise OnestageError(f"{path}: onestage metadata is not a JSON object")
    return document


def weights_epoch(path: Path) -> int | None:
    """The epoch a weights file and its `.json` sidecar both name; None when either is missing
    or unreadable, or when they differ."""
    try:
        epoch = load_weights(path)[1].get("epoch")
        sidecar = json.loads(read_text_within(Path(path).with_suffix(".json")))
    except (OnestageError, OSError, ValueError):
        return None
    return epoch if isinstance(sidecar, dict) and sidecar.get("epoch") == epoch else None


def load_model_weights(
    model: torch.nn.Module, path: Path, expected: dict[str, Any]
) -> dict[str, Any]:
    """Load weights into `model` after checking model name and class count; returns metadata."""
    tensors, metadata = load_weights(path)
    check_identity(metadata, expected, path)
    load_fitting(model, tensors, path)
    return metadata


def check_identity(metadata: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    """A one-line error naming `path` unless the metadata's model name and class count are the
    `expected` ones (a key missing from `expected` is not checked)."""
    for key in ("model", "num_classes"):
        if key in expected and metadata.get(key) != expected[key]:
            raise OnestageError(
                f"{path}: weights are for {key} {metadata.get(key)!r}, not {expected[key]!r}"
            )


def load_fitting(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Load `tensors` (read from `path`) into `model`; an error naming `path` when they do not
    fit its architecture."""
    own = model.state_dict()
    mismatched = [
        name for name, tensor in tensors.items() if name in own and own[name].shape != tensor.shape
    ]
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if mismatched or missing or unexpected:
        raise OnestageError(
            f"{path}: weights do not fit this architecture "
            f"({len(missing)} missing, {len(mismatched)} of another shape, {len(unexpected)} "
            f"unknown, e.g. {(missing + mismatched + unexpected)[0]})"
        )
    model.load_state_dict(tensors)  # copied into the model's own tensors: their dtype stays


def save_training_state(
    path: Path,
    optimizer: torch.optim.Optimizer,
    counters: dict[str, Any],
    raw_weights: dict[str, torch.Tensor] | None = None,
    device: torch.device | None = None,
    averaged_weights: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write optimiser state, the CPU RNG state (and the CUDA one of `device` when it is a GPU),
    loop counters (JSON), the raw training weights and the averaged (EMA) ones, atomically.

    With both kinds of weights in it, the file alone resumes a run: the trainer writes it as an
    epoch's commit, before the weights file, so a run killed between the two still resumes."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    for prefix, weights in (("raw", raw_weights), ("averaged", averaged_weights)):
        for name, tensor in (weights or {}).items():
            tensors[f"{prefix}.{name}"] = tensor.detach().cpu().contiguous()
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "param_groups": state["param_groups"],
        "scalars": scalars,
        "counters": counters,
    }
    document[HASH_KEY] = content_hash(tensors, document)
    header = {METADATA_KEY: json.dumps(document)}
    atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata=header))


def load_training_state(
    path: Path, optimizer: torch.optim.Optimizer, device: torch.device | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Restore optimiser and RNG state from `path` (the CUDA generator of `device` too, when it
    is a GPU and the file has one); returns the loop counters, the raw training weights and the
    averaged (EMA) ones (either empty in files from before they were kept there)."""
    tensors, header = _read_safetensors(path)
    if METADATA_KEY not in header:
        raise OnestageError(f"{path}: not a onestage training-state file")
    document = _document(header, path)
    verify_content(path, tensors, document)
    param_state = _parameter_state(tensors, document, path)
    try:
        optimizer.load_state_dict({"state": param_state, "param_groups": document["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise OnestageError(
            f"{path}: the training state does not fit this optimiser ({first_line(error)})"
        ) from None
    _match_parameter_layouts(optimizer)
    if device is not None and device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    raw, averaged = (
        {key[len(prefix) :]: tensor for key, tensor in tensors.items() if key.startswith(prefix)}
        for prefix in ("raw.", "averaged.")
    )
    return document["counters"], raw, averaged


def _parameter_state(
    tensors: dict[str, torch.Tensor], document: dict[str, Any], path: Path
) -> dict[int, dict[str, Any]]:
    """The optimiser's per-parameter state from a training-state file's tensors and document,
    after checking the document's layout (one-line errors naming `path`)."""
    scalars, counters = document.get("scalars"), document.get("counters")
    groups = document.get("param_groups")
    state_keys = [key.split(".", 2) for key in tensors if key.startswith("optimizer.")]
    layout_ok = (
        isinstance(scalars, dict)
        and all(_is_index(key) and isinstance(values, dict) for key, values in scalars.items())
        and isinstance(counters, dict)
        and isinstance(groups, list)
        and all(isinstance(group, dict) for group in groups)
        and "rng.torch" in tensors
        and all(len(parts) == 3 and _is_index(parts[1]) for parts in state_keys)
    )
    if not layout_ok:
        raise OnestageError(f"{path}: not a training-state file as onestage writes them")
    param_state: dict[int, dict[str, Any]] = {}
    for parts in state_keys:
        param_state.setdefault(int(parts[1]), {})[parts[2]] = tensors[".".join(parts)]
    for param_id, values in scalars.items():
        param_state.setdefault(int(param_id), {}).update(values)
    return param_state


def _is_index(text: str) -> bool:
    """Whether `text` is a parameter index as the state's keys write them."""
    return text.isdecimal() and len(text) <= 9


def _match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each loaded per-parameter state tensor its parameter's memory layout (a
    channels_last model's convolution weights): the state is saved contiguous, and the fused
    Adam step assumes a parameter and its moments share strides (without this, a resumed
    channels_last run drifted from the straight one)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for name, value in state.items():
                misplaced = torch.is_tensor(value) and value.shape == param.shape
                if misplaced and value.stride() != param.stride():
                    state[name] = torch.empty_like(param).copy_(value)  # torch cast its dtype


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise OnestageError(f"{path}: weights file not found")
    data = read_bytes_within(path, MAX_WEIGHTS_BYTES)
    try:
        tensors = load_safetensors_bytes(data)
        header_size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_size]).get("__metadata__", {})
    except (SafetensorError, ValueError, json.JSONDecodeError) as error:
        raise OnestageError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): {error}"
        ) from None
    return tensors, header
