"""Errors meant for the user: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path

# Control characters (C0, DEL and C1: ESC and CSI start terminal commands) and line breaks
# (str.splitlines also breaks at U+2028 and U+2029) a message may carry from the user's input (a
# file name with a newline in data.yaml, say), written as escapes so every message is one line.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def one_line(text: str) -> str:
    """`text` with its control characters and line breaks written as escapes."""
    return text.translate(_ESCAPES)


class OnestageError(Exception):
    """A mistake in the user's input (file, option, config), not a bug in onestage; its
    message is always one line."""

    def __str__(self) -> str:
        return one_line(super().__str__())


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
        return one_line(f"{location}: {self.message}")
