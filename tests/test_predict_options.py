"""Post-processing defaults have one home, `onestage.predict_options`: every caller that offers
them (the commands' --help, the server's query, `postprocess()`, the evaluation and its report)
reads them there, so none can drift."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import run_in_process
from onestage.engine import evaluator
from onestage.engine.predictor import Detector
from onestage.metrics.confusion import confusion_matrix
from onestage.predict_options import EVALUATION, PREDICTION, PredictOptions
from onestage.runtime.postprocess import postprocess
from onestage.serve.app import create_app
from onestage.serve.runners import BatchingRunner

OFFERED = ("conf", "iou", "max_det", "candidates")  # what the commands let the user set


def help_defaults(monkeypatch, capsys, command: str) -> dict[str, str]:
    """`onestage COMMAND --help` read back: option name (as a parameter) -> its [default: ...]."""
    result = run_in_process(monkeypatch, capsys, command, "--help")
    assert result.returncode == 0, result.stderr
    rows = re.split(r"\n│ (?=--)", result.stdout)  # one chunk per option, wrapped lines and all
    defaults = {}
    for row in rows[1:]:
        text = " ".join(line.strip(" │") for line in row.splitlines())
        found = re.search(r"\[default: ([^\]]+)\]", text)
        if found:
            defaults[text.split()[0].removeprefix("--").replace("-", "_")] = found.group(1)
    return defaults


@pytest.mark.parametrize(
    ("command", "options"), [("predict", PREDICTION), ("evaluate", EVALUATION)]
)
def test_the_commands_help_shows_the_options_defaults(monkeypatch, capsys, command, options):
    shown = help_defaults(monkeypatch, capsys, command)
    assert {name: shown[name] for name in OFFERED} == {
        name: str(getattr(options, name)) for name in OFFERED
    }


def test_the_servers_query_defaults_are_predictions() -> None:
    detector = Detector.load("animals", "cpu", "torch")
    schema = create_app(detector, BatchingRunner(detector), 1 << 20).openapi()
    query = schema["paths"]["/predict"]["post"]["parameters"]
    defaults = {entry["name"]: entry["schema"]["default"] for entry in query}
    assert defaults == {
        "conf": PREDICTION.conf,
        "iou": PREDICTION.iou,
        "max_det": PREDICTION.max_det,
        "draw": False,
    }


def test_library_defaults_read_the_options() -> None:
    keywords = inspect.signature(postprocess).parameters
    assert {
        "conf": keywords["conf_threshold"].default,
        "iou": keywords["iou_threshold"].default,
        "max_det": keywords["max_det"].default,
        "pre_nms_topk": keywords["pre_nms_topk"].default,
        "candidates": keywords["candidates"].default,
    } == vars(PREDICTION)
    assert inspect.signature(confusion_matrix).parameters["conf_threshold"].default == (
        PREDICTION.conf
    )
    for function in (evaluator.evaluate_detector, evaluator.evaluate):  # training validates so
        assert inspect.signature(function).parameters["options"].default is EVALUATION


def test_the_defaults_themselves() -> None:
    assert PredictOptions() == PREDICTION
    assert vars(PREDICTION) == {
        "conf": 0.25,
        "iou": 0.5,
        "max_det": 100,
        "pre_nms_topk": 400,
        "candidates": "all",
    }
    assert vars(EVALUATION) == {**vars(PREDICTION), "conf": 0.001}


def test_the_report_shows_detections_from_the_predict_threshold_up() -> None:
    assert evaluator.shown_conf(EVALUATION) == PREDICTION.conf
    assert evaluator.shown_conf(PredictOptions(conf=0.6)) == 0.6


@pytest.mark.parametrize(("flags", "expected"), [((), PREDICTION.conf), (("--conf", "0.5"), 0.5)])
def test_evaluates_conf_reaches_the_confusion_matrix(
    tmp_path: Path, monkeypatch, capsys, flags: tuple[str, ...], expected: float
):
    thresholds: list[float] = []

    def noting(*args: Any, **kwargs: Any) -> Any:
        call = inspect.signature(confusion_matrix).bind(*args, **kwargs)
        call.apply_defaults()
        thresholds.append(call.arguments["conf_threshold"])
        return confusion_matrix(*args, **kwargs)

    monkeypatch.setattr(evaluator, "confusion_matrix", noting)
    result = run_in_process(
        monkeypatch, capsys, "evaluate", "--synthetic", "1", "--backend", "torch",
        "--device", "cpu", "--out", str(tmp_path / "report"), *flags,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert thresholds == [expected]


def test_the_command_line_reads_the_defaults_without_loading_torch() -> None:
    check = "import sys, onestage.cli; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert loaded.stdout.strip() == "False", loaded.stderr
