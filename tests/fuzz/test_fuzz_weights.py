"""Fuzzing the weights readers: safetensors headers, onestage's JSON metadata and training
state, through `load_weights`, `load_training_state` and `Detector.load`."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.fuzzing import (
    CASES,
    FuzzRun,
    document_values,
    mutate_bytes,
    mutate_tree,
    property_cases,
    seeded,
    tiny_weights,
    with_document,
)
from onestage.checkpoint import METADATA_KEY, load_training_state, load_weights, save_training_state
from onestage.engine.predictor import Detector

READER = "weights"
JSON_VALUE = document_values()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny weights and a training state of one Adam step on them."""
    folder = tmp_path_factory.mktemp("fuzz_weights")
    weights = tiny_weights(folder)
    parameters = [torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.zeros(4))]
    optimizer = torch.optim.Adam(parameters)
    sum(p.sum() for p in parameters).backward()
    optimizer.step()
    state = folder / "last.state.safetensors"
    save_training_state(state, optimizer, {"epoch": 3, "step": 30})
    return {"weights": weights, "state": state, "folder": folder}


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.Adam(
        [torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(4))]
    )


def _mutated(data: bytes, rng, index: int) -> bytes:
    """Case `index` of a safetensors file `data`: odd cases change header bytes, even ones
    onestage's JSON document."""
    if index % 2:
        return _header_mutation(data, rng)
    return with_document(data, mutate_tree(_document(data), rng))


def _header_mutation(data: bytes, rng) -> bytes:
    """Byte-level changes, mostly inside the header (8-byte size, then JSON)."""
    header_end = 8 + int.from_bytes(data[:8], "little")
    if rng.random() < 0.8:
        return mutate_bytes(data[:header_end], rng) + data[header_end:]
    return mutate_bytes(data, rng)


def _document(data: bytes) -> dict:
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return json.loads(header["__metadata__"][METADATA_KEY])


def test_mutated_weights_files(files: dict[str, Path]) -> None:
    run = FuzzRun(READER, "weights files: header bytes and metadata, mutated")
    valid = files["weights"].read_bytes()
    path = files["folder"] / "case.safetensors"
    for index in range(CASES):
        path.write_bytes(_mutated(valid, seeded("weights", index), index))
        load = (
            (lambda: load_weights(path)) if index % 4 == 1 else lambda: Detector.load(path, "cpu")
        )
        run.case(f"weights case {index}", load, path)
    run.finish()


def test_mutated_training_state(files: dict[str, Path]) -> None:
    run = FuzzRun(READER, "training state: header bytes and document, mutated")
    valid = files["state"].read_bytes()
    path = files["folder"] / "case.state.safetensors"
    rng_state = torch.get_rng_state()
    for index in range(CASES):
        path.write_bytes(_mutated(valid, seeded("state", index), index))
        run.case(f"state case {index}", lambda: load_training_state(path, _optimizer()), path)
    torch.set_rng_state(rng_state)
    run.finish()


def test_generated_safetensors_headers(files: dict[str, Path]) -> None:
    run = FuzzRun(READER, "safetensors headers, generated")
    path = files["folder"] / "generated.safetensors"
    tensor_entry = st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "F16", "I64", "BOOL", "X"]) | JSON_VALUE,
            "shape": st.lists(st.integers(-1, 2**40), max_size=4) | JSON_VALUE,
            "data_offsets": st.lists(st.integers(-1, 2**64), max_size=3) | JSON_VALUE,
        }
    )
    metadata = st.dictionaries(
        st.sampled_from([METADATA_KEY, "x"]), st.text(max_size=30) | JSON_VALUE.map(json.dumps)
    )
    header = st.dictionaries(st.text(max_size=8), tensor_entry | JSON_VALUE, max_size=3).flatmap(
        lambda entries: metadata.map(lambda meta: {**entries, "__metadata__": meta})
    )

    @settings(max_examples=CASES)
    @given(header=header | JSON_VALUE, body=st.binary(max_size=64), size_delta=st.integers(-9, 9))
    def check(header: object, body: bytes, size_delta: int) -> None:
        text = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", max(0, len(text) + size_delta)) + text + body)
        failure = run.case(f"header {text!r:.2000}", lambda: load_weights(path), path)
        assert failure is None, failure

    property_cases(run, check)
