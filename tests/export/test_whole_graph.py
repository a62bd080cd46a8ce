"""Whole-graph exports (`onestage export --nms`): decoding, scores and NMS in the file give the
detections the host post-processing gives, on ONNX Runtime and OpenVINO, for an anchor head and
a point head; what such a file cannot do is refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onestage.engine.evaluator import synthetic_eval_set
from onestage.engine.predictor import Detector
from onestage.errors import OnestageError
from onestage.export.exporter import SUFFIXES, default_export_path, export_weights
from onestage.export.onnx_file import WHOLE_GRAPH_KEY
from onestage.predict_options import PredictOptions

CASES = [("seed_animals", "onnx"), ("animals", "openvino")]  # anchors + softmax; points + DFL


@pytest.fixture(scope="module")
def whole_graph_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("whole_graph")
    paths = {weights: folder / f"{weights}{SUFFIXES[fmt]}" for weights, fmt in CASES}
    return {weights: export_weights(weights, fmt, "f32", out=paths[weights], nms=True).path
            for weights, fmt in CASES}  # fmt: skip


def _in_box_order(found) -> list[tuple[int, float, float, float, float, float]]:
    """Detections as (class, x0, y0, x1, y1, score) rows in one order whatever their ties."""
    rows = [
        (int(c), *(float(v) for v in box), float(s))
        for box, s, c in zip(found.boxes_xyxy, found.scores, found.class_ids, strict=True)
    ]
    return sorted(rows)


@pytest.mark.parametrize(("weights", "fmt"), CASES)
def test_a_whole_graph_export_detects_as_the_host_post_processing(whole_graph_files, weights, fmt):
    whole, host = Detector.load(whole_graph_files[weights]), Detector.load(weights, "cpu")
    assert whole.nms_in_graph and whole.metadata[WHOLE_GRAPH_KEY] is True
    assert whole.backend == ("onnxruntime" if fmt == "onnx" else "openvino")
    eval_set = synthetic_eval_set(host.class_names, 12, size=host.input_size)
    images = [eval_set.load_image(index) for index in range(len(eval_set))]
    counted = 0
    for options in (PredictOptions(), PredictOptions(conf=0.05, iou=0.3, max_det=3)):
        found = zip(whole.detect(images, options), host.detect(images, options), strict=True)
        for mine, theirs in found:
            mine_rows, their_rows = _in_box_order(mine), _in_box_order(theirs)
            assert [row[0] for row in mine_rows] == [row[0] for row in their_rows]
            np.testing.assert_allclose(
                np.array(mine_rows)[:, 1:], np.array(their_rows)[:, 1:], atol=0.01, rtol=0
            )  # pixels and scores
            assert np.all(np.diff(mine.scores) <= 0)  # best first
            assert len(mine.scores) <= options.max_det
            counted += len(mine.scores)
    assert counted > 30  # the comparison saw real detections


def test_a_whole_graph_file_refuses_what_it_cannot_do(whole_graph_files, tmp_path):
    whole = Detector.load(whole_graph_files["seed_animals"])
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(OnestageError, match="needs an export without --nms"):
        whole.detect([image], PredictOptions(candidates="argmax"))
    with pytest.raises(OnestageError, match="gives detections, not raw outputs"):
        whole.raw_outputs(np.zeros((1, 3, 320, 320), dtype=np.float32))
    with pytest.raises(OnestageError, match="f32 or bf16, not int8"):
        export_weights("seed_animals", "onnx", "int8", out=tmp_path / "x.onnx", nms=True)
    assert not (tmp_path / "x.onnx").exists()


def test_a_whole_graph_export_is_named_apart_from_the_plain_one(tmp_path):
    weights = tmp_path / "best.safetensors"
    assert default_export_path(weights, "onnx", "f32", nms=True) == tmp_path / "best_nms.onnx"
    assert default_export_path(weights, "openvino", "bf16", nms=True).name == "best_bf16_nms.xml"
    assert default_export_path(weights, "onnx", "f32").name == "best.onnx"
