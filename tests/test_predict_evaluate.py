"""Prediction and evaluation wiring: exact boxes round-trip to mAP 1, reports, CLI, bad input."""

from __future__ import annotations

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
from onestage.engine.evaluator import evaluate_detector, synthetic_eval_set, write_report
from onestage.engine.predictor import Detector, PredictOptions
from onestage.errors import OnestageError
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
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text())[0]["image_id"] in (0, 1)

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
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "VOC mAP@0.5" in evaluated.stdout
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


def test_dataset_classes_unknown_to_the_weights_are_an_error(tmp_path: Path):
    from onestage.data.synthesize import synthesize_dataset
    from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
    from onestage.engine.evaluator import dataset_eval_set

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
