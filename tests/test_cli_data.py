"""The `onestage data` commands end to end, run as a user would (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image


def onestage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "onestage", *args], capture_output=True, text=True, timeout=300
    )


def test_synth_check_convert_show(tmp_path: Path):
    yolo = tmp_path / "yolo"
    made = onestage(
        "data",
        "synth",
        "--out",
        str(yolo),
        "--split",
        "train:6",
        "--split",
        "val:2",
        "--size",
        "160",
        "--objects",
        "1-3",
        "--seed",
        "4",
    )
    assert made.returncode == 0, made.stderr
    assert len(list((yolo / "images" / "train").glob("*.png"))) == 6
    assert (yolo / "data.yaml").is_file()

    checked = onestage("data", "check", str(yolo))
    assert checked.returncode == 0, checked.stderr
    assert "yolo dataset, 15 classes" in checked.stdout
    assert "no problems found" in checked.stdout

    voc, coco = tmp_path / "voc", tmp_path / "coco"
    assert onestage("data", "convert", str(yolo), str(voc), "--format", "voc").returncode == 0
    assert onestage("data", "convert", str(voc), str(coco), "--format", "coco").returncode == 0
    assert (coco / "annotations" / "instances_val.json").is_file()
    assert "coco dataset" in onestage("data", "check", str(coco)).stdout

    grid = tmp_path / "grid.png"
    shown = onestage("data", "show", str(coco), "--out", str(grid), "--split", "val")
    assert shown.returncode == 0, shown.stderr
    with Image.open(grid) as image:
        assert image.width > 160  # two tiles side by side

    synthetic_grid = tmp_path / "synthetic.png"
    shown = onestage(
        "data",
        "show",
        "--synthetic",
        "--count",
        "4",
        "--size",
        "128",
        "--classes",
        "giraffe face,cat",
        "--out",
        str(synthetic_grid),
    )
    assert shown.returncode == 0, shown.stderr
    assert synthetic_grid.is_file()


def test_bad_input_is_one_error_line_with_exit_code_2(tmp_path: Path):
    yolo = tmp_path / "yolo"
    assert (
        onestage(
            "data",
            "synth",
            "--out",
            str(yolo),
            "--split",
            "train:3",
            "--size",
            "96",
            "--size-range",
            "0.2-0.4",
        ).returncode
        == 0
    )
    label = yolo / "labels" / "train" / "train_000001.txt"
    label.write_text(label.read_text() + "3 0.5 0.5 oops 0.1\n")
    lines = len(label.read_text().splitlines())

    converted = onestage("data", "convert", str(yolo), str(tmp_path / "out"), "--format", "coco")
    assert converted.returncode == 2
    assert "Traceback" not in converted.stderr
    error_lines = converted.stderr.strip().splitlines()
    assert len(error_lines) == 1
    assert error_lines[0].startswith(f"error: {label}:{lines}:")

    checked = onestage("data", "check", str(yolo))
    assert checked.returncode == 1
    assert f"{label}:{lines}" in checked.stdout.replace("\n", "")

    skipped = onestage(
        "data", "convert", str(yolo), str(tmp_path / "out"), "--format", "coco", "--skip-invalid"
    )
    assert skipped.returncode == 0
    assert "skipped:" in skipped.stderr and "wrote 2 images" in skipped.stdout

    for args, phrase in [
        (("data", "check", str(tmp_path / "missing")), "not found"),
        (("data", "synth", "--out", str(tmp_path / "x"), "--split", "train:many"), "NAME:COUNT"),
        (
            ("data", "synth", "--out", str(tmp_path / "x"), "--classes", "no such emoji"),
            "unknown emoji",
        ),
        (("data", "synth", "--out", str(tmp_path / "x"), "--format", "kitti"), "unknown format"),
    ]:
        result = onestage(*args)
        assert result.returncode == 2, args
        assert phrase in result.stderr and "Traceback" not in result.stderr
