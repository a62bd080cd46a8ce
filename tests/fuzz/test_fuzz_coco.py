"""Fuzzing the COCO reader: instances JSON, mutated as text, as bytes and as a tree."""

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
    mutate_file_bytes,
    mutate_tree,
    property_cases,
    read_mode,
    replaced,
    seeded,
    write_valid_dataset,
)

READER = "coco"
JSON_NUMBER = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(), st.sampled_from([0, 1, 24, 32, 1.0, -1, True])
)
JSON_VALUE = document_values(numbers=JSON_NUMBER)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_valid_dataset(tmp_path_factory.mktemp("fuzz_coco"), "coco")


def test_mutated_json(root: Path) -> None:
    run = FuzzRun(READER, "instances JSON, mutated")
    path = root / "annotations" / "instances_train.json"
    valid = path.read_bytes()
    for index in range(CASES):
        rng = seeded("coco", index)
        if index % 2:
            mutated = mutate_file_bytes(valid, rng)
        else:
            tree = mutate_tree(json.loads(valid), rng)
            mutated = json.dumps(tree, ensure_ascii=rng.random() < 0.5).encode(
                "utf-8", "surrogatepass"
            )
        with replaced(path, mutated):
            run.case(f"coco case {index}", read_mode(root, index), root.parent)
    run.finish()


def test_generated_entries(root: Path) -> None:
    run = FuzzRun(READER, "images, annotations and categories, generated")
    path = root / "annotations" / "instances_val.json"
    image = st.fixed_dictionaries(
        {"id": JSON_NUMBER, "file_name": st.sampled_from(["img1.png", "", "x.png"]) | JSON_VALUE},
        optional={"width": JSON_NUMBER, "height": JSON_NUMBER},
    )
    annotation = st.fixed_dictionaries(
        {"image_id": JSON_NUMBER, "category_id": JSON_NUMBER},
        optional={
            "bbox": st.lists(JSON_NUMBER, max_size=5) | JSON_VALUE,
            "iscrowd": JSON_NUMBER | JSON_VALUE,
        },
    )
    category = st.fixed_dictionaries(
        {"id": JSON_NUMBER, "name": st.sampled_from(["cat", "dog"]) | JSON_VALUE}
    )
    content = st.fixed_dictionaries(
        {
            "images": st.lists(image, max_size=3) | JSON_VALUE,
            "annotations": st.lists(annotation, max_size=4) | JSON_VALUE,
            "categories": st.lists(category, max_size=3) | JSON_VALUE,
        }
    )

    @settings(max_examples=CASES)
    @given(content=content, mode=st.integers(0, 3))
    def check(content: dict, mode: int) -> None:
        text = json.dumps(content).encode("utf-8", "surrogatepass")
        with replaced(path, text):
            failure = run.case(f"instances {text!r:.2000}", read_mode(root, mode), root.parent)
        assert failure is None, failure

    property_cases(run, check)
