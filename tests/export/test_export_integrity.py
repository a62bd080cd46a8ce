"""Content hashes of exported files: every byte of an .onnx file, or of an OpenVINO .xml and its
.bin, is covered by the SHA-256 in its metadata; a damaged file is refused in one line, an
export from before the hash loads with a warning."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import run_onestage
from onestage.checkpoint import save_weights
from onestage.engine.predictor import Detector
from onestage.errors import OnestageError
from onestage.export.exporter import export_weights
from onestage.export.in_memory import export_metadata
from onestage.export.onnx_file import read_onnx_metadata, with_metadata
from onestage.export.onnx_graph import onnx_model_bytes
from onestage.export.seal import HASH_KEY, PLACEHOLDER, check_seal, files_of
from onestage.models import build_model

CORRUPT = "does not match its content hash (the file is corrupt)"


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny weights and their ONNX and OpenVINO exports (shared by the module: read only)."""
    folder = tmp_path_factory.mktemp("exports")
    model = build_model("csp-t", num_classes=2).eval()
    metadata = {
        "model": "csp-t",
        "spec": model.spec.to_dict(),
        "class_names": ["cat", "dog"],
        "anchors": "seed",
        "input_size": model.input_size,
        "loss": "quality",
    }
    weights = folder / "tiny.safetensors"
    save_weights(weights, model, metadata)
    return {
        "weights": weights,
        "onnx": export_weights(weights, "onnx").path,
        "openvino": export_weights(weights, "openvino", "f32").path,
    }


def copy_export(path: Path, folder: Path) -> Path:
    """A private copy of an exported model (both files of an IR)."""
    for part in files_of(path):
        (folder / part.name).write_bytes(part.read_bytes())
    return folder / path.name


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_an_export_carries_the_digest_of_its_bytes_and_loads(exports, fmt):
    path = exports[fmt]
    assert check_seal(path) is True
    detector = Detector.load(path)
    digest = detector.metadata[HASH_KEY]
    assert digest != PLACEHOLDER and len(digest) == 64
    assert not list(path.parent.glob(".*"))  # nothing staged left behind


@pytest.mark.parametrize(
    ("fmt", "part", "where"),
    [
        ("onnx", 0, 0.5),  # the graph's weights
        ("onnx", 0, 0.02),  # the graph's structure
        ("openvino", 0, 0.3),  # the XML's layers
        ("openvino", 1, 0.5),  # the .bin's weights
    ],
)
def test_a_flipped_byte_anywhere_is_a_one_line_error(exports, tmp_path, fmt, part, where):
    path = copy_export(exports[fmt], tmp_path)
    damaged = files_of(path)[part]
    flip_byte(damaged, int(damaged.stat().st_size * where))
    with pytest.raises(OnestageError) as raised:
        Detector.load(path)
    assert str(raised.value) == f"{path}: its content {CORRUPT}"


def test_a_damaged_digest_is_an_error_not_an_old_file(exports, tmp_path):
    path = copy_export(exports["onnx"], tmp_path)
    data = path.read_bytes()
    digest = read_onnx_metadata(path)[HASH_KEY]
    path.write_bytes(data.replace(digest.encode(), b"g" + digest[1:].encode()))
    with pytest.raises(OnestageError, match="its content hash is unreadable"):
        Detector.load(path)


def test_an_export_without_a_hash_loads_with_a_warning(exports, tmp_path, caplog):
    torch_detector = Detector.load(exports["weights"], device="cpu")
    metadata = export_metadata(torch_detector.model, torch_detector.metadata, "f32")
    old = tmp_path / "old.onnx"
    graph = onnx_model_bytes(torch_detector.model, torch_detector.input_size)
    old.write_bytes(with_metadata(graph, metadata))
    with caplog.at_level(logging.WARNING, logger="onestage"):
        detector = Detector.load(old)
    assert detector.class_names == ("cat", "dog")
    assert [record.getMessage() for record in caplog.records] == [
        f"{old}: no content hash (an older export): loaded without an integrity check"
    ]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_no_mutated_copy_loads_silently(exports, tmp_path, fmt, caplog):
    """Single-byte flips over every file of the export (40 at random, one that leaves the
    digest without a hex digit, one in the digest key's own name), each copy loaded through
    `Detector.load`: refused in one line naming the file, or, for a flip in the key's name
    only (RELIABILITY.md), loaded as an export from before the hash, with its warning."""
    rng = random.Random(13)
    original = files_of(exports[fmt])
    sizes = [part.stat().st_size for part in original]
    head = original[0].read_bytes()
    key_at = head.index(HASH_KEY.encode())
    digest = Detector.load(exports[fmt]).metadata[HASH_KEY]
    digest_at = head.index(digest.encode())
    not_hex_after_flip = digest_at + next(i for i, c in enumerate(digest) if c in "af")  # ` g
    flips = [(0, not_hex_after_flip), (0, key_at + 3)]
    for _ in range(40):
        part = rng.choices(range(len(original)), weights=sizes)[0]
        flips.append((part, rng.randrange(sizes[part])))
    old_warning = "no content hash (an older export): loaded without an integrity check"
    for part, position in flips:
        path = copy_export(exports[fmt], tmp_path)
        flip_byte(files_of(path)[part], position)
        caplog.clear()
        try:
            with caplog.at_level(logging.WARNING, logger="onestage"):
                Detector.load(path)
        except OnestageError as refusal:
            message = str(refusal)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
            continue
        where = f"byte {position} of {original[part].name}"
        assert part == 0 and key_at <= position < key_at + len(HASH_KEY), f"{where} loaded"
        assert [record.getMessage() for record in caplog.records] == [f"{path}: {old_warning}"]


def test_the_cli_refuses_a_corrupt_export_in_one_line(exports, tmp_path):
    path = copy_export(exports["onnx"], tmp_path)
    flip_byte(path, path.stat().st_size // 2)
    image = tmp_path / "blank.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    result = run_onestage("predict", str(image), "--weights", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}: its content {CORRUPT}"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_an_onnx_file_whose_tensors_live_elsewhere_is_refused_before_a_runtime_reads_it(
    exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """ONNX external data names files a runtime would read (any path the file says): a sealed
    file that moves its weights out to `weights.data` is refused before any runtime opens it."""
    import onnx
    import openvino

    from onestage.export.seal import seal_bytes
    from onestage.runtime import onnxruntime_backend

    proto = onnx.load(str(exports["onnx"]))
    metadata = {**read_onnx_metadata(exports["onnx"]), HASH_KEY: PLACEHOLDER}
    unsealed = tmp_path / "unsealed.onnx"
    onnx.save_model(
        proto, str(unsealed), save_as_external_data=True, location="weights.data", size_threshold=0
    )
    path = tmp_path / "external.onnx"
    path.write_bytes(seal_bytes(with_metadata(unsealed.read_bytes(), metadata), path))

    def never(*_args, **_kwargs):
        raise AssertionError("a runtime was given the file")

    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeForward, "__init__", never)
    monkeypatch.setattr(openvino.Core, "read_model", never)
    with pytest.raises(OnestageError) as raised:
        Detector.load(path, backend=backend)
    assert str(raised.value) == (
        f"{path}: its tensors are kept in other files (ONNX external data), which onestage "
        "never reads; onestage's exports hold every tensor in the file"
    )
