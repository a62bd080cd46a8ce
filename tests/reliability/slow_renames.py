"""Runs the `onestage` command line with every atomic write held open for a moment.

`python slow_renames.py ARGS...` is `onestage ARGS...`, except that a temporary file is renamed
into place RENAME_PAUSE_S after it is complete. The kill tests run this worker so that the window
in which a checkpoint is being written is wide enough to kill a process inside it on purpose.
"""

from __future__ import annotations

import os
import sys
import time

RENAME_PAUSE_S = 0.02


def main() -> None:
    """Patch `os.replace`, then hand the arguments to the command line."""
    replace = os.replace

    def slow_replace(source: str | os.PathLike, target: str | os.PathLike) -> None:
        if os.fspath(source).endswith(".tmp"):
            time.sleep(RENAME_PAUSE_S)
        replace(source, target)

    os.replace = slow_replace
    from onestage.cli import main as onestage_main

    sys.argv = ["onestage", *sys.argv[1:]]
    onestage_main()


if __name__ == "__main__":
    main()
