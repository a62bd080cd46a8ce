"""Write failures: a full disk or a read-only output folder during training, conversion, export
and report writing is one `error:` line naming the file and exit code 2, and the files written
before it are left as they were.

The tests run as root, for whom file modes do not stop writes, so `RefusedWrites` simulates
both in-process: under a full disk (ENOSPC) a file can be created but not written; in a
read-only folder (EROFS) nothing can be created.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import TINY_FIVE_LEVEL_SSD_SPEC, TINY_TRAINING_OVERRIDES, run_in_process
from onestage.checkpoint import weights_epoch
from onestage.config import make_config
from onestage.data.synthesize import synthesize_dataset
from onestage.data.synthetic import SyntheticConfig, SyntheticGenerator
from onestage.engine.run_folder import read_results
from onestage.engine.trainer import train

FULL_DISK = errno.ENOSPC
READ_ONLY = errno.EROFS


class FullDiskFile:
    """A file handle whose writes fail as on a full disk (no fileno: copies must write)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: bytes | str) -> int:
        raise OSError(FULL_DISK, os.strerror(FULL_DISK))

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")

    def __enter__(self) -> FullDiskFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


class RefusedWrites:
    """Makes the writes of files under `folder` that `refuse(target)` picks fail with `errno_`;
    `target` is the file being written (for a temporary file, the file it will become).
    `before` holds the bytes of every file under `folder` at the first refusal."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        folder: Path,
        errno_: int,
        refuse: Callable[[Path], bool] = lambda target: True,
    ) -> None:
        self.folder = folder.resolve()
        self.errno = errno_
        self.refuse = refuse
        self.before: dict[Path, bytes] | None = None
        real_mkstemp, real_fdopen, real_open, real_mkdir = (
            tempfile.mkstemp,
            os.fdopen,
            builtins.open,
            os.mkdir,
        )

        def mkstemp(suffix=None, prefix=None, dir=None, text=False):
            if self.errno == READ_ONLY and dir is not None and prefix:
                self.check(Path(dir) / prefix[1:-1], Path(dir) / f"{prefix}XXXX{suffix}")
            return real_mkstemp(suffix, prefix, dir, text)

        def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_fdopen(fd, mode, *args, **kwargs)
            writing = self.errno == FULL_DISK and set(mode) & set("wax+")
            if writing and self.picks(Path(os.readlink(f"/proc/self/fd/{fd}"))):
                return FullDiskFile(handle)
            return handle

        def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            writing = isinstance(file, str | os.PathLike) and set(mode) & set("wax+")
            if writing and self.errno == READ_ONLY:
                self.check(Path(file), Path(file))
            handle = real_open(file, mode, *args, **kwargs)
            if writing and self.errno == FULL_DISK and self.picks(Path(file)):
                return FullDiskFile(handle)
            return handle

        def mkdir(path: Any, mode: int = 0o777, **kwargs: Any) -> None:
            if self.errno == READ_ONLY and Path(path).parent.is_dir():  # else ENOENT, as usual
                self.check(Path(path), Path(path))
            real_mkdir(path, mode, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(os, "fdopen", fdopen)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr(os, "mkdir", mkdir)

    def picks(self, path: Path) -> bool:
        """Whether a write of `path` fails; the first that does takes the `before` snapshot."""
        path = path.resolve()
        if not path.is_relative_to(self.folder) or not self.refuse(final_name(path)):
            return False
        if self.before is None:
            self.before = files_under(self.folder)
        return True

    def check(self, path: Path, reported: Path) -> None:
        if self.picks(path):
            raise OSError(self.errno, os.strerror(self.errno), str(reported))


def final_name(path: Path) -> Path:
    """The file a temporary `.<name>.<random>.tmp` becomes; other paths unchanged."""
    if path.name.startswith(".") and path.name.endswith(".tmp"):
        return path.with_name(path.name[1:-4].rsplit(".", 1)[0])
    return path


def files_under(folder: Path) -> dict[Path, bytes]:
    """Bytes of every file under `folder` but the temporary files of writes in progress."""
    paths = sorted(path for path in folder.rglob("*") if path.is_file())
    return {path: path.read_bytes() for path in paths if path == final_name(path)}


def settled_files(folder: Path) -> dict[Path, bytes]:
    """`files_under(folder)`, checking that no write left a temporary file behind."""
    assert not list(folder.rglob(".*.tmp")), "a failed write left its temporary file"
    return files_under(folder)


def nth_write_of(name: str, n: int) -> Callable[[Path], bool]:
    """Refuse the `n`-th write of files called `name` (and only that one)."""
    seen = [0]

    def refuse(target: Path) -> bool:
        if target.name != name:
            return False
        seen[0] += 1
        return seen[0] == n

    return refuse


def assert_one_error_line(result: subprocess.CompletedProcess, path: Path, errno_: int) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: cannot write {path}: {os.strerror(errno_)}"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_FIVE_LEVEL_SSD_SPEC, encoding="utf-8")
    return path


def train_arguments(spec: Path, project: Path, epochs: int) -> list[str]:
    options = [
        f"{key}={value}" for key, value in {**TINY_TRAINING_OVERRIDES, "epochs": epochs}.items()
    ]
    return ["train", "--model", str(spec), "--project", str(project), "--name", "run", *options]


@pytest.mark.parametrize("errno_", [FULL_DISK, READ_ONLY])
def test_training_stops_in_one_line_and_keeps_the_last_checkpoint(
    tmp_path, spec, monkeypatch, capsys, errno_
):
    run_dir = tmp_path / "runs" / "run"
    refused = RefusedWrites(
        monkeypatch, tmp_path / "runs", errno_, nth_write_of("last.state.safetensors", 2)
    )
    result = run_in_process(
        monkeypatch, capsys, *train_arguments(spec, tmp_path / "runs", epochs=3)
    )
    assert_one_error_line(result, run_dir / "weights" / "last.state.safetensors", errno_)
    assert settled_files(tmp_path / "runs") == refused.before  # nothing changed after it
    assert weights_epoch(run_dir / "weights" / "last.safetensors") == 1
    assert [row["epoch"] for row in read_results(run_dir / "results.csv")] == [1, 2]
    monkeypatch.undo()  # the disk has room again: the run resumes and finishes
    assert run_in_process(monkeypatch, capsys, "train", "--resume", str(run_dir)).returncode == 0
    assert [row["epoch"] for row in read_results(run_dir / "results.csv")] == [1, 2, 3]


def test_training_into_a_read_only_folder_is_one_line(tmp_path, spec, monkeypatch, capsys):
    (tmp_path / "runs").mkdir()
    RefusedWrites(monkeypatch, tmp_path / "runs", READ_ONLY)
    result = run_in_process(
        monkeypatch, capsys, *train_arguments(spec, tmp_path / "runs", epochs=1)
    )
    assert_one_error_line(result, tmp_path / "runs" / "run", READ_ONLY)


@pytest.mark.parametrize(("errno_", "fmt"), [(FULL_DISK, "voc"), (READ_ONLY, "coco")])
def test_conversion_stops_in_one_line_and_leaves_earlier_files(
    tmp_path, monkeypatch, capsys, errno_, fmt
):
    source, out = tmp_path / "source", tmp_path / "out"
    generator = SyntheticGenerator(SyntheticConfig(width=32, height=32))
    synthesize_dataset(generator, source, "yolo", {"train": 6, "val": 2})
    arguments = ("data", "convert", str(source), str(out), "--format", fmt)
    assert run_in_process(monkeypatch, capsys, *arguments).returncode == 0
    earlier = files_under(out)
    target = sorted(earlier)[len(earlier) // 2]  # an image or a label, half-way through
    RefusedWrites(monkeypatch, out, errno_, lambda path: path == target)
    assert_one_error_line(run_in_process(monkeypatch, capsys, *arguments), target, errno_)
    assert settled_files(out) == earlier


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of the tiny model after one epoch."""
    folder = tmp_path_factory.mktemp("weights")
    spec = folder / "tiny.yaml"
    spec.write_text(TINY_FIVE_LEVEL_SSD_SPEC, encoding="utf-8")
    overrides = {**TINY_TRAINING_OVERRIDES, "epochs": 1, "model": str(spec), "val_every": 0}
    config = make_config("seed", overrides={**overrides, "project": str(folder), "name": "w"})
    return train(config).run_dir / "weights" / "last.safetensors"


@pytest.mark.parametrize("errno_", [FULL_DISK, READ_ONLY])
def test_export_stops_in_one_line_and_keeps_the_earlier_file(
    tmp_path, tiny_weights, monkeypatch, capsys, errno_
):
    out = tmp_path / "exported" / "tiny.onnx"
    arguments = ("export", "--weights", str(tiny_weights), "--format", "onnx", "--out", str(out))
    assert run_in_process(monkeypatch, capsys, *arguments).returncode == 0
    earlier = files_under(out.parent)
    RefusedWrites(monkeypatch, out.parent, errno_)
    assert_one_error_line(run_in_process(monkeypatch, capsys, *arguments), out, errno_)
    assert settled_files(out.parent) == earlier


def test_an_openvino_export_refused_in_one_line_keeps_the_earlier_pair(
    tmp_path, tiny_weights, monkeypatch, capsys
):
    """OpenVINO writes its IR in C++: a full disk is its RuntimeError, not an OSError; a
    read-only folder refuses the staging folder beside the target."""
    import openvino

    out = tmp_path / "exported" / "tiny.xml"
    arguments = (
        "export",
        "--weights",
        str(tiny_weights),
        "--format",
        "openvino",
        "--out",
        str(out),
    )
    assert run_in_process(monkeypatch, capsys, *arguments).returncode == 0
    earlier = files_under(out.parent)

    def full_disk(model: Any, path: str, **options: Any) -> None:
        Path(path).write_bytes(b"<?xml")  # part of the file, then the failure
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp:\nCan't write file")

    with monkeypatch.context() as patch:
        patch.setattr(openvino, "save_model", full_disk)
        result = run_in_process(monkeypatch, capsys, *arguments)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: cannot write {out}: OpenVINO could not save the model (Can't write file)"
    )
    assert files_under(out.parent) == earlier and len(list(out.parent.iterdir())) == 2
    RefusedWrites(monkeypatch, out.parent, READ_ONLY)
    assert_one_error_line(run_in_process(monkeypatch, capsys, *arguments), out, READ_ONLY)
    assert files_under(out.parent) == earlier


def test_report_writing_stops_in_one_line_and_leaves_earlier_files(
    tmp_path, tiny_weights, monkeypatch, capsys
):
    out = tmp_path / "report"
    arguments = ("evaluate", "--weights", str(tiny_weights), "--synthetic", "4", "--out", str(out))
    arguments += ("--device", "cpu", "--backend", "torch")
    assert run_in_process(monkeypatch, capsys, *arguments).returncode == 0
    earlier = files_under(out)
    assert {"metrics.json", "pr_curves.png"} <= {path.name for path in earlier}
    refused = RefusedWrites(monkeypatch, out, FULL_DISK, lambda path: path.name == "pr_curves.png")
    result = run_in_process(monkeypatch, capsys, *arguments)
    assert_one_error_line(result, out / "pr_curves.png", FULL_DISK)
    after = settled_files(out)
    assert after == refused.before and after.keys() == earlier.keys()
    assert after[out / "pr_curves.png"] == earlier[out / "pr_curves.png"]
    json.loads(after[out / "metrics.json"])  # rewritten (its timings differ) before the failure


def test_a_report_folder_that_cannot_be_made_is_one_line(
    tmp_path, tiny_weights, monkeypatch, capsys
):
    out = tmp_path / "read-only" / "report"
    out.parent.mkdir()
    RefusedWrites(monkeypatch, out.parent, READ_ONLY)
    arguments = ("evaluate", "--weights", str(tiny_weights), "--synthetic", "2", "--out", str(out))
    result = run_in_process(
        monkeypatch, capsys, *arguments, "--device", "cpu", "--backend", "torch"
    )
    assert_one_error_line(result, out, READ_ONLY)
    assert not out.exists()
