"""COCO metrics through COCOeval on small cases with known answers."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from helpers import det, gt
from onestage.detections import ImageDetections
from onestage.metrics.coco import coco_detections, coco_ground_truth, evaluate_coco

SIZE = (300, 300)  # (width, height) of every test image
BACKENDS = ["pycocotools", "faster"]  # both are dependencies (pyproject): both always run


def no_detections() -> ImageDetections:
    return det(np.zeros((0, 4)), [], [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_detector_scores_one_everywhere(backend):
    # One object per image, one of each COCO size: small 20 x 20 = 400 < 32^2,
    # medium 50 x 50 = 2500, large 120 x 120 = 14400 >= 96^2. Every one of the 12 numbers is 1
    # (AR@1 too, since each image has a single object).
    boxes = [(10, 10, 30, 30), (10, 10, 60, 60), (100, 100, 220, 220)]
    gts = [gt([b], [i % 2]) for i, b in enumerate(boxes)]
    dets = [det([b], [0.9], [i % 2]) for i, b in enumerate(boxes)]
    result = evaluate_coco(gts, dets, [SIZE] * 3, ["a", "b"], backend=backend)
    assert result.stats == pytest.approx((1.0,) * 12)
    assert result.ap_per_class == pytest.approx({"a": 1.0, "b": 1.0})
    assert result.ap50_per_class == pytest.approx({"a": 1.0, "b": 1.0})
    assert result.backend == backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_shifted_detection_passes_low_thresholds_only(backend):
    # GT (0,0,100,100), detection shifted 10 px right: IoU = 90*100 / (20000 - 9000) = 0.818.
    # It matches at IoU thresholds 0.50 ... 0.80 (7 of 10) with precision 1, misses at
    # 0.85 ... 0.95: AP50 = AP75 = 1, AP@[.5:.95] = 7/10.
    gts = [gt([(0, 0, 100, 100)], [0])]
    dets = [det([(10, 0, 110, 100)], [0.9], [0])]
    result = evaluate_coco(gts, dets, [SIZE], ["a"], backend=backend)
    assert result.ap50 == pytest.approx(1.0)
    assert result.ap75 == pytest.approx(1.0)
    assert result.ap == pytest.approx(0.7)
    assert result.ap_per_class["a"] == pytest.approx(0.7)
    assert result.ap50_per_class["a"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_difficult_ground_truth_is_ignored(backend):
    # A (normal) found with score 0.8; D (difficult -> iscrowd) undetected but a detection at
    # 0.9 lies on it. Ignored: AP = 1. Counting D would cap recall at 1/2; counting the 0.9
    # detection as FP would make precision 1/2 at the only TP.
    gts = [gt([(0, 0, 50, 50), (100, 100, 150, 150)], [0, 0], [False, True])]
    dets = [det([(100, 100, 150, 150), (0, 0, 50, 50)], [0.9, 0.8], [0, 0])]
    result = evaluate_coco(gts, dets, [SIZE], ["a"], backend=backend)
    assert result.ap == pytest.approx(1.0)
    assert result.ar_max_dets == pytest.approx(1.0)


def test_class_with_only_difficult_ground_truth_has_no_per_class_ap():
    gts = [gt([(0, 0, 50, 50), (100, 100, 150, 150)], [0, 1], [False, True])]
    dets = [det([(0, 0, 50, 50)], [0.8], [0])]
    result = evaluate_coco(gts, dets, [SIZE], ["a", "b"])
    assert result.ap_per_class == pytest.approx({"a": 1.0})


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_dets_limits_recall(backend):
    # 20 objects in one image, each found exactly (decreasing scores). With at most 10
    # detections per image recall is 10/20; with 100 it is 1. AR@1 = 1/20 either way.
    boxes = [(15 * i, 0, 15 * i + 10, 10) for i in range(20)]
    gts = [gt(boxes, [0] * 20)]
    dets = [det(boxes, np.linspace(0.9, 0.5, 20), [0] * 20)]
    at_10 = evaluate_coco(gts, dets, [SIZE], ["a"], max_dets=10, backend=backend)
    at_100 = evaluate_coco(gts, dets, [SIZE], ["a"], max_dets=100, backend=backend)
    assert at_10.ar_max_dets == pytest.approx(0.5)
    assert at_100.ar_max_dets == pytest.approx(1.0)
    assert at_10.ar_1 == at_100.ar_1 == pytest.approx(0.05)
    assert at_10.ap < at_100.ap == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_detections_give_zero(backend):
    gts = [gt([(0, 0, 50, 50)], [0]), gt([(10, 10, 200, 200)], [1])]
    result = evaluate_coco(gts, [no_detections()] * 2, [SIZE] * 2, ["a", "b"], backend=backend)
    assert result.ap == result.ap50 == result.ar_max_dets == 0.0
    assert result.ap_per_class == {"a": 0.0, "b": 0.0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_ids_set_the_order_of_equal_scores_as_pycocotools_does(backend):
    # Two images, one object each; both detections score 0.5: image 0's misses (FP), image 1's
    # is exact (TP). COCOeval ranks equal scores in ascending image id. Ids by position: FP
    # first, precision 0 then 1/2 at recall 1/2 (the only TP), AP = 0.5 x 0.5 = 0.25 (the
    # envelope is 1/2 up to recall 1/2, 51 of 101 recall points: 0.5 x 51/101 exactly).
    # With the dataset's own ids 9 and 4, image 1 comes first: TP then FP, AP = 1 x 51/101.
    gts = [gt([(0, 0, 50, 50)], [0]), gt([(0, 0, 50, 50)], [0])]
    dets = [det([(100, 100, 150, 150)], [0.5], [0]), det([(0, 0, 50, 50)], [0.5], [0])]
    by_position = evaluate_coco(gts, dets, [SIZE] * 2, ["a"], backend=backend)
    own_ids = evaluate_coco(gts, dets, [SIZE] * 2, ["a"], backend=backend, image_ids=[9, 4])
    assert by_position.ap == pytest.approx(0.5 * 51 / 101)
    assert own_ids.ap == pytest.approx(51 / 101)
    with pytest.raises(ValueError, match="image ids"):
        evaluate_coco(gts, dets, [SIZE] * 2, ["a"], image_ids=[3, 3])


def test_backends_agree_on_random_data():
    rng = np.random.default_rng(0)
    gts, dets = [], []
    for _ in range(30):
        corners = rng.uniform(0, 200, (4, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(5, 90, (4, 2))], axis=1)
        classes = rng.integers(0, 3, 4)
        gts.append(gt(boxes, classes, rng.random(4) < 0.1))
        noisy = boxes[rng.integers(0, 4, 8)] + rng.normal(0, 6, (8, 4))
        dets.append(det(noisy, rng.random(8), rng.integers(0, 3, 8)))
    names = ["a", "b", "c"]
    reference = evaluate_coco(gts, dets, [SIZE] * 30, names, backend="pycocotools")
    faster = evaluate_coco(gts, dets, [SIZE] * 30, names, backend="faster")
    assert faster.stats == reference.stats
    assert faster.ap_per_class == pytest.approx(reference.ap_per_class, abs=1e-12)


def test_auto_backend_and_bad_arguments():
    gts, dets = [gt([(0, 0, 50, 50)], [0])], [det([(0, 0, 50, 50)], [0.5], [0])]
    assert evaluate_coco(gts, dets, [SIZE], ["a"]).backend == "faster"
    with pytest.raises(ValueError, match="backend"):
        evaluate_coco(gts, dets, [SIZE], ["a"], backend="detectron")
    with pytest.raises(ValueError, match="max_dets"):
        evaluate_coco(gts, dets, [SIZE], ["a"], max_dets=5)
    with pytest.raises(ValueError, match="image sizes"):
        evaluate_coco(gts, dets, [], ["a"])


def test_per_class_ap50_is_the_first_iou_threshold():
    # GT (0,0,100,100), detection (0,0,100,52): IoU = 5200 / 10000 = 0.52. A TP at IoU 0.50
    # only (0.55 ... 0.95 are above 0.52): AP50 = 1, AP@[.5:.95] = 1/10, AP75 = 0.
    gts = [gt([(0, 0, 100, 100)], [0])]
    dets = [det([(0, 0, 100, 52)], [0.9], [0])]
    result = evaluate_coco(gts, dets, [SIZE], ["a"])
    assert (result.ap50, result.ap75, result.ap) == pytest.approx((1.0, 0.0, 0.1))
    assert result.ap_per_class == pytest.approx({"a": 0.1})
    assert result.ap50_per_class == pytest.approx({"a": 1.0})


def test_per_class_ap_uses_the_max_dets_limit():
    # 20 objects found exactly in one image. With max_dets 10, recall stops at 10/20 with
    # precision 1: 51 of the 101 recall points (0, 0.01, ..., 0.50) score 1, AP = 51/101.
    # With max_dets 100 all 20 are found: AP 1 (the per-class AP is read at the same limit).
    boxes = [(15 * i, 0, 15 * i + 10, 10) for i in range(20)]
    gts = [gt(boxes, [0] * 20)]
    dets = [det(boxes, np.linspace(0.9, 0.5, 20), [0] * 20)]
    at_10 = evaluate_coco(gts, dets, [SIZE], ["a"], max_dets=10)
    at_100 = evaluate_coco(gts, dets, [SIZE], ["a"])
    assert (at_10.max_dets, at_100.max_dets) == (10, 100)
    assert at_10.ap_per_class == pytest.approx({"a": 51 / 101})
    assert at_100.ap_per_class == pytest.approx({"a": 1.0})


def test_without_faster_coco_eval_auto_falls_back_and_faster_fails(monkeypatch):
    # A None entry in sys.modules makes `import faster_coco_eval` raise ImportError.
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    gts, dets = [gt([(0, 0, 50, 50)], [0])], [det([(0, 0, 50, 50)], [0.5], [0])]
    assert evaluate_coco(gts, dets, [SIZE], ["a"]).backend == "pycocotools"
    with pytest.raises(ImportError):
        evaluate_coco(gts, dets, [SIZE], ["a"], backend="faster")


def test_coco_dicts_of_ground_truth_and_detections():
    # Box (10,20,40,60) -> bbox [x, y, w, h] = [10, 20, 30, 40], area 30 x 40 = 1200;
    # (1.5,2,4,8) -> [1.5, 2, 2.5, 6], area 15; the difficult one is a crowd region.
    # Annotation ids count from 1 over all images (COCOeval reads id 0 as "unmatched").
    gts = [
        gt([(10, 20, 40, 60), (0, 0, 5, 5)], [1, 0], [False, True]),
        gt([(1.5, 2, 4, 8)], [0]),
    ]
    truth = coco_ground_truth(gts, [(640, 480), (30, 20)], ["a", "b"], [7, 3])
    assert truth == {
        "images": [{"id": 7, "width": 640, "height": 480}, {"id": 3, "width": 30, "height": 20}],
        "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
        "annotations": [
            {
                "image_id": 7,
                "category_id": 1,
                "bbox": [10, 20, 30, 40],
                "area": 1200,
                "id": 1,
                "iscrowd": 0,
            },
            {
                "image_id": 7,
                "category_id": 0,
                "bbox": [0, 0, 5, 5],
                "area": 25,
                "id": 2,
                "iscrowd": 1,
            },
            {
                "image_id": 3,
                "category_id": 0,
                "bbox": [1.5, 2, 2.5, 6],
                "area": 15,
                "id": 3,
                "iscrowd": 0,
            },
        ],
    }
    dets = [no_detections(), det([(10, 20, 40, 60), (1, 1, 3, 4)], [0.75, 0.5], [1, 0])]
    results = coco_detections(dets, truth)
    assert results == {
        "images": truth["images"],
        "categories": truth["categories"],
        "annotations": [
            {
                "image_id": 3,
                "category_id": 1,
                "bbox": [10, 20, 30, 40],
                "area": 1200,
                "id": 1,
                "score": 0.75,
                "iscrowd": 0,
            },
            {
                "image_id": 3,
                "category_id": 0,
                "bbox": [1, 1, 2, 3],
                "area": 6,
                "id": 2,
                "score": 0.5,
                "iscrowd": 0,
            },
        ],
    }


def test_coco_dicts_refuse_lists_that_do_not_pair_up():
    gts = [gt([(0, 0, 5, 5)], [0])] * 2
    with pytest.raises(ValueError, match=r"zip\(\) argument"):  # image sizes
        coco_ground_truth(gts, [SIZE], ["a"], [0, 1])
    with pytest.raises(ValueError, match=r"zip\(\) argument"):  # image ids (and sizes)
        coco_ground_truth(gts, [SIZE], ["a"], [0])
    truth = coco_ground_truth(gts, [SIZE] * 2, ["a"], [0, 1])
    with pytest.raises(ValueError, match=r"zip\(\) argument"):
        coco_detections([no_detections()], truth)
