"""Cartucho/mAP export: round trip, and mAP recomputed from the text files as the tool does."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import numpy as np
import pytest

from onestage.detections import ImageDetections
from onestage.metrics import ImageGroundTruth
from onestage.metrics.cartucho import export_cartucho, read_cartucho
from onestage.metrics.voc import evaluate_voc

CLASS_NAMES = ["cat", "dog", "sea lion"]  # "sea lion" is written as "sea_lion"


def random_set(seed: int, n_images: int = 20):
    """Images of 0-5 objects (some difficult) with jittered, duplicated and stray detections.

    Half the boxes have integer corners (so the +1 pixel rule matters at the IoU threshold) and
    scores are rounded to 2 decimals (so equal scores, and the tie order, occur).
    """
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for image in range(n_images):
        n = int(rng.integers(0, 6))
        corners = rng.uniform(0, 250, (n, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(4, 60, (n, 2))], axis=1)
        if image % 2:
            boxes = np.round(boxes)
        classes = rng.integers(0, 3, n)
        gts.append(ImageGroundTruth(boxes, classes, rng.random(n) < 0.15))
        k = int(rng.integers(0, 9))
        source = rng.integers(0, max(n, 1), k)
        det_boxes = (boxes[source] if n else rng.uniform(0, 250, (k, 4))) + rng.normal(0, 4, (k, 4))
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
        if image % 2:
            det_boxes = np.round(det_boxes)
        det_classes = classes[source] if n else rng.integers(0, 3, k)
        det_classes = np.where(rng.random(k) < 0.8, det_classes, rng.integers(0, 3, k))
        dets.append(ImageDetections(det_boxes, np.round(rng.random(k), 2), det_classes))
    return gts, dets


def image_names(n: int) -> list[str]:
    return [f"img_{i:04d}" for i in range(n)]  # sort like their positions (tie order)


# ---- an independent re-implementation of the Cartucho/mAP main.py loop, reading the files ----


def tool_voc_ap(rec: list[float], prec: list[float]) -> float:
    rec = [0.0, *rec, 1.0]
    prec = [0.0, *prec, 0.0]
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    ap = 0.0
    for i in range(1, len(rec)):
        if rec[i] != rec[i - 1]:
            ap += (rec[i] - rec[i - 1]) * prec[i]
    return ap


def tool_map(folder: Path, min_overlap: float = 0.5) -> float:
    ground_truth = {}
    gt_counter = {}
    for txt_file in sorted(glob.glob(str(folder / "ground-truth" / "*.txt"))):
        file_id = os.path.basename(txt_file).split(".txt", 1)[0]
        objects = []
        for line in Path(txt_file).read_text().splitlines():
            if "difficult" in line:
                class_name, left, top, right, bottom, _ = line.split()
                objects.append(
                    {
                        "class": class_name,
                        "bbox": [left, top, right, bottom],
                        "used": False,
                        "difficult": True,
                    }
                )
            else:
                class_name, left, top, right, bottom = line.split()
                objects.append(
                    {"class": class_name, "bbox": [left, top, right, bottom], "used": False}
                )
                gt_counter[class_name] = gt_counter.get(class_name, 0) + 1
        ground_truth[file_id] = objects

    sum_ap = 0.0
    for class_name in sorted(gt_counter):
        predictions = []
        for txt_file in sorted(glob.glob(str(folder / "detection-results" / "*.txt"))):
            file_id = os.path.basename(txt_file).split(".txt", 1)[0]
            for line in Path(txt_file).read_text().splitlines():
                name, confidence, left, top, right, bottom = line.split()
                if name == class_name:
                    predictions.append(
                        {
                            "confidence": confidence,
                            "file_id": file_id,
                            "bbox": [left, top, right, bottom],
                        }
                    )
        predictions.sort(key=lambda x: float(x["confidence"]), reverse=True)

        tp = [0] * len(predictions)
        fp = [0] * len(predictions)
        for idx, prediction in enumerate(predictions):
            ovmax, gt_match = -1, None
            bb = [float(x) for x in prediction["bbox"]]
            for obj in ground_truth[prediction["file_id"]]:
                if obj["class"] != class_name:
                    continue
                bbgt = [float(x) for x in obj["bbox"]]
                bi = [
                    max(bb[0], bbgt[0]),
                    max(bb[1], bbgt[1]),
                    min(bb[2], bbgt[2]),
                    min(bb[3], bbgt[3]),
                ]
                iw = bi[2] - bi[0] + 1
                ih = bi[3] - bi[1] + 1
                if iw > 0 and ih > 0:
                    ua = (
                        (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                        + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                        - iw * ih
                    )
                    ov = iw * ih / ua
                    if ov > ovmax:
                        ovmax, gt_match = ov, obj
            if ovmax >= min_overlap:
                if "difficult" not in gt_match:
                    if not gt_match["used"]:
                        tp[idx] = 1
                        gt_match["used"] = True
                    else:
                        fp[idx] = 1
            else:
                fp[idx] = 1

        cum_tp, cum_fp, rec, prec = 0, 0, [], []
        for t, f in zip(tp, fp, strict=True):
            cum_tp, cum_fp = cum_tp + t, cum_fp + f
            rec.append(cum_tp / gt_counter[class_name])
            # The tool divides by zero here when the top detections only hit difficult objects;
            # a 0 there changes no AP (recall does not move at that point).
            prec.append(cum_tp / (cum_tp + cum_fp) if cum_tp + cum_fp else 0.0)
        sum_ap += tool_voc_ap(rec, prec)
    return sum_ap / len(gt_counter)


# ---- tests ----


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_from_exported_text_matches_evaluate_voc(tmp_path, seed):
    gts, dets = random_set(seed)
    export_cartucho(tmp_path, gts, dets, CLASS_NAMES, image_names(len(gts)))
    expected = evaluate_voc(gts, dets, CLASS_NAMES, iou_convention="cartucho")
    assert 0.0 < expected.map < 1.0
    assert tool_map(tmp_path) == pytest.approx(expected.map, abs=1e-9)


def test_round_trip_reproduces_the_arrays(tmp_path):
    gts, dets = random_set(3)
    names = image_names(len(gts))
    export_cartucho(tmp_path, gts, dets, CLASS_NAMES, names)
    read_gts, read_dets, read_classes, read_names = read_cartucho(tmp_path)
    assert read_names == names
    assert read_classes == ["cat", "dog", "sea_lion"]  # sorted; same order as CLASS_NAMES here
    for original, read in zip(gts, read_gts, strict=True):
        np.testing.assert_array_equal(read.boxes_xyxy, original.boxes_xyxy)  # exact floats
        np.testing.assert_array_equal(read.class_ids, original.class_ids)
        np.testing.assert_array_equal(read.difficult, original.difficult)
    for original, read in zip(dets, read_dets, strict=True):
        np.testing.assert_array_equal(read.boxes_xyxy, original.boxes_xyxy)
        np.testing.assert_array_equal(read.scores, original.scores)
        np.testing.assert_array_equal(read.class_ids, original.class_ids)
    again = evaluate_voc(read_gts, read_dets, read_classes)
    assert again.map == evaluate_voc(gts, dets, CLASS_NAMES).map


def test_file_format_and_empty_images(tmp_path):
    gts = [
        ImageGroundTruth([(1, 2, 30.5, 40), (5, 5, 9, 9)], [2, 0], [False, True]),
        ImageGroundTruth(np.zeros((0, 4)), [], []),
    ]
    dets = [
        ImageDetections([(1, 2, 30.5, 40)], [0.875], [2]),
        ImageDetections(np.zeros((0, 4)), [], []),
    ]
    export_cartucho(tmp_path, gts, dets, CLASS_NAMES, ["a", "b"])
    assert (tmp_path / "ground-truth" / "a.txt").read_text() == (
        "sea_lion 1.0 2.0 30.5 40.0\ncat 5.0 5.0 9.0 9.0 difficult\n"
    )
    assert (tmp_path / "detection-results" / "a.txt").read_text() == (
        "sea_lion 0.875 1.0 2.0 30.5 40.0\n"
    )
    assert (tmp_path / "ground-truth" / "b.txt").read_text() == ""
    assert (tmp_path / "detection-results" / "b.txt").read_text() == ""


def test_refuses_names_the_tool_would_misread(tmp_path):
    gts = [ImageGroundTruth([(0, 0, 5, 5)], [0], [False])]
    dets = [ImageDetections(np.zeros((0, 4)), [], [])]
    with pytest.raises(ValueError, match="class name"):
        export_cartucho(tmp_path, gts, dets, ["difficult_cat"], ["a"])
    with pytest.raises(ValueError, match="collide"):
        export_cartucho(tmp_path, gts, dets, ["sea lion", "sea_lion"], ["a"])
    with pytest.raises(ValueError, match="file stem"):
        export_cartucho(tmp_path, gts, dets, ["cat"], ["sub/a"])


def test_read_requires_both_files(tmp_path):
    gts = [ImageGroundTruth([(0, 0, 5, 5)], [0], [False])]
    dets = [ImageDetections(np.zeros((0, 4)), [], [])]
    export_cartucho(tmp_path, gts, dets, ["cat"], ["a"])
    (tmp_path / "detection-results" / "a.txt").unlink()
    with pytest.raises(ValueError, match="both files"):
        read_cartucho(tmp_path)


def one_image() -> tuple[list[ImageGroundTruth], list[ImageDetections]]:
    """One image: a "cat" object, no detections."""
    return [ImageGroundTruth([(0, 0, 5, 5)], [0], [False])], [ImageDetections([], [], [])]


def test_refused_image_names_by_exact_message(tmp_path):
    gts, dets = one_image()
    with pytest.raises(ValueError, match=r"^2 image names for 1 images$"):
        export_cartucho(tmp_path, gts, dets, ["cat"], ["a", "b"])
    with pytest.raises(ValueError, match=r"^image names must be unique$"):
        export_cartucho(tmp_path, gts * 2, dets * 2, ["cat"], ["a", "a"])
    for name in ["", "sub/a", "sub\\a", ".a"]:
        message = f"image name {name!r} cannot be a file stem"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            export_cartucho(tmp_path, gts, dets, ["cat"], [name])
    assert not (tmp_path / "ground-truth").exists()
    export_cartucho(tmp_path, gts, dets, ["cat"], ["a.b"])  # a dot inside a stem is fine
    assert (tmp_path / "ground-truth" / "a.b.txt").read_text() == "cat 0.0 0.0 5.0 5.0\n"


def write_folder(folder: Path, ground_truth: dict[str, str], detections: dict[str, str]) -> None:
    for sub, files in (("ground-truth", ground_truth), ("detection-results", detections)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for stem, text in files.items():
            (folder / sub / f"{stem}.txt").write_text(text)


@pytest.mark.parametrize(
    ("ground_truth", "detections", "error"),
    [
        # line numbers count blank lines: the bad line is the file's third
        (
            "cat 0 0 5 5\n\ncat 1 2 3\n",
            "",
            "ground-truth/a.txt:3: expected '<class> <l> <t> <r> <b> [difficult]'",
        ),
        (
            "cat 0 0 5 5 hard\n",
            "",
            "ground-truth/a.txt:1: expected '<class> <l> <t> <r> <b> [difficult]'",
        ),
        ("cat 0 0 x 5\n", "", "ground-truth/a.txt:1: not a number in ['0', '0', 'x', '5']"),
        (
            "",
            "\ncat 0.5 0 0 5\n",
            "detection-results/a.txt:2: expected '<class> <confidence> <l> <t> <r> <b>'",
        ),
        (
            "",
            "cat high 0 0 5 5\n",
            "detection-results/a.txt:1: not a number in ['high', '0', '0', '5', '5']",
        ),
    ],
)
def test_read_errors_name_the_file_and_line(tmp_path, ground_truth, detections, error):
    write_folder(tmp_path, {"a": ground_truth}, {"a": detections})
    with pytest.raises(ValueError, match=f"^{re.escape(f'{tmp_path}/{error}')}$"):
        read_cartucho(tmp_path)


def test_unpaired_files_are_listed_first_ten_sorted(tmp_path):
    # Paired: "p". Ground truth only: u00, u02, ... u10; detections only: u01, u03, ... u09.
    # 11 unpaired names; the message lists the first 10 (u00 ... u09).
    unpaired = [f"u{i:02d}" for i in range(11)]
    write_folder(
        tmp_path,
        {"p": "", **{name: "" for name in unpaired[0::2]}},
        {"p": "", **{name: "" for name in unpaired[1::2]}},
    )
    message = f"{tmp_path}: images without both files: {unpaired[:10]}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_cartucho(tmp_path)


def test_read_finds_classes_that_only_one_side_has(tmp_path):
    # "cat" only as ground truth, "dog" only as a detection: both are classes, sorted.
    write_folder(tmp_path, {"a": "cat 0 0 5 5\n"}, {"a": "dog 0.5 1 1 6 6\n"})
    gts, dets, class_names, image_names = read_cartucho(tmp_path)
    assert (class_names, image_names) == (["cat", "dog"], ["a"])
    assert gts[0].class_ids.tolist() == [0] and dets[0].class_ids.tolist() == [1]
    np.testing.assert_array_equal(dets[0].boxes_xyxy, [[1, 1, 6, 6]])
    assert dets[0].scores.tolist() == [0.5]
