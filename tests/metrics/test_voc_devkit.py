"""The default IoU equals the Pascal VOC devkit (VOCevaldet.m) on VOC-format data.

The devkit scores 1-based inclusive integer pixel boxes: (xmin, ymin, xmax, ymax) is
xmax - xmin + 1 pixels wide. onestage's VOC reader turns them into continuous coordinates
(xmin - 1, ymin - 1, xmax, ymax); the default ("continuous") IoU on those gives the devkit's
IoUs and APs. The "cartucho" convention adds the pixel a second time and does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onestage.data.formats import read_dataset
from onestage.detections import ImageDetections
from onestage.metrics.voc import evaluate_voc, pairwise_iou

CLASSES = ("cat", "dog")
WIDTH, HEIGHT = 120, 90

# ---- the devkit's rules (VOCdevkit 2012, VOCevaldet.m and VOCap.m), on 1-based boxes ----


def devkit_iou(bb: tuple[int, ...], bbgt: tuple[int, ...]) -> float | None:
    """VOCevaldet's overlap of a detection and a ground truth; None where they do not overlap."""
    bi = (max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3]))
    iw = bi[2] - bi[0] + 1
    ih = bi[3] - bi[1] + 1
    if not (iw > 0 and ih > 0):
        return None
    ua = (
        (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
        + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
        - iw * ih
    )
    return iw * ih / ua


def devkit_ap(images: list[dict], class_name: str, min_overlap: float = 0.5) -> float:
    """VOCevaldet for one class: detections of all images by decreasing confidence (stable)."""
    gt = [
        {
            "BB": [o["bbox"] for o in image["objects"] if o["name"] == class_name],
            "diff": [o["difficult"] for o in image["objects"] if o["name"] == class_name],
        }
        for image in images
    ]
    for entry in gt:
        entry["det"] = [False] * len(entry["BB"])
    npos = sum(not d for entry in gt for d in entry["diff"])
    detections = [
        (score, i, bbox)
        for i, image in enumerate(images)
        for name, score, bbox in image["detections"]
        if name == class_name
    ]
    detections.sort(key=lambda d: -d[0])  # MATLAB's sort is stable too
    tp, fp = [0] * len(detections), [0] * len(detections)
    for d, (_, i, bb) in enumerate(detections):
        ovmax, jmax = -np.inf, None
        for j, bbgt in enumerate(gt[i]["BB"]):
            ov = devkit_iou(bb, bbgt)
            if ov is not None and ov > ovmax:
                ovmax, jmax = ov, j
        if ovmax >= min_overlap:
            if not gt[i]["diff"][jmax]:
                if not gt[i]["det"][jmax]:
                    tp[d] = 1
                    gt[i]["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    cum_tp, cum_fp = np.cumsum(tp), np.cumsum(fp)
    rec = cum_tp / npos
    with np.errstate(invalid="ignore"):
        prec = cum_tp / (cum_fp + cum_tp)  # NaN before the first TP or FP: MATLAB's max skips it
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *np.nan_to_num(prec), 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum(
        (mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]
    )


# ---- data: 1-based integer boxes, written as a VOC dataset ----


def one_based_set(seed: int, n_images: int = 8) -> list[dict]:
    """Small boxes (3-30 px, so one pixel matters) with detections 0-3 px off, some strays."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        objects = []
        for _ in range(int(rng.integers(1, 5))):
            w, h = (int(v) for v in rng.integers(3, 31, 2))
            xmin, ymin = int(rng.integers(1, WIDTH - w + 2)), int(rng.integers(1, HEIGHT - h + 2))
            objects.append(
                {
                    "name": CLASSES[int(rng.integers(0, 2))],
                    "bbox": (xmin, ymin, xmin + w - 1, ymin + h - 1),
                    "difficult": bool(rng.random() < 0.15),
                }
            )
        detections = []
        for obj in objects + objects[: int(rng.integers(0, 2))]:  # sometimes a duplicate
            shifted = np.array(obj["bbox"]) + rng.integers(-3, 4, 4)
            xmin, ymin = max(int(shifted[0]), 1), max(int(shifted[1]), 1)
            xmax = min(max(int(shifted[2]), xmin), WIDTH)
            ymax = min(max(int(shifted[3]), ymin), HEIGHT)
            name = obj["name"] if rng.random() < 0.9 else CLASSES[int(rng.integers(0, 2))]
            detections.append((name, float(rng.random()), (xmin, ymin, xmax, ymax)))
        images.append({"objects": objects, "detections": detections})
    return images


def write_voc(root: Path, images: list[dict]) -> None:
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    stems = [f"{i:04d}" for i in range(len(images))]
    (root / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{s}\n" for s in stems))
    for stem, image in zip(stems, images, strict=True):
        Image.new("RGB", (WIDTH, HEIGHT)).save(root / "JPEGImages" / f"{stem}.png")
        objects = "".join(
            f"<object><name>{o['name']}</name><difficult>{int(o['difficult'])}</difficult>"
            "<bndbox>"
            + "".join(
                f"<{tag}>{v}</{tag}>"
                for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), o["bbox"], strict=True)
            )
            + "</bndbox></object>"
            for o in image["objects"]
        )
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.png</filename><size><width>{WIDTH}</width>"
            f"<height>{HEIGHT}</height><depth>3</depth></size>{objects}</annotation>"
        )


def continuous_detections(image: dict) -> ImageDetections:
    """The devkit's 1-based detections in continuous coordinates, by the VOC reader's rule."""
    boxes = [(x1 - 1, y1 - 1, x2, y2) for _, _, (x1, y1, x2, y2) in image["detections"]]
    return ImageDetections(
        np.array(boxes, dtype=float).reshape(-1, 4),
        [score for _, score, _ in image["detections"]],
        [CLASSES.index(name) for name, _, _ in image["detections"]],
    )


# ---- tests ----


def test_devkit_hand_worked_one_pixel_shift():
    # 10 px boxes (1,1,10,10) and (2,2,11,11): 9 x 9 = 81 / (100 + 100 - 81) = 0.681
    assert devkit_iou((2, 2, 11, 11), (1, 1, 10, 10)) == 81 / 119
    # read as continuous (0,0,10,10) and (1,1,11,11): the default IoU is the same number
    a, b = np.array([[1.0, 1, 11, 11]]), np.array([[0.0, 0, 10, 10]])
    assert pairwise_iou(a, b)[0, 0] == 81 / 119
    assert pairwise_iou(a, b, "cartucho")[0, 0] == 100 / 142  # 0.704: the pixel added twice


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_convention_on_read_voc_boxes_equals_the_devkit(tmp_path: Path, seed: int):
    images = one_based_set(seed)
    write_voc(tmp_path, images)
    dataset, _ = read_dataset(tmp_path)
    records = dataset.splits["test"]
    assert dataset.class_names == CLASSES and len(records) == len(images)
    detections = [continuous_detections(image) for image in images]

    for image, record, found in zip(images, records, detections, strict=True):
        ours = pairwise_iou(found.boxes_xyxy, record.boxes_xyxy)  # (D, G)
        for d, (_, _, bb) in enumerate(image["detections"]):
            for g, obj in enumerate(image["objects"]):
                expected = devkit_iou(bb, obj["bbox"])
                assert ours[d, g] == (-1.0 if expected is None else expected)  # bit-identical
    # ... which the +1 rule on the same continuous boxes does not give
    assert not np.array_equal(
        pairwise_iou(detections[0].boxes_xyxy, records[0].boxes_xyxy, "cartucho"),
        pairwise_iou(detections[0].boxes_xyxy, records[0].boxes_xyxy),
    )

    result = evaluate_voc(records, detections, list(CLASSES))
    for name in CLASSES:
        assert result.ap_per_class[name] == pytest.approx(devkit_ap(images, name), abs=1e-12)


def test_a_one_pixel_shift_is_a_miss_for_the_devkit_and_the_default_a_hit_for_cartucho(
    tmp_path: Path,
):
    # A 5 px object (1,1,5,5) and a detection (2,2,6,6), 1-based:
    #   devkit: iw = ih = 5 - 2 + 1 = 4 -> 16 / (25 + 25 - 16) = 0.471 < 0.5 -> FP -> AP 0
    #   continuous, (0,0,5,5) and (1,1,6,6): 4 x 4 = 16 / 34, the same -> AP 0
    #   cartucho, +1 on (0,0,5,5) and (1,1,6,6): 5 x 5 = 25 / (36 + 36 - 25) = 0.532 -> AP 1
    images = [
        {
            "objects": [{"name": "cat", "bbox": (1, 1, 5, 5), "difficult": False}],
            "detections": [("cat", 0.9, (2, 2, 6, 6))],
        }
    ]
    write_voc(tmp_path, images)
    records = read_dataset(tmp_path)[0].splits["test"]
    detections = [continuous_detections(image) for image in images]
    assert devkit_ap(images, "cat") == 0.0
    assert evaluate_voc(records, detections, list(CLASSES)).ap_per_class == {"cat": 0.0}
    cartucho = evaluate_voc(records, detections, list(CLASSES), iou_convention="cartucho")
    assert cartucho.ap_per_class == {"cat": 1.0}
