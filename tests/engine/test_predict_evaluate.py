"""Prediction and evaluation wiring: exact boxes round-trip to mAP 1, reports, CLI, bad input.

Two known-answer detectors: `OracleModel` outputs, image after image, the encoding of given
boxes; `fixed_output_model` is a real seed model (saved and loaded like any weights) whose
output ignores the image and proposes three known boxes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from helpers import run_in_process, run_onestage
from onestage.assign import MaxIoUAssigner, Priors
from onestage.boxes import box_iou
from onestage.checkpoint import save_weights
from onestage.config import make_config
from onestage.data.synthesize import synthesize_dataset
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.detections import ImageDetections
from onestage.drawing import class_colour
from onestage.engine.evaluator import (
    EvalSet,
    coco_results,
    dataset_eval_set,
    evaluate_detector,
    synthetic_eval_set,
    write_report,
)
from onestage.engine.predict_folder import list_images, predict_source
from onestage.engine.predictor import Detector, PredictOptions
from onestage.engine.torch_forward import TorchForward
from onestage.engine.trainer import Trainer
from onestage.errors import DataError, OnestageError
from onestage.metrics.cartucho import read_cartucho
from onestage.metrics.voc import evaluate_voc
from onestage.models import SeedModel, build_model
from onestage.models.seed import LEVEL_NAMES
from onestage.priors.anchors import generate_anchors
from onestage.priors.offsets import encode_offsets

CLASSES = ("cat", "dog", "fish")
ANCHORS = torch.from_numpy(generate_anchors("seed-intended", SeedModel.feature_sizes_for(320)))


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
    """Outputs, image after image, the predictions that encode known boxes: for image i,
    boxes[i] (model-input pixel xyxy) of the weights' class ids class_ids[i], with logit 20 on
    the true class of every matched anchor and on background elsewhere."""

    feature_sizes_for = staticmethod(SeedModel.feature_sizes_for)
    anchors_per_cell = 4
    anchor_config = "seed-intended"  # as the weights' metadata says

    def __init__(self, boxes: list, class_ids: list, anchors_xyxy: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        boxes = [torch.tensor(np.reshape(b, (-1, 4)) / 320.0, dtype=torch.float32) for b in boxes]
        ids = [torch.tensor(np.asarray(c), dtype=torch.int64) for c in class_ids]
        targets = MaxIoUAssigner(iou_threshold=0.5)(
            Priors(anchors_xyxy, (anchors_xyxy.shape[0],)),
            torch.nn.utils.rnn.pad_sequence(boxes, batch_first=True),
            torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1),
            num_classes=len(CLASSES),
        )
        offsets = encode_offsets(targets.box_targets, anchors_xyxy)  # (B, A, 4)
        offsets = offsets.masked_fill(~targets.positive[..., None], 0.0)
        logits = torch.nn.functional.one_hot(targets.class_targets, len(CLASSES) + 1) * 20.0
        self.outputs = torch.cat([offsets, logits.float()], dim=-1)
        self.calls = 0

    @classmethod
    def of(cls, eval_set: EvalSet, anchors_xyxy: torch.Tensor) -> OracleModel:
        """The oracle of a set of 320 px images (input pixels = image pixels)."""
        truths = eval_set.ground_truths
        return cls([gt.boxes_xyxy for gt in truths], [gt.class_ids for gt in truths], anchors_xyxy)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        start = self.calls
        self.calls += len(images)
        return self.outputs[start : start + len(images)]


# The fixed detector's three objects, in score order: class ids and foreground logits (softmax
# score e^L / (e^L + 3): the three other logits are 0).
FIXED_CLASSES = (0, 2, 1)
FIXED_LOGITS = (3.0, 2.0, 1.5)
FIXED_SCORES = tuple(math.exp(v) / (math.exp(v) + len(CLASSES)) for v in FIXED_LOGITS)
# Known answers in original pixels (xyxy, FIXED_CLASSES order), each box at least 10 px inside a
# 200x150 and a 150x200 image, so that clipping cannot hide a wrong mapping.
ORIGINAL_BOXES = np.array([(20, 25, 80, 85), (90, 15, 140, 60), (40, 70, 120, 140)], float)
# Letterboxing a 200x150 image to 320 px: x 1.6, centred rows 40..279 (input = orig x 1.6 + pad).
LETTERBOX_200x150 = ((1.6, 1.6), (0, 40))


def fixed_output_model(input_boxes: np.ndarray) -> SeedModel:
    """A seed model that ignores its image: every weight is zero, so each head outputs its bias.
    The biases make every anchor background (logit 20) except the first three anchors of the 1x1
    level, which propose `input_boxes` (model-input pixel xyxy) of classes FIXED_CLASSES with
    scores FIXED_SCORES."""
    model = build_model("seed", len(CLASSES))
    values = len(CLASSES) + 1
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for level in LEVEL_NAMES:
            getattr(model, f"class_{level}").bias.view(4, values)[:, -1] = 20.0
        boxes = torch.tensor(np.asarray(input_boxes), dtype=torch.float64) / 320.0
        offsets = encode_offsets(boxes, ANCHORS[-4:-1].double(), eps=0.0)  # the 1x1 anchors
        model.box_1x1.bias.view(4, 4)[:3] = offsets.float()
        class_bias = model.class_1x1.bias.view(4, values)
        for anchor, (class_id, logit) in enumerate(zip(FIXED_CLASSES, FIXED_LOGITS, strict=True)):
            class_bias[anchor, -1] = 0.0
            class_bias[anchor, class_id] = logit
    return model


def save_fixed_weights(
    path: Path, scale=LETTERBOX_200x150[0], pad=LETTERBOX_200x150[1], **extra
) -> Path:
    """Weights of the fixed detector whose input boxes are ORIGINAL_BOXES x scale + pad."""
    input_boxes = ORIGINAL_BOXES * np.array(scale * 2) + np.array(pad * 2)
    save_weights(path, fixed_output_model(input_boxes), metadata(**extra))
    return path


def test_exact_predictions_score_map_1_and_the_report_is_complete(tmp_path: Path):
    eval_set = synthetic_eval_set(CLASSES, 6, objects=(1, 4), seed=3)
    detector = Detector(TorchForward(OracleModel.of(eval_set, ANCHORS)), metadata())
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
    # per class: every ground truth found once, nothing else
    per_class = {
        name: sum(int(np.sum(gt.class_ids == index)) for gt in eval_set.ground_truths)
        for index, name in enumerate(CLASSES)
    }
    assert min(per_class.values()) > 0
    assert metrics["counts"] == {
        name: {"ground_truths": n, "detections": n, "true_positives": n, "false_positives": 0}
        for name, n in per_class.items()
    }
    with (tmp_path / "report" / "per_class.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == [
        "class",
        "ground_truths",
        "detections",
        "true_positives",
        "false_positives",
        "voc_ap50",
        "coco_ap",
        "coco_ap50",
    ]
    assert [(r["class"], int(r["ground_truths"]), int(r["true_positives"])) for r in rows] == [
        (name, n, n) for name, n in per_class.items()
    ]
    assert {(r["false_positives"], r["voc_ap50"], r["coco_ap50"]) for r in rows} == {
        ("0", "1.0000", "1.0000")
    }
    # predictions.json: exactly the ground truths, image id = position + 1, category = class + 1
    predictions = json.loads((tmp_path / "report" / "predictions.json").read_text())
    found = sorted((p["image_id"], p["category_id"], *p["bbox"]) for p in predictions)
    truth = sorted(
        (index + 1, int(class_id) + 1, x1, y1, x2 - x1, y2 - y1)
        for index, gt in enumerate(eval_set.ground_truths)
        for (x1, y1, x2, y2), class_id in zip(gt.boxes_xyxy.tolist(), gt.class_ids, strict=True)
    )
    assert len(found) == total == len(truth)
    assert np.array(found) == pytest.approx(np.array(truth), abs=1e-3)
    assert all(p["score"] > 0.999 for p in predictions)
    # the exported Cartucho files give the same VOC mAP
    gts, dets, names, _ = read_cartucho(cartucho)
    assert evaluate_voc(gts, dets, names).map == pytest.approx(result.voc.map, abs=1e-12)


@pytest.mark.parametrize(
    ("width", "height", "letterbox", "scale", "pad"),
    [
        (200, 150, True, *LETTERBOX_200x150),
        (150, 200, True, (1.6, 1.6), (40, 0)),  # portrait: centred columns 40..279
        (200, 150, False, (1.6, 320 / 150), (0, 0)),  # stretched: each side to 320
    ],
    ids=["letterbox-landscape", "letterbox-portrait", "stretch"],
)
def test_predict_maps_boxes_back_to_any_image_size(
    tmp_path: Path, width, height, letterbox, scale, pad
):
    """The model sees the image fitted to 320 px where the geometry says (letterboxed: scaled to
    fit and centred on grey; stretched: each side scaled) and the boxes it outputs in input pixels
    come back as exactly the known boxes of the original image."""
    weights = save_fixed_weights(tmp_path / "w.safetensors", scale, pad, letterbox=letterbox)
    detector = Detector.load(weights, device="cpu")
    seen: list[torch.Tensor] = []
    detector.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    colour = (200, 30, 60)
    found = detector.predict(np.full((height, width, 3), colour, dtype=np.uint8))

    (fitted,) = seen
    content = ~torch.isclose(fitted[0], torch.tensor(114 / 255)).all(dim=0)  # not letterbox grey
    rows, columns = (content.any(dim=d).nonzero().flatten().tolist() for d in (1, 0))
    pad_x, pad_y = pad
    assert (rows[0], rows[-1] + 1, columns[0], columns[-1] + 1) == (
        pad_y,
        320 - pad_y,
        pad_x,
        320 - pad_x,
    )
    expected_input = torch.full((3, 320, 320), 114 / 255)
    expected_input[:, pad_y : 320 - pad_y, pad_x : 320 - pad_x] = (
        torch.tensor(colour)[:, None, None] / 255
    )
    assert torch.allclose(fitted[0], expected_input, atol=1e-6)

    assert [d.class_name for d in found] == [CLASSES[i] for i in FIXED_CLASSES]
    assert [d.class_id for d in found] == list(FIXED_CLASSES)
    assert np.array([d.box_xyxy for d in found]) == pytest.approx(ORIGINAL_BOXES, abs=1e-3)
    assert [d.score for d in found] == pytest.approx(FIXED_SCORES, abs=1e-6)
    # the same through a PIL image and a file path
    picture = Image.new("RGB", (width, height), colour)
    picture.save(tmp_path / "image.png")
    for source in (picture, tmp_path / "image.png"):
        again = detector.predict(source)
        assert np.array([d.box_xyxy for d in again]) == pytest.approx(ORIGINAL_BOXES, abs=1e-3)


def test_one_read_only_image_reaches_the_model_as_a_batch_does(tmp_path: Path):
    """One image is batched without a copy, yet the model gets it laid out as a stacked batch
    (channels_last strides: torch's fast CPU path; a batch axis without a real stride lost it
    and the forward took 2.4x as long), and a read-only image is left as it was."""
    weights = save_fixed_weights(tmp_path / "w.safetensors", (1.0, 1.0), (0, 0), letterbox=True)
    detector = Detector.load(weights, device="cpu")
    layouts: list[bool] = []
    detector.model.register_forward_pre_hook(
        lambda module, args: layouts.append(
            args[0].is_contiguous(memory_format=torch.channels_last)
        )
    )
    image = np.full((320, 320, 3), 50, dtype=np.uint8)
    image.flags.writeable = False
    batch = detector.fit_batch([image])[0]
    assert np.shares_memory(batch, image)
    assert batch.strides == np.stack([image]).transpose(0, 3, 1, 2).strides
    detector.detect([image])
    detector.detect([image, image])
    assert layouts == [True, True]
    assert (image == 50).all()


def test_evaluation_maps_a_datasets_class_ids_to_the_weights_by_name(tmp_path: Path):
    """A YOLO dataset lists its classes as fish, cat, dog (the weights: cat, dog, fish); an oracle
    that outputs each object under the weights' id of its name scores mAP 1, and the counts land
    under the right names (1 cat, 2 dogs, 3 fish: a permutation shows)."""
    objects = {  # image stem -> (class name, xyxy pixels) on a 320x320 image
        "a": [
            ("cat", (20, 30, 120, 110)),
            ("fish", (150, 160, 300, 300)),
            ("fish", (30, 200, 100, 290)),
        ],
        "b": [
            ("dog", (40, 40, 200, 200)),
            ("fish", (220, 20, 300, 100)),
            ("dog", (210, 180, 310, 310)),
        ],
    }
    order = ["fish", "cat", "dog"]
    root = tmp_path / "yolo"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    config = {"path": ".", "val": "images/val", "names": order}
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    for stem, items in objects.items():
        Image.new("RGB", (320, 320), (90, 90, 90)).save(root / "images" / "val" / f"{stem}.png")
        lines = [
            f"{order.index(name)} {(x1 + x2) / 640} {(y1 + y2) / 640} {(x2 - x1) / 320} "
            f"{(y2 - y1) / 320}\n"
            for name, (x1, y1, x2, y2) in items
        ]
        (root / "labels" / "val" / f"{stem}.txt").write_text("".join(lines))

    eval_set = dataset_eval_set(root, CLASSES)
    assert eval_set.names == ["a", "b"] and eval_set.class_names == CLASSES
    assert [gt.class_ids.tolist() for gt in eval_set.ground_truths] == [
        [CLASSES.index(name) for name, _ in objects[stem]] for stem in ("a", "b")
    ]
    oracle = OracleModel(
        [np.array([box for _, box in objects[stem]], float) for stem in eval_set.names],
        [[CLASSES.index(name) for name, _ in objects[stem]] for stem in eval_set.names],
        ANCHORS,
    )
    result = evaluate_detector(Detector(TorchForward(oracle), metadata()), eval_set)
    assert result.voc.map == pytest.approx(1.0)
    assert result.coco.ap == pytest.approx(1.0, abs=1e-6)
    counts = {
        name: (c.ground_truths, c.detections, c.true_positives)
        for name, c in result.voc.counts.items()
    }
    assert counts == {"cat": (1, 1, 1), "dog": (2, 2, 2), "fish": (3, 3, 3)}
    assert result.voc.ap_per_class == pytest.approx({"cat": 1.0, "dog": 1.0, "fish": 1.0})


def by_file(predictions: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for entry in predictions:
        grouped.setdefault(entry["file_name"], []).append(entry)
    return grouped


def check_image_predictions(entries: list[dict], image_id, scale: float) -> None:
    """One image's predictions.json entries are the fixed detector's three boxes, mapped to an
    image `scale` times the size of 200x150."""
    assert [e["image_id"] for e in entries] == [image_id] * 3
    assert [(e["category_name"], e["category_id"]) for e in entries] == [
        (CLASSES[i], i + 1) for i in FIXED_CLASSES
    ]
    boxes = ORIGINAL_BOXES * scale
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    assert np.array([e["bbox"] for e in entries]) == pytest.approx(xywh, abs=0.006)
    assert [e["score"] for e in entries] == pytest.approx(FIXED_SCORES, abs=6e-6)


def test_cli_predict_writes_known_boxes_for_a_folder_a_glob_and_one_image(tmp_path: Path):
    """A folder (an unreadable image skipped, a non-image ignored), a glob and a single image;
    predictions.json, --save-txt labels and annotated images all show the known boxes."""
    weights = save_fixed_weights(tmp_path / "w.safetensors", letterbox=True)
    images = tmp_path / "images"
    images.mkdir()
    colour = (30, 160, 90)
    sizes = {"7.png": (200, 150), "big.png": (400, 300)}  # same letterbox; big = 2x the boxes
    for name, size in sizes.items():
        Image.new("RGB", size, colour).save(images / name)
    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    (images / "notes.txt").write_text("not an image\n")

    predicted = run_onestage(
        "predict",
        str(images),
        "--weights",
        str(weights),
        "--out",
        str(tmp_path / "pred"),
        "--save-txt",
    )
    assert predicted.returncode == 0, predicted.stderr
    assert "skipped:" in predicted.stderr and "broken.jpg" in predicted.stderr
    assert "notes.txt" not in predicted.stderr
    assert "2 image(s), 6 detection(s)" in predicted.stdout
    out = tmp_path / "pred"
    written = by_file(json.loads((out / "predictions.json").read_text()))
    assert list(written) == ["7.png", "big.png"]
    check_image_predictions(written["7.png"], 7, 1.0)
    check_image_predictions(written["big.png"], "big", 2.0)
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["7.txt", "big.txt"]
    for name, (width, height) in sizes.items():
        # labels/<stem>.txt: class cx cy w h score, normalised, the same detections as the JSON
        lines = (out / "labels" / f"{Path(name).stem}.txt").read_text().splitlines()
        rows = np.array([[float(v) for v in line.split()] for line in lines])
        entries = written[name]
        assert rows.shape == (3, 6)
        assert rows[:, 0].tolist() == [e["category_id"] - 1 for e in entries]
        assert rows[:, 0].tolist() == [CLASSES.index(e["category_name"]) for e in entries]
        x, y, w, h = np.array([e["bbox"] for e in entries]).T
        normalised = np.stack([(x + w / 2) / width, (y + h / 2) / height, w / width, h / height])
        assert rows[:, 1:5] == pytest.approx(normalised.T, abs=1e-4)
        boxes = ORIGINAL_BOXES * (width / 200)
        truth = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
        assert rows[:, 1:5] == pytest.approx(truth / [width, height, width, height], abs=2e-6)
        assert rows[:, 5] == pytest.approx([e["score"] for e in entries], abs=1e-5)
        # the annotated image: same size, each box's left edge in its class colour, rest intact
        annotated = np.asarray(Image.open(out / name).convert("RGB"))
        assert annotated.shape == (height, width, 3)
        assert tuple(annotated[-2, -2]) == colour
        for (x1, y1, _, y2), class_id in zip(boxes, FIXED_CLASSES, strict=True):
            edge = annotated[int((y1 + y2) / 2), round(x1) - 1 : round(x1) + 2]
            assert class_colour(class_id) in [tuple(p) for p in edge]

    # a glob (expanded by onestage, not a shell) picks only the images it matches; no --save-txt
    globbed = run_onestage(
        "predict",
        str(images / "[0-9]*.png"),
        "--weights",
        str(weights),
        "--out",
        str(tmp_path / "glob"),
    )
    assert globbed.returncode == 0, globbed.stderr
    assert "skipped" not in globbed.stderr
    assert sorted(p.name for p in (tmp_path / "glob").iterdir()) == ["7.png", "predictions.json"]
    written = by_file(json.loads((tmp_path / "glob" / "predictions.json").read_text()))
    assert list(written) == ["7.png"]
    check_image_predictions(written["7.png"], 7, 1.0)

    # a single image (in-process: the CLI passes its source string through unchanged)
    detector = Detector.load(weights, device="cpu")
    summary = predict_source(detector, str(images / "big.png"), tmp_path / "one", save_txt=True)
    assert (summary.images, summary.detections, summary.skipped) == (1, 3, [])
    written = by_file(json.loads((tmp_path / "one" / "predictions.json").read_text()))
    assert list(written) == ["big.png"]
    check_image_predictions(written["big.png"], "big", 2.0)
    assert [p.name for p in (tmp_path / "one" / "labels").iterdir()] == ["big.txt"]
    assert list_images(images) == [images / "7.png", images / "big.png", images / "broken.jpg"]
    with pytest.raises(DataError, match=r"broken\.jpg"):
        predict_source(detector, images / "broken.jpg", tmp_path / "bad")
    with pytest.raises(OnestageError, match="no images found"):
        list_images(images / "*.gif")


def test_cli_predict_iou_reaches_nms(tmp_path: Path, monkeypatch, capsys, nms_thresholds):
    weights = save_fixed_weights(tmp_path / "w.safetensors", letterbox=True)
    image = tmp_path / "7.png"
    Image.new("RGB", (200, 150), (30, 160, 90)).save(image)
    result = run_in_process(
        monkeypatch, capsys, "predict", str(image), "--weights", str(weights),
        "--backend", "torch", "--iou", "0.3", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert nms_thresholds == [0.3]  # not the default 0.5


def test_cli_evaluate_and_bad_weights(tmp_path: Path, monkeypatch, capsys):
    weights = save_fixed_weights(tmp_path / "w.safetensors")
    image = tmp_path / "0.png"
    Image.new("RGB", (64, 48), (0, 120, 30)).save(image)
    evaluated = run_onestage(
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
    assert metrics["images"] == 4
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
        result = run_in_process(monkeypatch, capsys, "predict", str(image), "--weights", str(bad))
        assert result.returncode == 2, result.stderr
        assert phrase in result.stderr and "Traceback" not in result.stderr
    # the former name of the +1 convention is refused in one line that lists the valid ones
    result = run_in_process(
        monkeypatch, capsys, "evaluate", "--weights", str(weights), "--synthetic", "1",
        "--iou-convention", "voc",
    )  # fmt: skip
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


def noisy_oracle(eval_set: EvalSet) -> OracleModel:
    """The oracle with jittered box offsets and class logits: an imperfect detector."""
    model = OracleModel.of(eval_set, ANCHORS)
    noise = torch.randn(model.outputs.shape, generator=torch.Generator().manual_seed(0))
    model.outputs = model.outputs + noise * torch.tensor([0.8] * 4 + [4.0] * (len(CLASSES) + 1))
    return model


def test_pycocotools_on_the_dataset_file_and_predictions_json_gives_onestages_numbers(
    tmp_path: Path,
):
    annotations = coco_dataset(tmp_path / "coco", "val")
    eval_set = dataset_eval_set(tmp_path / "coco", CLASSES, "val")
    detector = Detector(TorchForward(noisy_oracle(eval_set)), metadata())
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
    # the model replaced by the fixed detector: the same three known objects on every image
    trainer.model.load_state_dict(fixed_output_model(ORIGINAL_BOXES).state_dict())
    weights = tmp_path / "w.safetensors"
    save_weights(weights, trainer.model, weights_metadata)
    detector = Detector.load(weights, device="cpu")
    summary = predict_source(detector, tmp_path / "coco" / "images" / "train", tmp_path / "pred")
    written = by_file(json.loads((tmp_path / "pred" / "predictions.json").read_text()))
    assert len(written) == summary.images == len(IMAGE_IDS)
    # FIXED_CLASSES (0, 2, 1) are, in these weights' order, fish, dog and cat
    for entries in written.values():
        assert [(e["category_name"], e["category_id"]) for e in entries] == [
            ("fish", COCO_IDS["fish"]),
            ("dog", COCO_IDS["dog"]),
            ("cat", COCO_IDS["cat"]),
        ]


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


def match_detections(first, second, conf: float, margin: float) -> list:
    """Pairs each detection of `first` scoring at least conf + margin with an unpaired one of
    `second` of the same class, the best IoU; returns (detection, partner, IoU), partner None
    when `second` has none of that class."""
    used: set[int] = set()
    pairs = []
    for detection in first:
        if detection.score < conf + margin:
            continue
        candidates = [
            (float(box_iou(torch.tensor([detection.box_xyxy]), torch.tensor([b.box_xyxy]))), i)
            for i, b in enumerate(second)
            if b.class_id == detection.class_id and i not in used
        ]
        iou, index = max(candidates, default=(0.0, None))
        if index is not None:
            used.add(index)
        pairs.append((detection, None if index is None else second[index], iou))
    return pairs


def test_accelerated_detector_agrees_with_the_plain_one():
    """bf16 + torch.compile moves scores a little: every detection scoring well above the
    threshold (0.25 + 0.1) in either run has a partner of the same class in the other, run with
    a threshold as far below (0.15), at IoU > 0.9 and a score within 0.05."""
    plain = Detector.load("seed_animals", device="cpu")
    fast = Detector.load("seed_animals", device="cpu").accelerate()
    image = synthetic_eval_set(plain.class_names, 1, seed=5).load_image(0)
    options = PredictOptions(conf=0.15)
    expected = plain.predict(image, options)
    found = fast.predict(image, options)
    for first, second in [(expected, found), (found, expected)]:
        pairs = match_detections(first, second, conf=0.25, margin=0.1)
        assert len(pairs) >= 3
        for detection, partner, iou in pairs:
            assert partner is not None, f"no {detection.class_name} near {detection}"
            assert iou > 0.9, (detection, partner)
            assert abs(partner.score - detection.score) < 0.05, (detection, partner)


def test_images_sharing_a_stem_get_distinct_outputs_and_image_ids(tmp_path: Path):
    weights = save_fixed_weights(tmp_path / "w.safetensors", letterbox=True)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "a.png", "7.png", "007.png"):
        Image.new("RGB", (200, 150), (30, 160, 90)).save(images / name)
    out = tmp_path / "pred"
    summary = predict_source(Detector.load(weights), images, out, save_txt=True)
    assert summary.images == 4
    results = json.loads((out / "predictions.json").read_text())
    ids = {(r["file_name"], r["image_id"]) for r in results}
    assert ids == {("007.png", "007"), ("7.png", 7), ("a.jpg", "a_jpg"), ("a.png", "a_png")}
    assert sorted(p.name for p in out.glob("*.png")) == [
        "007.png",
        "7.png",
        "a_jpg.png",
        "a_png.png",
    ]
    assert len(list((out / "labels").glob("*.txt"))) == 4


def test_detect_on_no_images_is_no_detections():
    assert Detector.load("animals", "cpu").detect([]) == []


def test_loading_weights_reads_and_hashes_the_file_once(monkeypatch):
    from onestage import checkpoint

    reads, hashes = [], []
    read, content_hash = checkpoint._read_safetensors, checkpoint.content_hash
    monkeypatch.setattr(checkpoint, "_read_safetensors", lambda p: reads.append(p) or read(p))
    monkeypatch.setattr(checkpoint, "content_hash", lambda *a: hashes.append(1) or content_hash(*a))
    Detector.load("animals", "cpu")
    assert len(reads) == 1 and len(hashes) == 1
