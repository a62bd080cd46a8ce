"""The `onestage` command line: parses options, calls the library, prints results.

Commands live in one module per family (data, training, evaluation); importing them registers
them on `app`.
"""

from __future__ import annotations

import errno
import logging
import sys

# isort: off
# Imported for their commands, in the order `onestage --help` lists them.
from onestage.cli import (  # noqa: F401
    data_commands,
    train_commands,
    tune_commands,
    model_commands,
    eval_commands,
    export_commands,
    serve_commands,
)

# isort: on
from onestage.cli.app import app, error_console
from onestage.errors import OnestageError

# errno values of a write the machine refused (a full disk or quota, a read-only file system),
# and of a forbidden file or folder (a read or a write).
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
ACCESS_DENIED = {errno.EACCES, errno.EPERM}


class WarningLines(logging.Handler):
    """Prints the library's log records (e.g. labels clipped while reading) as `warning:` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        error_console.print(
            f"[bold yellow]warning:[/] {record.getMessage()}", highlight=False, soft_wrap=True
        )


def main() -> None:
    """Entry point: user mistakes and refused writes (a full disk, a read-only folder) become
    one `error:` line and exit code 2, never a traceback."""
    library_log = logging.getLogger("onestage")
    if not any(isinstance(handler, WarningLines) for handler in library_log.handlers):
        library_log.addHandler(WarningLines(logging.WARNING))
    library_log.propagate = False
    try:
        app()
    except OnestageError as error:
        _exit_with_error(str(error))
    except OSError as error:
        if error.errno not in WRITE_FAILURES | ACCESS_DENIED:
            raise
        _exit_with_error(refusal_line(error))


def refusal_line(error: OSError) -> str:
    """One line for a write refused outside onestage.fileio (which raises WriteError itself)."""
    where = error.filename if error.filename is not None else "a file"
    reason = error.strerror or str(error)
    if error.errno in ACCESS_DENIED:
        return f"{where}: {reason}"
    return f"cannot write {where}: {reason}"


def _exit_with_error(message: str) -> None:
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(2)


__all__ = ["app", "main"]
