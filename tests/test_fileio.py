"""Atomic writes: the usual file mode, read from the process umask without changing it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from onestage import fileio


def test_a_write_gives_the_umask_mode_and_never_touches_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing the umask, even for a moment, gives a file another thread creates then open
    permissions: atomic writes read it once instead."""
    mask = os.umask(0o027)
    os.umask(mask)
    assert mask == fileio.PROCESS_UMASK
    monkeypatch.setattr(fileio, "PROCESS_UMASK", 0o027)

    def forbidden(_: int) -> int:
        raise AssertionError("the umask was changed during a write")

    monkeypatch.setattr(os, "umask", forbidden)
    path = tmp_path / "a.txt"
    fileio.atomic_write_text(path, "x")
    assert path.read_text() == "x"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_the_umask_is_read_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    mask = os.umask(0o077)
    try:
        assert fileio._read_umask() == 0o077
    finally:
        os.umask(mask)
