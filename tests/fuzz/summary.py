"""Tabulate a fuzz report (JSON lines from ONESTAGE_FUZZ_REPORT): cases, failures, slowest
case and largest memory growth per reader. Usage: python tests/fuzz/summary.py REPORT."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def summary(report: Path) -> str:
    """A Markdown table, one row per reader, and a total line."""
    rows: dict[str, dict[str, float]] = defaultdict(
        lambda: {"cases": 0, "failures": 0, "max_seconds": 0.0, "max_mb": 0.0}
    )
    for line in report.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        row = rows[entry["reader"]]
        row["cases"] += entry["cases"]
        row["failures"] += entry["failures"]
        row["max_seconds"] = max(row["max_seconds"], entry["max_seconds"])
        row["max_mb"] = max(row["max_mb"], entry["max_mb"])
    lines = ["| reader | cases | failures | slowest case (s) | largest memory (MB) |"]
    lines.append("|---|---:|---:|---:|---:|")
    for reader, row in sorted(rows.items()):
        lines.append(
            f"| {reader} | {row['cases']} | {row['failures']} | {row['max_seconds']:.3f} "
            f"| {row['max_mb']:.1f} |"
        )
    total = sum(row["cases"] for row in rows.values())
    failures = sum(row["failures"] for row in rows.values())
    lines.append(f"\n{total} cases, {failures} failures")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))
