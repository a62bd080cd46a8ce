"""Fuzzing the YOLO reader: label files and data.yaml, mutated and generated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.fuzzing import (
    CASES,
    FuzzRun,
    document_values,
    mutate_file_bytes,
    mutate_tree,
    property_cases,
    read_mode,
    replaced,
    seeded,
    write_valid_dataset,
)

READER = "yolo"
NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["0.5", "1", "0", "-0.0", "1e-9", "nan", "inf", "0x1p-3", "1_0", "½"]),
)
LABEL_LINE = st.one_of(
    st.lists(NUMBER, min_size=0, max_size=7).map(" ".join),
    st.text(max_size=60),
)
YAML_VALUE = document_values(keys=st.text(max_size=8) | st.integers(-2, 4), text=20, leaves=12)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_valid_dataset(tmp_path_factory.mktemp("fuzz_yolo"), "yolo")


def test_mutated_label_files(root: Path) -> None:
    run = FuzzRun(READER, "label files, mutated")
    label = root / "labels" / "train" / "img0.txt"
    valid = label.read_bytes()
    for index in range(CASES):
        rng = seeded("yolo-label", index)
        with replaced(label, mutate_file_bytes(valid, rng)):
            run.case(f"yolo-label case {index}", read_mode(root, index), root.parent)
    run.finish()


def test_mutated_data_yaml(root: Path) -> None:
    run = FuzzRun(READER, "data.yaml, mutated")
    data_yaml = root / "data.yaml"
    valid = data_yaml.read_bytes()
    for index in range(CASES):
        rng = seeded("yolo-yaml", index)
        if index % 2:
            mutated = mutate_file_bytes(valid, rng)
        else:
            tree = mutate_tree(yaml.safe_load(valid), rng)
            mutated = yaml.safe_dump(tree, allow_unicode=True).encode("utf-8", "surrogatepass")
        with replaced(data_yaml, mutated):
            run.case(f"yolo-yaml case {index}", read_mode(root, index), root.parent)
    run.finish()


def test_generated_label_lines(root: Path) -> None:
    run = FuzzRun(READER, "label lines, generated")
    label = root / "labels" / "val" / "img1.txt"

    @settings(max_examples=CASES)
    @given(lines=st.lists(LABEL_LINE, max_size=6), mode=st.integers(0, 3))
    def check(lines: list[str], mode: int) -> None:
        text = "\n".join(lines).encode("utf-8", "surrogatepass")
        with replaced(label, text):
            failure = run.case(f"label lines {lines!r}", read_mode(root, mode), root.parent)
        assert failure is None, failure

    property_cases(run, check)


def test_generated_data_yaml(root: Path) -> None:
    run = FuzzRun(READER, "data.yaml, generated")
    data_yaml = root / "data.yaml"
    keys = st.sampled_from(["path", "train", "val", "test", "names", "nc", "download"])

    @settings(max_examples=CASES)
    @given(config=st.dictionaries(keys | st.text(max_size=6), YAML_VALUE, max_size=6))
    def check(config: dict) -> None:
        text = yaml.safe_dump(config, allow_unicode=True).encode("utf-8", "surrogatepass")
        with replaced(data_yaml, text):
            failure = run.case(f"data.yaml {config!r}", read_mode(root, 0), root.parent)
        assert failure is None, failure

    property_cases(run, check)
