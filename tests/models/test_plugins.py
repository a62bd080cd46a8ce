"""Plugins come from the user alone: `--plugin FILE.py` (and `plugins=[...]`) runs a file the
user names; weights trained with one record its file name and SHA-256, never a path, and load
in a new process, from another folder, when the user passes the plugin again; a missing or an
edited plugin is one line; every failure of a plugin file is one line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from helpers import USER_BLOCK_PLUGIN, run_in_process, run_onestage, write_user_block_spec
from onestage.config import make_config
from onestage.engine.predictor import Detector
from onestage.engine.trainer import train
from onestage.errors import OnestageError
from onestage.models import load_plugins
from onestage.models.blocks import BLOCKS


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A one-step run of USER_BLOCK_SPEC with the plugin, moved with its plugin to another folder
    after training (the old folder removed), and an image to predict on."""
    project = tmp_path_factory.mktemp("project")
    spec = write_user_block_spec(project)
    saved = dict(BLOCKS.classes)
    try:
        load_plugins([project / "blocks" / "mine.py"])
        overrides = {"model": str(spec), "epochs": 1, "steps": 1, "batch": 2}
        overrides |= {"val_every": 0, "amp": "none", "project": str(project)}
        result = train(make_config("seed", overrides={**overrides, "name": "run"}))
    finally:
        BLOCKS.classes.clear()
        BLOCKS.classes.update(saved)
    moved = tmp_path_factory.mktemp("moved")
    shutil.copytree(result.run_dir / "weights", moved / "weights")
    shutil.copy(project / "blocks" / "mine.py", moved / "mine.py")
    shutil.rmtree(project)
    image = moved / "scene.png"
    Image.new("RGB", (80, 64), (90, 140, 60)).save(image)
    return {"weights": moved / "weights" / "last.safetensors", "plugin": moved / "mine.py"}


@pytest.fixture
def edited_plugin(trained: dict[str, Path], tmp_path: Path) -> Path:
    edited = tmp_path / "mine.py"
    edited.write_text(USER_BLOCK_PLUGIN.replace("return 2 *", "return 3 *"))
    return edited


def predict(monkeypatch, capsys, trained: dict[str, Path], *options: str):
    image = trained["weights"].parent.parent / "scene.png"
    out = trained["weights"].parent.parent / "out"
    arguments = ("predict", str(image), "--weights", str(trained["weights"]), "--out", str(out))
    return run_in_process(monkeypatch, capsys, *arguments, "--backend", "torch", *options)


def test_training_records_the_plugin_by_name_and_digest_never_a_path(trained, restore_blocks):
    metadata = json.loads(trained["weights"].with_suffix(".json").read_text())
    digest = hashlib.sha256(USER_BLOCK_PLUGIN.encode()).hexdigest()
    assert metadata["plugins"] == [
        {"file": "mine.py", "sha256": digest, "blocks": ["my_double_conv"], "models": []}
    ]
    assert "project" not in json.dumps(metadata)  # no folder of the training machine


def test_moved_weights_load_in_a_new_process_with_the_plugin(trained, restore_blocks):
    image = trained["weights"].parent.parent / "scene.png"
    done = run_onestage(
        "predict", str(image), "--weights", str(trained["weights"]), "--backend", "torch",
        "--plugin", str(trained["plugin"]), "--out", str(image.parent / "new-process"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 image(s)" in done.stdout


def test_without_the_plugin_one_line_names_the_block_and_the_file(
    trained, restore_blocks, monkeypatch, capsys
):
    result = predict(monkeypatch, capsys, trained)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr == (
        f"error: {trained['weights']}: needs block 'my_double_conv', which the plugin "
        "mine.py registered: pass that file with --plugin (plugins=[...] in Python)\n"
    )
    with pytest.raises(OnestageError, match="needs block 'my_double_conv'"):
        Detector.load(trained["weights"], "cpu")


def test_with_the_plugin_the_api_and_the_cli_load(trained, restore_blocks, monkeypatch, capsys):
    detector = Detector.load(trained["weights"], "cpu", plugins=[trained["plugin"]])
    assert type(detector.model.mine).__name__ == "DoubleConv"
    assert predict(monkeypatch, capsys, trained, "--plugin", str(trained["plugin"])).returncode == 0


def test_an_edited_plugin_is_one_line_unless_trusted(
    trained, edited_plugin, restore_blocks, monkeypatch, capsys
):
    result = predict(monkeypatch, capsys, trained, "--plugin", str(edited_plugin))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "block 'my_double_conv' comes from plugin mine.py (sha256 " in result.stderr
    assert "give it with --trust-plugin mine.py" in result.stderr
    trusted = predict(monkeypatch, capsys, trained, "--trust-plugin", str(edited_plugin))
    assert trusted.returncode == 0, trusted.stderr


def test_an_edited_plugin_through_the_api(trained, edited_plugin, restore_blocks):
    with pytest.raises(OnestageError, match=r"not the mine\.py these weights were trained with"):
        Detector.load(trained["weights"], "cpu", plugins=[edited_plugin])
    BLOCKS.classes.pop("my_double_conv")
    detector = Detector.load(trained["weights"], "cpu", plugins=[edited_plugin], trust_plugins=True)
    assert type(detector.model.mine).__name__ == "DoubleConv"


NOT_PYTHON = "not a .py file (plugins are Python source files)"


def plugin_failures(folder: Path) -> dict[str, tuple[Path, str]]:
    """Plugin files that cannot be used, each with the message its one line ends with."""
    folder.mkdir(exist_ok=True)
    files = {
        "shared-library": ("evil.so", b"\x7fELF", NOT_PYTHON),
        "bytecode": ("evil.pyc", b"\x00" * 16, NOT_PYTHON),
        "no-suffix": ("evil", b"print(1)", NOT_PYTHON),
        "syntax": ("syntax.py", b"def (:\n", "failed: SyntaxError: invalid syntax (syntax.py, "
                   "line 1)"),
        "raises": ("raises.py", b"import nothing_of_that_name\n", "failed: ModuleNotFoundError: "
                   "No module named 'nothing_of_that_name'"),
        "exits": ("exits.py", b"raise SystemExit(3)\n", "failed: SystemExit: 3"),
    }  # fmt: skip
    found = {}
    for case, (name, data, message) in files.items():
        (folder / name).write_bytes(data)
        found[case] = (folder / name, message)
    found["missing"] = (folder / "gone.py", "no such file")
    (folder / "folder.py").mkdir(exist_ok=True)
    found["folder"] = (folder / "folder.py", "not a file")
    return found


def test_every_plugin_failure_is_one_line(tmp_path: Path, monkeypatch, capsys, restore_blocks):
    for case, (path, message) in plugin_failures(tmp_path / "plugins").items():
        with pytest.raises(OnestageError) as raised:
            load_plugins([path])
        assert str(raised.value) == f"plugin {path}: {message}", case
        result = run_in_process(
            monkeypatch, capsys, "summary", "--model", "nano", "--plugin", str(path)
        )
        assert result.returncode == 2 and result.stderr == f"error: plugin {path}: {message}\n"


def test_a_plugin_over_the_size_limit_is_refused_unread(tmp_path: Path, monkeypatch):
    from onestage import limits

    monkeypatch.setattr(limits, "MAX_PLUGIN_BYTES", 2 * 1024 * 1024)
    big = tmp_path / "big.py"
    big.write_text("#" * (2 * 1024 * 1024 + 1))
    with pytest.raises(OnestageError) as raised:
        load_plugins([big])
    assert str(raised.value) == f"plugin {big}: larger than the 2 MB onestage reads for such a file"
