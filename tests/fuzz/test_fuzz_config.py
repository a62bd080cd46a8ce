"""Fuzzing the YAML readers of configuration: training configs (`make_config`, overrides) and
model specs (`load_spec`, and building the tiny spec they mutate)."""

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
    seeded,
)
from helpers import TINY_ANCHOR_FREE_SPEC
from onestage.config import config_keys, make_config, parse_override, save_config
from onestage.models.spec import SPECS_DIR, load_spec
from onestage.models.spec_model import build_spec_model

YAML_VALUE = document_values(keys=st.text(max_size=6), text=12, width=3, leaves=8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz_config")
    save_config(make_config("fast"), folder / "train.yaml")
    (folder / "tiny.yaml").write_text(TINY_ANCHOR_FREE_SPEC)
    return folder


def _mutated_yaml(valid: bytes, index: int, rng) -> bytes:
    if index % 2:
        return mutate_file_bytes(valid, rng)
    tree = mutate_tree(yaml.safe_load(valid), rng)
    return yaml.safe_dump(tree, allow_unicode=True).encode("utf-8", "surrogatepass")


def test_mutated_training_configs(folder: Path) -> None:
    run = FuzzRun("config", "training config YAML, mutated")
    path = folder / "case.yaml"
    valid = (folder / "train.yaml").read_bytes()
    for index in range(CASES):
        path.write_bytes(_mutated_yaml(valid, index, seeded("config", index)))
        run.case(f"config case {index}", lambda: make_config("fast", path), path)
    run.finish()


def test_generated_training_configs(folder: Path) -> None:
    run = FuzzRun("config", "training config and overrides, generated")
    path = folder / "generated.yaml"
    keys = st.sampled_from(config_keys()) | st.text(max_size=8)

    @settings(max_examples=CASES)
    @given(values=st.dictionaries(keys, YAML_VALUE, max_size=5), override=st.text(max_size=30))
    def check(values: dict, override: str) -> None:
        path.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")

        def read() -> None:
            make_config(None, path)
            make_config(None, None, dict([parse_override(override)]))

        failure = run.case(f"config {values!r}, override {override!r}", read, "")
        assert failure is None, failure

    property_cases(run, check)


def test_mutated_model_specs(folder: Path) -> None:
    run = FuzzRun("config", "model spec YAML, mutated")
    path = folder / "spec.yaml"
    sources = [(folder / "tiny.yaml").read_bytes()] + [
        spec.read_bytes() for spec in sorted(SPECS_DIR.glob("*.yaml"))
    ]
    for index in range(CASES):
        rng = seeded("spec", index)
        tiny = index % 2 == 0
        path.write_bytes(_mutated_yaml(sources[0] if tiny else rng.choice(sources), index, rng))

        def read(tiny: bool = tiny) -> None:
            spec = load_spec(path)
            if tiny:  # built too: the tiny spec builds in milliseconds
                build_spec_model(spec, num_classes=2)

        run.case(f"spec case {index}", read, path)
    run.finish()
