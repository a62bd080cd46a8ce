"""Prediction and evaluation wiring: exact boxes round-trip to mAP 1, reports, CLI, bad input."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from onestage.anchors import generate_anchors
from onestage.assign import build_targets
from onestage.checkpoint import save_weights
from onestage.config import make_config
from onestage.data.synthesize import synthesize_dataset
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.engine.evaluator import (
    EvalSet,
    coco_results,
    dataset_eval_set,
    evaluate_detector,
    synthetic_eval_set,
    write_report,
)
from onestage.engine.predictor import Detector, PredictOptions, predict_source
from onestage.engine.trainer import Trainer
from onestage.errors import OnestageError
from onestage.metrics import ImageDetections
from onestage.metrics.cartucho import read_cartucho
from onestage.metrics.voc import evaluate_voc
from onestage.models import SeedModel, build_model

CLASSES = ("cat", "dog", "fish")


def metadata(**extra):
    return {
        "model": "seed",
        "num_classes": len(CLASSES),
        "class_names": list(CLASSES),
        "anchors": "seed-intended",
        "input_size": 320,
        "loss": "ssd",
        **extra,
    }


class OracleModel(torch.nn.Module):
    """Outputs, for a known set of images, the predictions that encode their true boxes."""

    feature_sizes_for = staticmethod(SeedModel.feature_sizes_for)

    def __init__(self, eval_set, anchors_xyxy: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        boxes = [
            torch.tensor(gt.boxes_xyxy / 320.0, dtype=torch.float32)
            for gt in eval_set.ground_truths
        ]
        ids = [torch.tensor(gt.class_ids) for gt in eval_set.ground_truths]
        targets = build_targets(
            anchors_xyxy,
            torch.nn.utils.rnn.pad_sequence(boxes, batch_first=True),
            torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1),
            num_classes=len(CLASSES),
            iou_threshold=0.5,
        )
        logits = torch.nn.functional.one_hot(targets.class_targets, len(CLASSES) + 1) * 20.0
        self.outputs = torch.cat([targets.box_targets, logits.float()], dim=-1)
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        start = self.calls
        self.calls += len(images)
        return self.outputs[start : start + len(images)]


def test_exact_predictions_score_map_1_and_the_report_is_complete(tmp_path: Path):
    eval_set = synthetic_eval_set(CLASSES, 6, objects=(1, 4), seed=3)
    anchors = generate_anchors("seed-intended", SeedModel.feature_sizes_for(320))
    detector = Detector(OracleModel(eval_set, anchors), metadata())
    result = evaluate_detector(detector, eval_set, batch_size=4)
    assert result.voc.map == pytest.approx(1.0)
    assert result.coco.ap == pytest.approx(1.0, abs=1e-6)
    total = sum(len(gt.class_ids) for gt in eval_set.ground_truths)
    assert sum(c.true_positives for c in result.voc.counts.values()) == total
    # the confusion matrix at conf 0.25 is diagonal: no misses, no false alarms
    assert np.trace(result.confusion) == total and result.confusion.sum() == total

    cartucho = tmp_path / "cartucho"
    files = {p.name for p in write_report(result, tmp_path / "report", cartucho)}
    assert files >= {
        "metrics.json",
        "per_class.csv",
        "predictions.json",
        "ap_per_class.png",
        "pr_curves.png",
        "pr_per_class.png",
        "confusion_matrix.png",
        "predictions_grid.png",
    }
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["voc"]["mAP50"] == pytest.approx(1.0)
    assert metrics["coco"]["AP"] == pytest.approx(1.0, abs=1e-6)
    assert "Cartucho" in metrics["voc"]["definition"]
    assert metrics["voc"]["iou_convention"] == "continuous"
    csv_lines = (tmp_path / "report" / "per_class.csv").read_text().splitlines()
    assert csv_lines[0].startswith("class,ground_truths,detections,true_positives")
    assert len(csv_lines) == 1 + len(CLASSES)
    predictions = json.loads((tmp_path / "report" / "predictions.json").read_text())
    assert {"image_id", "category_id", "bbox", "score"} <= set(predictions[0])
    # the exported Cartucho files give the same VOC mAP
    gts, dets, names, _ = read_cartucho(cartucho)
    assert evaluate_voc(gts, dets, names).map == pytest.approx(result.voc.map, abs=1e-12)


def test_predict_maps_boxes_back_to_any_image_size(tmp_path: Path):
    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save_weights(weights, build_model("seed", len(CLASSES)), metadata(letterbox=True))
    detector = Detector.load(weights, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    found = detector.predict(image, PredictOptions(conf=0.0, max_det=50))
    assert 0 < len(found) <= 50
    for detection in found:
        x1, y1, x2, y2 = detection.box_xyxy
        assert 0 <= x1 <= x2 <= 200 and 0 <= y1 <= y2 <= 150
        assert detection.class_name == CLASSES[detection.class_id]
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


def onestage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "onestage", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_predict_evaluate_and_bad_weights(tmp_path: Path):
    weights = tmp_path / "w.safetensors"
    save_weights(weights, build_model("seed", len(CLASSES)), metadata())
    images = tmp_path / "images"
    images.mkdir()
    for index in range(2):
        Image.new("RGB", (64 + index * 40, 48), (index * 90, 120, 30)).save(images / f"{index}.png")
    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    predicted = onestage(
        "predict",
        str(images),
        "--weights",
        str(weights),
        "--conf",
        "0.0",
        "--out",
        str(tmp_path / "pred"),
        "--save-txt",
    )
    assert predicted.returncode == 0, predicted.stderr
    assert "skipped:" in predicted.stderr and "broken.jpg" in predicted.stderr
    assert (tmp_path / "pred" / "0.png").is_file() and (tmp_path / "pred" / "1.png").is_file()
    assert (tmp_path / "pred" / "labels" / "0.txt").read_text().count("\n") > 0
    written = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert written[0]["image_id"] in (0, 1)
    assert all(p["category_id"] == CLASSES.index(p["category_name"]) + 1 for p in written)

    evaluated = onestage(
        "evaluate",
        "--weights",
        str(weights),
        "--synthetic",
        "4",
        "--out",
        str(tmp_path / "eval"),
        "--export-cartucho",
        str(tmp_path / "cartucho"),
        "--iou-convention",
        "cartucho",
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "VOC mAP@0.5" in evaluated.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["voc"]["iou_convention"] == "cartucho"
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()
    assert len(list((tmp_path / "cartucho" / "ground-truth").glob("*.txt"))) == 4

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(weights.read_bytes()[:5000])
    not_ours = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(not_ours))
    for bad, phrase in [
        (tmp_path / "missing.safetensors", "weights file not found"),
        (truncated, "truncated or corrupt"),
        (not_ours, "not a onestage weights file"),
    ]:
        result = onestage("predict", str(images / "0.png"), "--weights", str(bad))
        assert result.returncode == 2, result.stderr
        assert phrase in result.stderr and "Traceback" not in result.stderr
    # the former name of the +1 convention is refused in one line that lists the valid ones
    result = onestage(
        "evaluate", "--weights", str(weights), "--synthetic", "1", "--iou-convention", "voc"
    )
    assert result.returncode == 2, result.stderr
    assert "continuous, cartucho" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# A COCO dataset with its own ids: categories non-contiguous and, sorted by id (the dataset's
# class order: fish, cat, dog), in another order than the weights' CLASSES; image ids not in
# file order.
COCO_IDS = {"fish": 3, "cat": 17, "dog": 90}
IMAGE_IDS = [41, 7, 19, 3, 88, 12]


def coco_dataset(root: Path, split: str) -> Path:
    """Six synthetic 320 px images as a COCO split renumbered with COCO_IDS and IMAGE_IDS;
    returns the annotation file."""
    generator = SyntheticGenerator(SyntheticConfig(objects=(1, 4), classes=CLASSES, seed=3))
    synthesize_dataset(generator, root, "coco", {split: len(IMAGE_IDS)})
    path = root / "annotations" / f"instances_{split}.json"
    content = json.loads(path.read_text())
    category = {c["id"]: COCO_IDS[c["name"]] for c in content["categories"]}
    image = {entry["id"]: IMAGE_IDS[i] for i, entry in enumerate(content["images"])}
    content["categories"] = [
        {"id": COCO_IDS[name], "name": name} for name in ("dog", "fish", "cat")
    ]
    for entry in content["images"]:
        entry["id"] = image[entry["id"]]
    for entry in content["annotations"]:
        entry["category_id"] = category[entry["category_id"]]
        entry["image_id"] = image[entry["image_id"]]
    path.write_text(json.dumps(content))
    return path


class NoisyOracle(OracleModel):
    """The oracle with jittered box offsets and class logits: an imperfect detector."""

    def __init__(self, eval_set, anchors_xyxy: torch.Tensor) -> None:
        super().__init__(eval_set, anchors_xyxy)
        noise = torch.randn(self.outputs.shape, generator=torch.Generator().manual_seed(0))
        self.outputs = self.outputs + noise * torch.tensor([0.8] * 4 + [4.0] * (len(CLASSES) + 1))


def test_pycocotools_on_the_dataset_file_and_predictions_json_gives_onestages_numbers(
    tmp_path: Path,
):
    annotations = coco_dataset(tmp_path / "coco", "val")
    eval_set = dataset_eval_set(tmp_path / "coco", CLASSES, "val")
    anchors = generate_anchors("seed-intended", SeedModel.feature_sizes_for(320))
    detector = Detector(NoisyOracle(eval_set, anchors), metadata())
    result = evaluate_detector(detector, eval_set, batch_size=4)
    assert 0.1 < result.coco.ap < 0.9  # not a trivial score
    write_report(result, tmp_path / "report")
    predictions = tmp_path / "report" / "predictions.json"
    written = json.loads(predictions.read_text())
    assert {p["category_id"] for p in written} == set(COCO_IDS.values())
    assert {p["image_id"] for p in written} == set(IMAGE_IDS)

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(annotations))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(predictions)), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    assert tuple(coco_eval.stats) == pytest.approx(result.coco.stats, abs=1e-12)


def test_coco_results_leave_out_classes_the_dataset_lacks():
    eval_set = EvalSet(
        names=["a", "b"],
        ground_truths=[],
        sizes=[(64, 64)] * 2,
        class_names=CLASSES,
        load_image=lambda index: np.zeros((64, 64, 3), np.uint8),
        image_ids=[12, 5],
        category_ids={"fish": 3, "cat": 17},  # no "dog"
    )
    boxes = [(0.5, 1.0, 10.25, 20.0), (3, 3, 9, 9), (1, 2, 3, 4)]
    found = [ImageDetections(boxes, [0.9, 0.8, 0.7], [0, 1, 2]), ImageDetections([], [], [])]
    assert coco_results(eval_set, found) == [
        {"image_id": 12, "category_id": 17, "bbox": [0.5, 1.0, 9.75, 19.0], "score": 0.9},
        {"image_id": 12, "category_id": 3, "bbox": [1.0, 2.0, 2.0, 2.0], "score": 0.7},
    ]
    plain = EvalSet(eval_set.names, [], eval_set.sizes, CLASSES, eval_set.load_image)
    assert [(r["image_id"], r["category_id"]) for r in coco_results(plain, found)] == [
        (1, 1),
        (1, 2),
        (1, 3),
    ]


def test_a_coco_training_sets_category_ids_reach_predict(tmp_path: Path):
    coco_dataset(tmp_path / "coco", "train")
    overrides = {"data": str(tmp_path / "coco"), "val_every": 0, "project": str(tmp_path)}
    trainer = Trainer(make_config("seed", overrides=overrides))
    weights_metadata = trainer.weights_metadata(0, {})
    assert weights_metadata["class_names"] == ["fish", "cat", "dog"]  # sorted by id
    assert weights_metadata["category_ids"] == [3, 17, 90]
    weights = tmp_path / "w.safetensors"
    save_weights(weights, trainer.model, weights_metadata)
    detector = Detector.load(weights, device="cpu")
    options = PredictOptions(conf=0.0, max_det=30)
    predict_source(detector, tmp_path / "coco" / "images" / "train", tmp_path / "pred", options)
    written = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    pairs = {(p["category_name"], p["category_id"]) for p in written}
    assert pairs <= set(COCO_IDS.items()) and len(pairs) >= 2


def test_dataset_classes_unknown_to_the_weights_are_an_error(tmp_path: Path):
    generator = SyntheticGenerator(
        SyntheticConfig(width=96, height=96, size_range=(0.2, 0.5), classes=("cat", "penguin"))
    )
    synthesize_dataset(generator, tmp_path / "d", "yolo", {"val": 2})
    with pytest.raises(OnestageError, match="'penguin' are not known to the weights"):
        dataset_eval_set(tmp_path / "d", CLASSES)


def test_public_api_names_the_engine_functions():
    import onestage
    from onestage.engine.evaluator import evaluate
    from onestage.engine.trainer import train

    assert onestage.Detector is Detector and onestage.evaluate is evaluate
    assert onestage.train is train
    with pytest.raises(OnestageError, match="either a dataset folder or a number"):
        onestage.evaluate("anything")
    with pytest.raises(AttributeError):
        _ = onestage.no_such_name


def test_accelerated_detector_agrees_with_the_plain_one():
    plain = Detector.load("seed_animals", device="cpu")
    fast = Detector.load("seed_animals", device="cpu").accelerate()
    eval_set = synthetic_eval_set(plain.class_names, 1, seed=5)
    image = eval_set.load_image(0)
    expected = plain.predict(image)
    found = fast.predict(image)
    assert len(found) == len(expected) >= 3
    for a, b in zip(found, expected, strict=True):
        assert a.class_id == b.class_id
        assert abs(a.score - b.score) < 0.05
        assert np.allclose(a.box_xyxy, b.box_xyxy, atol=3.0)
