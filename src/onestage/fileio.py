"""Atomic file writes: write a temporary file beside the target, then rename over it.

A process killed mid-write leaves the old file (or none) under the final name and, at worst, a
stray `.<name>.<random>.tmp` beside it (`remove_temp_files` clears those). A write that fails (a
full disk, a read-only folder) removes its temporary file and raises `WriteError` naming the
target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from onestage.errors import OnestageError, one_line


def _read_umask() -> int:
    """The process's umask: from /proc/self/status where Linux gives it (nothing changes),
    else by setting and restoring it, once, when this module is imported. Setting it at every
    write would give a file another thread creates meanwhile open permissions."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


PROCESS_UMASK = _read_umask()


class WriteError(OnestageError, OSError):
    """A file could not be written: `str()` reads `cannot write PATH: reason`; errno kept."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error), str(path))

    def __str__(self) -> str:
        return one_line(f"cannot write {self.filename}: {self.strerror}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    atomic_write_with(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | Path, write: Callable[[object], object]) -> None:
    """Call `write(binary_file_handle)` on a temp file, then rename it to `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise WriteError(path, error) from error
    try:
        os.fchmod(fd, 0o666 & ~PROCESS_UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise WriteError(path, error) from error
        raise


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the `.<name>.<random>.tmp` files a killed atomic write left in `folder`."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def unique_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """`project/name`, or `name2`, `name3`, ... when it exists (Ultralytics' run folders)."""
    base = Path(project) / name
    run_dir, suffix = base, 2
    while run_dir.exists() and not exist_ok:
        run_dir = base.with_name(f"{base.name}{suffix}")
        suffix += 1
    return run_dir
