"""What the benchmarks share: the epoch count of an image budget, the seed test set, the
command line a table names, printing (--record: appending) their tables, and a process's
resident memory."""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from onestage.engine.evaluator import EvalSet, synthetic_eval_set

BENCHMARKS_FILE = Path("BENCHMARKS.md")


def epochs_for(images: int, batch: int, steps: int) -> int:
    """Epochs of `steps` batches of `batch` images that make exactly `images` training images;
    exits with a one-line message when they do not divide it."""
    per_epoch = batch * steps
    if images % per_epoch:
        raise SystemExit(
            f"--images must be a multiple of {per_epoch} (batch {batch} x {steps} steps)"
        )
    return images // per_epoch


def command_line() -> str:
    """How the running benchmark was invoked, as a table names it:
    `python benchmarks/<script> <its arguments>`."""
    return shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def report(header: str, lines: list[str], record: bool) -> None:
    """Print `header` and the table `lines`; with `record` (--record), append them to
    BENCHMARKS.md too."""
    table = header + "\n".join(lines) + "\n"
    print(table)
    if record:
        append_to_benchmarks(table)


def append_to_benchmarks(text: str) -> None:
    """Append `text` to BENCHMARKS.md (the --record option of the benchmarks)."""
    with BENCHMARKS_FILE.open("a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")


def seed_test_set(class_names: tuple[str, ...], count: int, assets: Path) -> tuple[EvalSet, str]:
    """The seed benchmark's fixed test set (4 objects per image): the seed's icons and photos
    from `assets` when that folder exists, else OpenMoji on procedural backgrounds; and a label
    naming which."""
    found = assets if assets.is_dir() else None
    eval_set = synthetic_eval_set(
        class_names,
        count,
        icons=found / "icons" if found else None,
        backgrounds=found / "backgrounds" if found else None,
    )
    return eval_set, "seed icons+backgrounds" if found else "OpenMoji+procedural"


def rss_mb(pid: int | None = None, field: str = "VmRSS") -> float:
    """Resident memory of process `pid` (default: this one) in MB, from Linux's /proc; `field`
    "VmHWM" gives its peak so far (the kernel's high-water mark: no sample misses it)."""
    status = Path(f"/proc/{pid or os.getpid()}/status")
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} in {status}")


class RssSampler:
    """Samples another process's resident memory every `interval` seconds on a thread, from
    `start()` until `stop()` or the process ends; `samples` holds (seconds, MB, peak MB so
    far)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float, float]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, float, float]]:
        self._stopped.set()
        self._thread.join()
        return self.samples

    def _run(self) -> None:
        import time

        began = time.perf_counter()
        while not self._stopped.is_set():
            try:
                at = time.perf_counter() - began
                self.samples.append((at, rss_mb(self.pid), rss_mb(self.pid, "VmHWM")))
            except (OSError, SystemExit):  # the process has ended
                return
            self._stopped.wait(self.interval)


def run_together(tasks: list[Callable[[], object]]) -> float:
    """Run each task on a thread of its own, all started together; the wall seconds until the
    last one ends (load generators: one client a thread)."""
    threads = [threading.Thread(target=task) for task in tasks]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began
