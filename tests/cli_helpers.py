"""Running `onestage` from the tests: in a subprocess (the real entry point, as a user runs it)
or in this process (no interpreter start-up and imports, about 3 s less per call on two cores;
monkeypatches apply). Both give a `subprocess.CompletedProcess` with the exit code and output."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from onestage.cli import main as onestage_main


def run_onestage(
    *arguments: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m onestage ARGUMENTS` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "onestage", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def run_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *arguments: str
) -> subprocess.CompletedProcess:
    """`onestage ARGUMENTS` through its entry point in this process. The logging set-up `main`
    makes is undone after the test; an exception that is not a clean exit fails the test."""
    library_log = logging.getLogger("onestage")
    monkeypatch.setattr(library_log, "handlers", list(library_log.handlers))
    monkeypatch.setattr(library_log, "propagate", library_log.propagate)
    monkeypatch.setattr(sys, "argv", ["onestage", *arguments])
    capsys.readouterr()
    code = 0
    try:
        onestage_main()
    except SystemExit as exit_info:
        code = _exit_code(exit_info.code)
    output = capsys.readouterr()
    return subprocess.CompletedProcess(["onestage", *arguments], code, output.out, output.err)


def _exit_code(value: object) -> int:
    """The exit status of a process that called `sys.exit(value)`."""
    if value is None:
        return 0
    return value if isinstance(value, int) else 1
