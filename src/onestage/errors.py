"""Errors meant for the user: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class OnestageError(Exception):
    """A mistake in the user's input (file, option, config), not a bug in onestage."""


def first_line(error: BaseException) -> str:
    """`Type: the first line of its message`, to quote another library's error in one line."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


class DataError(OnestageError):
    """Bad dataset content, located by file and, where known, line or field.

    `str(error)` reads ``path:line: message`` or ``path: field: message``.
    """

    def __init__(
        self, path: str | Path, message: str, *, line: int | None = None, field: str | None = None
    ) -> None:
        self.path = Path(path)
        self.message = message
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        location = str(self.path)
        if self.line is not None:
            location += f":{self.line}"
        if self.field is not None:
            location += f": {self.field}"
        return f"{location}: {self.message}"
