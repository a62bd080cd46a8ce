"""Fuzzing the Pascal VOC reader: annotation XML, classes.txt and split lists."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.fuzzing import (
    CASES,
    FuzzRun,
    mutate_file_bytes,
    property_cases,
    read_mode,
    replaced,
    seeded,
    write_valid_dataset,
)

READER = "voc"
FIELD = st.one_of(
    st.sampled_from(["1", "32", "24", "0", "-3", "1e9", "nan", "inf", "2.5", "", " 7 ", "cat"]),
    st.floats().map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.text(max_size=12),
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_valid_dataset(tmp_path_factory.mktemp("fuzz_voc"), "voc")


def test_mutated_files(root: Path) -> None:
    run = FuzzRun(READER, "annotation, classes and split files, mutated")
    targets = [
        root / "Annotations" / "img0.xml",
        root / "Annotations" / "img1.xml",
        root / "classes.txt",
        root / "ImageSets" / "Main" / "train.txt",
    ]
    valid = {path: path.read_bytes() for path in targets}
    for index in range(CASES):
        rng = seeded("voc", index)
        target = targets[0] if index % 3 else rng.choice(targets)
        with replaced(target, mutate_file_bytes(valid[target], rng)):
            run.case(f"voc case {index} ({target.name})", read_mode(root, index), root.parent)
    run.finish()


def _annotation(width: str, height: str, objects: list[tuple[str, ...]]) -> str:
    parts = [
        f"<annotation><filename>img1.png</filename><size><width>{escape(width)}</width>"
        f"<height>{escape(height)}</height><depth>3</depth></size>"
    ]
    for name, difficult, *box in objects:
        coordinates = "".join(
            f"<{tag}>{escape(value)}</{tag}>"
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
        )
        parts.append(
            f"<object><name>{escape(name)}</name><difficult>{escape(difficult)}</difficult>"
            f"<bndbox>{coordinates}</bndbox></object>"
        )
    return "".join(parts) + "</annotation>\n"


def test_generated_annotations(root: Path) -> None:
    run = FuzzRun(READER, "annotation fields, generated")
    xml_path = root / "Annotations" / "img1.xml"
    name = st.sampled_from(["cat", "dog", "bird", ""]) | st.text(max_size=6)
    difficult = st.sampled_from(["0", "1", "", "2", "yes"])
    objects = st.lists(st.tuples(name, difficult, FIELD, FIELD, FIELD, FIELD), max_size=4)

    @settings(max_examples=CASES)
    @given(width=FIELD, height=FIELD, objects=objects, mode=st.integers(0, 3))
    def check(width: str, height: str, objects: list[tuple[str, ...]], mode: int) -> None:
        text = _annotation(width, height, objects).encode("utf-8", "surrogatepass")
        with replaced(xml_path, text):
            failure = run.case(f"annotation {text!r}", read_mode(root, mode), root.parent)
        assert failure is None, failure

    property_cases(run, check)
