"""The `onestage data` commands end to end, run as a user would (a subprocess; `data split` in
this process, which is faster)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from helpers import file_bytes, run_in_process, run_onestage, write_flat_png


def test_synth_check_convert_show(tmp_path: Path):
    yolo = tmp_path / "yolo"
    made = run_onestage(
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

    checked = run_onestage("data", "check", str(yolo))
    assert checked.returncode == 0, checked.stderr
    assert "yolo dataset, 15 classes" in checked.stdout
    assert "no problems found" in checked.stdout

    voc, coco = tmp_path / "voc", tmp_path / "coco"
    assert run_onestage("data", "convert", str(yolo), str(voc), "--format", "voc").returncode == 0
    assert run_onestage("data", "convert", str(voc), str(coco), "--format", "coco").returncode == 0
    assert (coco / "annotations" / "instances_val.json").is_file()
    assert "coco dataset" in run_onestage("data", "check", str(coco)).stdout

    grid = tmp_path / "grid.png"
    shown = run_onestage("data", "show", str(coco), "--out", str(grid), "--split", "val")
    assert shown.returncode == 0, shown.stderr
    with Image.open(grid) as image:
        assert image.width > 160  # two tiles side by side

    synthetic_grid = tmp_path / "synthetic.png"
    shown = run_onestage(
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


# Files that name the splits and classes only: the same for every seed.
SEED_FREE = {
    "yolo": {"data.yaml"},
    "voc": {"classes.txt", "ImageSets/Main/train.txt", "ImageSets/Main/val.txt"},
    "coco": set(),
}


@pytest.mark.parametrize(
    ("fmt", "image_format"), [("yolo", "png"), ("voc", "jpg"), ("coco", "png")]
)
def test_synth_is_byte_identical_for_one_seed_and_differs_for_another(
    tmp_path: Path, fmt: str, image_format: str
):
    made = {}
    for run, seed in (("a", "3"), ("b", "3"), ("other", "4")):
        out = tmp_path / run
        done = run_onestage(
            "data", "synth", "--out", str(out), "--format", fmt, "--image-format", image_format,
            "--seed", seed, "--split", "train:4", "--split", "val:2", "--size", "96",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        made[run] = file_bytes(out)
    images = {name for name in made["a"] if name.endswith(f".{image_format}")}
    assert len(images) == 6
    assert made["a"].keys() == made["b"].keys() == made["other"].keys()
    assert [name for name in made["a"] if made["a"][name] != made["b"][name]] == []  # byte for byte
    same = {name for name in made["a"] if made["a"][name] == made["other"][name]}
    assert same == SEED_FREE[fmt]  # every image and every label file differs


def test_bad_input_is_one_error_line_with_exit_code_2(tmp_path: Path):
    yolo = tmp_path / "yolo"
    assert (
        run_onestage(
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

    converted = run_onestage(
        "data", "convert", str(yolo), str(tmp_path / "out"), "--format", "coco"
    )
    assert converted.returncode == 2
    assert "Traceback" not in converted.stderr
    error_lines = converted.stderr.strip().splitlines()
    assert len(error_lines) == 1
    assert error_lines[0].startswith(f"error: {label}:{lines}:")

    checked = run_onestage("data", "check", str(yolo))
    assert checked.returncode == 1
    assert f"{label}:{lines}" in checked.stdout.replace("\n", "")

    skipped = run_onestage(
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
        result = run_onestage(*args)
        assert result.returncode == 2, args
        assert phrase in result.stderr and "Traceback" not in result.stderr


def test_small_overshoots_are_clipped_listed_and_refused_with_strict(tmp_path: Path):
    yolo = tmp_path / "yolo"
    for stem in ("a", "b"):
        write_flat_png(yolo / "images" / "train" / f"{stem}.png", 640, 640)
    (yolo / "labels" / "train").mkdir(parents=True)
    label = yolo / "labels" / "train" / "a.txt"
    # The example (3.2 px past the right edge), then a 1 px box just past it.
    label.write_text("0 0.995 0.5 0.02 0.1\n0 1.0015625 0.5 0.0015625 0.1\n")
    (yolo / "labels" / "train" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (yolo / "data.yaml").write_text("train: images/train\nnames: [cat]\n")
    coco = tmp_path / "coco"

    converted = run_onestage("data", "convert", str(yolo), str(coco), "--format", "coco")
    assert converted.returncode == 0, converted.stderr
    (warning,) = converted.stderr.strip().splitlines()
    assert warning.endswith(
        f"{yolo}: 1 box clipped to the image, 1 degenerate box dropped "
        "(onestage data check lists them; --strict refuses them)"
    )
    content = json.loads((coco / "annotations" / "instances_train.json").read_text())
    assert [a["bbox"] for a in content["annotations"]] == [
        [630.4, 288, 9.6, 64],
        [256, 256, 128, 128],
    ]

    checked = run_onestage("data", "check", str(yolo))
    assert checked.returncode == 0, checked.stderr
    assert (
        f"{label}:1: box (630.4, 288, 643.2, 352) overshoots the 640x640 image: "
        "clipped to (630.4, 288, 640, 352)"
    ) in checked.stdout
    assert f"{label}:2: box (640.5, 288, 641.5, 352) overshoots" in checked.stdout
    assert "no problems found" in checked.stdout

    strict_check = run_onestage("data", "check", str(yolo), "--strict")
    assert strict_check.returncode == 1
    assert f"{label}:1: box (630.4, 288, 643.2, 352) lies outside the 640x640 image" in (
        strict_check.stdout
    )

    refused = run_onestage(
        "data", "convert", str(yolo), str(tmp_path / "x"), "--format", "voc", "--strict"
    )
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: {label}:1: box (630.4, 288, 643.2, 352) lies outside the 640x640 image"
    ]


def test_split_prints_each_split_and_errors_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    yolo = tmp_path / "yolo"
    for i in range(10):
        write_flat_png(yolo / "images" / "train" / f"{i}.png", 64, 64)
    (yolo / "labels" / "train").mkdir(parents=True)
    for i in range(8):  # two images without objects
        (yolo / "labels" / "train" / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.2 0.2\n")
    (yolo / "data.yaml").write_text("train: images/train\nnames: [cat, dog]\n")
    out = tmp_path / "out"

    done = run_in_process(
        monkeypatch, capsys, "data", "split", str(yolo), "--out", str(out),
        "--ratios", "0.5", "0.5", "0", "--format", "coco", "--seed", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote 10 images as coco to {out} (seed 5)" in done.stdout
    # stratified: each split has half the cats, half the dogs and half the empty images
    assert "train: 5 images (1 without objects), 4 objects" in done.stdout
    assert "val: 5 images (1 without objects), 4 objects" in done.stdout
    assert "│ cat   │     2 │   2 │" in done.stdout
    assert "test:" not in done.stdout and "┃ test" not in done.stdout
    assert sorted(p.name for p in (out / "annotations").iterdir()) == [
        "instances_train.json",
        "instances_val.json",
    ]

    for args, line in [
        (("--out", str(out)), f"error: {out}: output folder is not empty"),
        (
            ("--out", str(tmp_path / "x"), "--ratios", "0.5", "0.5", "0.5"),
            "error: ratios must sum to 1, got 0.5 0.5 0.5 (sum 1.5)",
        ),
        (("--out", str(tmp_path / "x"), "--format", "kitti"), "error: unknown format 'kitti': "),
    ]:
        refused = run_in_process(monkeypatch, capsys, "data", "split", str(yolo), *args)
        assert refused.returncode == 2
        (error,) = refused.stderr.strip().splitlines()
        assert error.startswith(line)

    # one image: the val and test splits get none
    (yolo / "images" / "list.txt").write_text("train/0.png\n")
    (yolo / "data.yaml").write_text("train: images/list.txt\nnames: [cat, dog]\n")
    alone = run_in_process(
        monkeypatch, capsys, "data", "split", str(yolo), "--out", str(tmp_path / "one")
    )
    assert alone.returncode == 0, alone.stderr
    assert "train: 1 images (0 without objects), 1 objects" in alone.stdout
    assert "val: no images (too few for ratio 0.1), not written" in alone.stdout
