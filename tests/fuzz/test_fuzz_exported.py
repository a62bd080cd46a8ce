"""Fuzzing the readers of exported models: an .onnx file's bytes and its onestage metadata,
through `Detector.load`, `read_onnx_metadata` and `metadata_from_map`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
)
from onestage.engine.predictor import Detector
from onestage.errors import OnestageError
from onestage.export.exporter import export_weights
from onestage.export.onnx_file import metadata_from_map, read_onnx_metadata, with_metadata
from onestage.export.seal import HASH_KEY, PLACEHOLDER, seal_bytes

READER = "exported"
JSON_VALUE = document_values()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny detector exported to ONNX (f32), made once for the module."""
    folder = tmp_path_factory.mktemp("fuzz_exported")
    path = export_weights(tiny_weights(folder), "onnx").path
    Detector.load(path)  # ONNX Runtime's first session is slow: not one of the timed cases
    return path


def _sealed(model_bytes: bytes, metadata: object, source: Path) -> bytes:
    """`model_bytes` carrying `metadata`, sealed when it has the hash placeholder."""
    data = with_metadata(model_bytes, metadata)
    try:
        return seal_bytes(data, source)
    except OnestageError:  # the mutation removed or changed the placeholder
        return data


def test_mutated_onnx_files(exported: Path) -> None:
    run = FuzzRun(READER, ".onnx bytes and sealed metadata, mutated")
    valid = exported.read_bytes()
    metadata = {**read_onnx_metadata(exported), HASH_KEY: PLACEHOLDER}
    path = exported.with_name("case.onnx")
    for index in range(CASES):
        rng = seeded("exported", index)
        if index % 2:
            path.write_bytes(mutate_bytes(valid, rng))
        else:
            path.write_bytes(_sealed(valid, mutate_tree(metadata, rng), path))
        load = (lambda: read_onnx_metadata(path)) if index % 4 == 1 else lambda: Detector.load(path)
        run.case(f"exported case {index}", load, path)
    run.finish()


def test_generated_metadata_maps(exported: Path) -> None:
    run = FuzzRun(READER, "metadata maps, generated")
    source = exported.with_name("generated.onnx")
    valid = json.dumps(read_onnx_metadata(exported))
    text = st.one_of(
        JSON_VALUE.map(json.dumps),
        st.text(max_size=40),
        st.builds(lambda cut: valid[:cut], st.integers(0, len(valid))),
        st.dictionaries(st.sampled_from(["model", "class_names", "coding", "x"]), JSON_VALUE).map(
            json.dumps
        ),
    )

    @settings(max_examples=CASES)
    @given(props=st.dictionaries(st.sampled_from(["onestage", "other"]), text))
    def check(props: dict[str, str]) -> None:
        failure = run.case(
            f"props {props!r:.2000}", lambda: metadata_from_map(props, source), source
        )
        assert failure is None, failure

    property_cases(run, check)
