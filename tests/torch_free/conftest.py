"""Exported files for the torch-free tests: the ones in $ONESTAGE_EXPORTS (`make test` exports
them with the torch environment for the runtime environment, which cannot export), else
exported here from the shipped `seed_animals`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

EXPORTED_NAMES = {"onnx": "model.onnx", "openvino": "model.xml", "onnx-nms": "model_nms.onnx"}


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """format ("onnx", "openvino", "onnx-nms": whole graph) -> an exported `seed_animals`."""
    given = os.environ.get("ONESTAGE_EXPORTS")
    if given:
        files = {fmt: Path(given).resolve() / name for fmt, name in EXPORTED_NAMES.items()}
        missing = [str(path) for path in files.values() if not path.is_file()]
        assert not missing, f"ONESTAGE_EXPORTS lacks {missing}"
        return files
    from onestage.export.exporter import export_weights

    folder = tmp_path_factory.mktemp("exports")
    return {
        fmt: export_weights(
            "seed_animals", fmt.removesuffix("-nms"), out=folder / name, nms=fmt.endswith("-nms")
        ).path
        for fmt, name in EXPORTED_NAMES.items()
    }
