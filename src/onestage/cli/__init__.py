"""The `onestage` command line: parses options, calls the library, prints results.

Commands live in one module per family (data, training, evaluation); importing them registers
them on `app`.
"""

from __future__ import annotations

import logging
import sys

# isort: off
# Imported for their commands, in the order `onestage --help` lists them.
from onestage.cli import (  # noqa: F401
    data_commands,
    train_commands,
    model_commands,
    eval_commands,
    export_commands,
    serve_commands,
)

# isort: on
from onestage.cli.app import app, error_console
from onestage.errors import OnestageError


class WarningLines(logging.Handler):
    """Prints the library's log records (e.g. labels clipped while reading) as `warning:` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        error_console.print(
            f"[bold yellow]warning:[/] {record.getMessage()}", highlight=False, soft_wrap=True
        )


def main() -> None:
    """Entry point: user mistakes become one `error:` line and exit code 2, never a traceback."""
    library_log = logging.getLogger("onestage")
    library_log.addHandler(WarningLines(logging.WARNING))
    library_log.propagate = False
    try:
        app()
    except OnestageError as error:
        error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)


__all__ = ["app", "main"]
