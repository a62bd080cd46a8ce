"""The runtime path runs without torch: an exported file predicts, evaluates and serves in a
process where any import of torch fails, and torch is never imported. These tests run in the
development environment and, under `make test`, in the runtime environment of
requirements-runtime.txt, which has no torch at all."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Run first in every child: an import of torch then fails loudly, and on exit the child says
# whether torch was ever imported.
GUARD = """
import atexit, sys
sys.modules["torch"] = None
atexit.register(lambda: print("TORCH_IMPORTED", sys.modules.get("torch") is not None))
"""
FORMATS = ("onnx", "openvino", "onnx-nms")


def run_python(code: str, cwd: Path, timeout: float = 240) -> str:
    """Run `code` after GUARD in a new interpreter; its stdout, after checking it exited
    cleanly and never imported torch."""
    done = subprocess.run(
        [sys.executable, "-c", GUARD + code], cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.rstrip().endswith("TORCH_IMPORTED False"), done.stdout[-500:]
    return done.stdout


def run_cli(arguments: list[str], cwd: Path) -> str:
    """`onestage ARGUMENTS` in a guarded interpreter; its stdout."""
    code = (
        "import runpy\n"
        f"sys.argv = ['onestage', *{arguments!r}]\n"
        "try:\n    runpy.run_module('onestage', run_name='__main__')\n"
        "except SystemExit as done:\n    assert not done.code, done.code\n"
    )
    return run_python(code, cwd)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two photos-to-be: noise with a red square, and plain grey."""
    folder = tmp_path_factory.mktemp("images")
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    noise[60:160, 80:200] = (220, 30, 30)
    Image.fromarray(noise).save(folder / "noise.png")
    Image.fromarray(np.full((200, 150, 3), 128, np.uint8)).save(folder / "grey.jpg")
    return folder


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_python_api_predicts_without_torch(exported, images, fmt, tmp_path):
    code = f"""
import json
from onestage import Detector
detector = Detector.load({str(exported[fmt])!r})
found = detector.predict({str(images / "noise.png")!r})
print(json.dumps([detector.backend, [d.class_name for d in found]]))
"""
    backend, _ = json.loads(run_python(code, tmp_path).splitlines()[0])
    assert backend == ("openvino" if fmt == "openvino" else "onnxruntime")


@pytest.mark.parametrize("fmt", FORMATS)
def test_predict_and_evaluate_commands_run_without_torch(exported, images, fmt, tmp_path):
    weights = str(exported[fmt])
    run_cli(["predict", str(images), "--weights", weights, "--save-txt", "--conf", "0.0"], tmp_path)
    labels = sorted(p.name for p in (tmp_path / "runs/predict/exp/labels").iterdir())
    assert labels == ["grey.txt", "noise.txt"]
    out = run_cli(["evaluate", "--weights", weights, "--synthetic", "4"], tmp_path)
    assert "COCO AP@[.5:.95]" in out
    assert (tmp_path / "runs/evaluate/exp/predictions.json").is_file()


def test_serve_answers_without_torch(exported, images, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    arguments = ["serve", "--weights", str(exported["onnx"]), "--port", str(port)]
    code = (
        "import runpy\n"
        f"sys.argv = ['onestage', *{arguments!r}]\n"
        "runpy.run_module('onestage', run_name='__main__')\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", GUARD + code], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        answer = _post_image(f"http://127.0.0.1:{port}/predict", images / "noise.png", server)
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl+C: uvicorn shuts down, atexit runs
        stdout, stderr = server.communicate(timeout=60)
    assert answer["backend"] == "onnxruntime" and answer["image"]["width"] == 320
    assert "TORCH_IMPORTED False" in stdout, stderr[-2000:]


def _post_image(url: str, image: Path, server: subprocess.Popen, wait_s: float = 120) -> dict:
    """POST `image` as multipart form field "file" to `url` once the server listens."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{image.name}"'
            f"\r\nContent-Type: image/png\r\n\r\n"
        ).encode()
        + image.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    deadline = time.monotonic() + wait_s
    while True:
        assert server.poll() is None, server.communicate()[1][-2000:]
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except (ConnectionError, urllib.error.URLError):
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.3)
