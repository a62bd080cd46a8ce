"""File tests for paths read from a dataset's own files, which may name anything."""

from __future__ import annotations

from pathlib import Path


def is_file(path: Path) -> bool:
    """`path.is_file()`, but False instead of an OSError for a name the system refuses (one
    longer than its limit, say)."""
    try:
        return path.is_file()
    except OSError:
        return False


def is_dir(path: Path) -> bool:
    """`path.is_dir()`, but False instead of an OSError for a name the system refuses."""
    try:
        return path.is_dir()
    except OSError:
        return False
