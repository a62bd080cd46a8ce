"""A weights file is data: whatever its metadata names (plugin paths, spec imports beside the
working folder, a spec file by name), loading it through the API, `predict`, `evaluate` or
`serve` runs no code of the sender's. The files below are forged as a sender would: the
metadata edited and the content hash recomputed, so only the loader stands in the way."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save as save_safetensors_bytes

from helpers import run_in_process
from onestage.checkpoint import HASH_KEY, METADATA_KEY, content_hash, load_weights
from onestage.engine.predictor import WEIGHTS_DIR, Detector
from onestage.errors import OnestageError


def evil_plugin(folder: Path) -> Path:
    """`evil.py` in `folder`: run, it writes `ran` beside itself."""
    path = folder / "evil.py"
    path.write_text(f"from pathlib import Path\nPath({str(folder / 'ran')!r}).write_text('x')\n")
    return path


def plugin_paths(metadata: dict, folder: Path) -> dict:
    """Route 1: `plugins` lists the sender's file, as a path (older files) and as a record."""
    path = evil_plugin(folder)
    record = {"file": "evil.py", "sha256": "0" * 64, "blocks": [], "models": []}
    return {**metadata, "plugins": [str(path), record]}


def spec_imports(metadata: dict, folder: Path) -> dict:
    """Route 2: the spec's `imports` name a file beside the folder the user runs in."""
    evil_plugin(folder)
    return {**metadata, "spec": {**metadata["spec"], "imports": ["evil.py"]}}


def spec_file_by_name(metadata: dict, folder: Path) -> dict:
    """Route 3: no spec, and `model` names a spec file beside the folder, which imports."""
    evil_plugin(folder)
    spec = {**metadata["spec"], "imports": ["evil.py"]}
    (folder / "evil.yaml").write_text(json.dumps(spec))
    rest = {key: value for key, value in metadata.items() if key != "spec"}
    return {**rest, "model": "evil.yaml"}


ROUTES = {"plugins": plugin_paths, "imports": spec_imports, "model-file": spec_file_by_name}


@pytest.fixture(params=sorted(ROUTES))
def forged(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A copy of the shipped `animals` forged by one route, the user's working folder (which
    holds the sender's files) and the marker their code would write."""
    folder = tmp_path / "work"
    folder.mkdir()
    tensors, metadata = load_weights(WEIGHTS_DIR / "animals.safetensors")
    document = ROUTES[request.param](metadata, folder)
    document[HASH_KEY] = content_hash(tensors, document)
    weights = folder / "forged.safetensors"
    header = {METADATA_KEY: json.dumps(document)}
    weights.write_bytes(save_safetensors_bytes(tensors, metadata=header))
    Image.new("RGB", (96, 64), (60, 120, 200)).save(folder / "scene.png")
    monkeypatch.chdir(folder)
    return {"weights": weights, "marker": folder / "ran", "route": Path(request.param)}


def refused_or_loaded(forged: dict[str, Path], error: str) -> None:
    """A forged file either loads (the field ignored) or is refused in one line; the plugin
    route and the spec-import route load, the spec-file route is refused naming the file."""
    if forged["route"].name == "model-file":
        assert f"{forged['weights']}: the model it names does not build: unknown model " in error
    else:
        assert error == ""


def cli(monkeypatch, capsys, forged, *arguments: str) -> str:
    result = run_in_process(monkeypatch, capsys, *arguments, "--weights", str(forged["weights"]))
    assert result.returncode in (0, 2) and result.stderr.count("\n") <= 1, result.stderr
    return result.stderr.removeprefix("error: ").strip() if result.returncode else ""


def test_the_api_runs_nothing(forged: dict[str, Path]) -> None:
    try:
        Detector.load(forged["weights"], "cpu")
        error = ""
    except OnestageError as raised:
        error = str(raised)
    refused_or_loaded(forged, error)
    assert not forged["marker"].exists()


def test_predict_runs_nothing(forged: dict[str, Path], monkeypatch, capsys) -> None:
    error = cli(monkeypatch, capsys, forged, "predict", "scene.png", "--backend", "torch")
    refused_or_loaded(forged, error)
    assert not forged["marker"].exists()


def test_evaluate_runs_nothing(forged: dict[str, Path], monkeypatch, capsys) -> None:
    arguments = ("evaluate", "--synthetic", "2", "--backend", "torch", "--out", "report")
    refused_or_loaded(forged, cli(monkeypatch, capsys, forged, *arguments))
    assert not forged["marker"].exists()


def test_serve_runs_nothing(forged: dict[str, Path], monkeypatch, capsys) -> None:
    """`serve` loads the detector in the server process before it listens; uvicorn is stubbed
    so that the command returns once the application is made."""
    import uvicorn

    served: list[Callable] = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **_: served.append(application))
    error = cli(monkeypatch, capsys, forged, "serve", "--backend", "torch", "--port", "0")
    refused_or_loaded(forged, error)
    assert len(served) == (0 if error else 1)
    for application in served:
        with TestClient(application):  # its start and shutdown: the runner's thread ends
            pass
    assert not forged["marker"].exists()
