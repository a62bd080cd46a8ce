"""Content hashes of weights and training-state files: a corrupt tensor or an edited metadata
field is refused, an older file without a hash (or whose hash covers its tensors alone) still
loads, with a warning."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors_bytes

from helpers import run_in_process, run_onestage, seeded_conv_bn
from onestage.checkpoint import (
    HASH_KEY,
    METADATA_KEY,
    content_hash,
    load_training_state,
    load_weights,
    read_metadata,
    save_training_state,
    save_weights,
    verify_content,
)
from onestage.engine.predictor import WEIGHTS_DIR
from onestage.errors import OnestageError


def flip_last_byte(path: Path) -> None:
    """Flip a byte of the last tensor's data (the end of a safetensors file)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_weights_carry_a_hash_of_their_tensors_and_metadata_and_load_when_intact(
    tmp_path: Path,
):
    path = tmp_path / "w.safetensors"
    model = seeded_conv_bn()
    save_weights(path, model, {"model": "tiny"})
    tensors, metadata = load_weights(path)
    assert metadata == {"format_version": 2, "model": "tiny", HASH_KEY: metadata[HASH_KEY]}
    assert metadata[HASH_KEY] == content_hash(tensors, metadata)
    assert metadata[HASH_KEY] == content_hash(model.state_dict(), {"model": "tiny", **metadata})
    assert metadata[HASH_KEY] != content_hash(tensors)
    assert json.loads(path.with_suffix(".json").read_text())[HASH_KEY] == metadata[HASH_KEY]


def test_a_flipped_byte_in_the_tensor_data_is_a_one_line_error(tmp_path: Path):
    path = tmp_path / "w.safetensors"
    save_weights(path, seeded_conv_bn(), {"model": "tiny"})
    flip_last_byte(path)
    with pytest.raises(OnestageError) as raised:
        load_weights(path)
    assert str(raised.value) == (
        f"{path}: its tensors or metadata do not match its content hash (the file is corrupt, "
        "or was edited after it was written)"
    )


def test_the_hash_sees_names_dtypes_and_shapes_not_only_bytes():
    values = torch.arange(6.0).reshape(2, 3)
    base = content_hash({"a": values})
    assert base != content_hash({"b": values})
    assert base != content_hash({"a": values.reshape(3, 2)})
    assert base != content_hash({"a": values.half()})
    assert base != content_hash({"a": values + 1})
    assert base == content_hash({"a": values.t().contiguous().t()})  # same values, other layout


def test_a_file_without_a_hash_loads_with_a_warning(tmp_path: Path, caplog):
    path = tmp_path / "old.safetensors"
    tensors = dict(seeded_conv_bn().state_dict())
    document = {"format_version": 1, "model": "tiny"}
    path.write_bytes(save_safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(document)}))
    with caplog.at_level(logging.WARNING, logger="onestage"):
        loaded, metadata = load_weights(path)
    assert metadata == document and set(loaded) == set(tensors)
    assert [record.getMessage() for record in caplog.records] == [
        f"{path}: no content hash (an older file): loaded without an integrity check"
    ]


def test_a_format_1_file_checks_its_tensors_and_warns_its_metadata_is_not(tmp_path, caplog):
    path = tmp_path / "v1.safetensors"
    tensors = dict(seeded_conv_bn().state_dict())
    document = {"format_version": 1, "model": "tiny", HASH_KEY: content_hash(tensors)}
    path.write_bytes(save_safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(document)}))
    with caplog.at_level(logging.WARNING, logger="onestage"):
        assert load_weights(path)[1] == document
    assert [record.getMessage() for record in caplog.records] == [
        f"{path}: format version 1: its metadata is not covered by its content hash (loaded "
        "with the tensors checked)"
    ]
    flip_last_byte(path)
    with pytest.raises(OnestageError, match="do not match its content hash"):
        load_weights(path)


def edited_copy(tmp_path: Path, edit) -> Path:
    """A copy of the shipped `animals` whose metadata document went through `edit` (the
    tensors and the recorded hash untouched), as a user editing the header would make it."""
    tensors, metadata = load_weights(WEIGHTS_DIR / "animals.safetensors")
    path = tmp_path / "edited.safetensors"
    header = {METADATA_KEY: json.dumps(edit(dict(metadata)))}
    path.write_bytes(save_safetensors_bytes(tensors, metadata=header))
    return path


def swap_dog_and_goat(metadata: dict) -> dict:
    names = list(metadata["class_names"])
    dog, goat = names.index("dog"), names.index("goat")
    names[dog], names[goat] = names[goat], names[dog]
    return {**metadata, "class_names": names}


@pytest.mark.parametrize(
    "edit",
    [
        swap_dog_and_goat,
        lambda m: {**m, "class_names": [*m["class_names"][:-1], "wolf"]},
        lambda m: {**m, "input_size": 352},
        lambda m: {**m, "format_version": 3},
    ],
    ids=["classes-swapped", "class-renamed", "input-size", "format-version"],
)
def test_a_metadata_edit_is_refused(tmp_path: Path, edit):
    path = edited_copy(tmp_path, edit)
    with pytest.raises(OnestageError) as raised:
        load_weights(path)
    assert str(raised.value).startswith(f"{path}: its tensors or metadata do not match")


def test_the_cli_refuses_edited_class_names_in_one_line(tmp_path: Path, monkeypatch, capsys):
    path = edited_copy(tmp_path, swap_dog_and_goat)
    image = tmp_path / "blank.png"
    Image.new("RGB", (64, 64)).save(image)
    result = run_in_process(
        monkeypatch, capsys, "predict", str(image), "--weights", str(path), "--backend", "torch",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "its tensors or metadata do not match its content hash" in result.stderr


def test_a_corrupt_training_state_is_refused(tmp_path: Path):
    model = seeded_conv_bn()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.rand(1, 3, 5, 5)).sum().backward()
    optimizer.step()
    path = tmp_path / "last.state.safetensors"
    save_training_state(path, optimizer, {"epoch": 1})
    assert load_training_state(path, optimizer)[0] == {"epoch": 1}
    flip_last_byte(path)
    with pytest.raises(OnestageError, match="do not match its content hash"):
        load_training_state(path, optimizer)
    save_training_state(path, optimizer, {"epoch": 1})
    tensors, header = load_safetensors_bytes(path.read_bytes()), read_metadata(path)
    header["counters"]["epoch"] = 7  # an edited counter is refused as a flipped byte is
    path.write_bytes(save_safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(header)}))
    with pytest.raises(OnestageError, match="do not match its content hash"):
        load_training_state(path, optimizer)


def test_the_shipped_weights_carry_their_hash():
    for name in ("animals", "seed_animals"):
        path = WEIGHTS_DIR / f"{name}.safetensors"
        _, metadata = load_weights(path)
        assert metadata[HASH_KEY] == content_hash(load_file(str(path)), metadata)


def test_the_cli_refuses_corrupt_weights_in_one_line(tmp_path: Path):
    path = tmp_path / "animals.safetensors"
    path.write_bytes((WEIGHTS_DIR / "animals.safetensors").read_bytes())
    flip_last_byte(path)
    image = tmp_path / "blank.png"
    Image.new("RGB", (64, 64)).save(image)
    result = run_onestage("predict", "--weights", str(path), str(image), cwd=tmp_path)
    assert result.returncode == 2
    assert "do not match its content hash" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


METADATA = json.loads((WEIGHTS_DIR / "animals.json").read_text())


def test_no_copy_of_the_shipped_weights_with_a_flipped_tensor_byte_loads():
    """300 copies of `animals`, each with one random byte of its tensor data flipped (before
    the hash, 65 of 300 such copies loaded silently): every one is refused."""
    data = (WEIGHTS_DIR / "animals.safetensors").read_bytes()
    tensors_start = 8 + int.from_bytes(data[:8], "little")
    rng = random.Random(13)
    refused = 0
    for _ in range(300):
        mutated = bytearray(data)
        mutated[rng.randrange(tensors_start, len(data))] ^= 1 << rng.randrange(8)
        try:
            verify_content(Path("copy"), load_safetensors_bytes(bytes(mutated)), METADATA)
        except OnestageError:
            refused += 1
    assert refused == 300
