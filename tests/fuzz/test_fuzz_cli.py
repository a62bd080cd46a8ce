"""The command line on fuzzed input: mutated datasets through `onestage data check` and a
corrupt weights file through `onestage predict` end in one `error:` line, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PIL import Image

from fuzz.fuzzing import mutate_file_bytes, seeded, tiny_weights, write_valid_dataset
from helpers import run_onestage


def assert_one_error_line(done: subprocess.CompletedProcess, name: str) -> None:
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and name in errors[0], done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("fmt", ["yolo", "voc", "coco"])
def test_data_check_on_mutated_datasets(tmp_path: Path, fmt: str) -> None:
    root = write_valid_dataset(tmp_path, fmt)
    target = {
        "yolo": root / "data.yaml",
        "voc": root / "Annotations" / "img0.xml",
        "coco": root / "annotations" / "instances_train.json",
    }[fmt]
    valid = target.read_bytes()
    for index in range(3):
        target.write_bytes(mutate_file_bytes(valid, seeded(f"cli-{fmt}", index)))
        done = run_onestage("data", "check", str(root))
        assert done.returncode in (0, 1, 2), done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        if done.returncode == 2:
            assert_one_error_line(done, str(root))
    target.write_text("{[\n", encoding="utf-8")  # unreadable in every format
    done = run_onestage("data", "check", str(root))
    assert done.returncode in (1, 2)
    if done.returncode == 2:
        assert_one_error_line(done, str(root))


def test_predict_with_corrupt_weights(tmp_path: Path) -> None:
    weights = tiny_weights(tmp_path)
    data = bytearray(weights.read_bytes())
    data[12] ^= 0xFF  # inside the header's JSON
    weights.write_bytes(bytes(data))
    image = tmp_path / "image.png"
    Image.new("RGB", (40, 30)).save(image)
    done = run_onestage(
        "predict", str(image), "--weights", str(weights), "--out", str(tmp_path / "out")
    )
    assert done.returncode == 2
    assert_one_error_line(done, str(weights))
