"""The mutation score of each module from mutmut's results (`make mutate` prints it): a markdown
table of mutants, killed (a test failed, or the mutant hung past its timeout), survived and
not reached by any selected test, and the score = (killed + timeout) / mutants. With
`--survivors`, each module's surviving mutant names follow (see one with `mutmut show NAME`).

    python tests/mutation_score.py [--survivors] [MUTANTS_FOLDER]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

DETECTED = ("killed", "timeout")


def module_results(folder: Path) -> dict[str, dict[str, str]]:
    """{module file: {mutant name: status}} from the `.meta` files mutmut writes."""
    results = {}
    for meta in sorted((folder / "src").rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        module = meta.relative_to(folder / "src").as_posix().removesuffix(".meta")
        results[module] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return results


def score_table(results: dict[str, dict[str, str]]) -> str:
    """The markdown table, one row per module and a total."""
    lines = [
        "| module | mutants | killed | timeout | survived | no tests | score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    total: Counter[str] = Counter()
    for module, statuses in results.items():
        counts = Counter(statuses.values())
        total.update(counts)
        lines.append(_row(f"`{module}`", counts))
    lines.append(_row("**all**", total))
    return "\n".join(lines)


def _row(name: str, counts: Counter[str]) -> str:
    mutants = sum(counts.values())
    detected = sum(counts[status] for status in DETECTED)
    score = f"{100 * detected / mutants:.1f} %" if mutants else "-"
    cells = [counts["killed"], counts["timeout"], counts["survived"], counts["no tests"]]
    return f"| {name} | {mutants} | " + " | ".join(map(str, cells)) + f" | {score} |"


def main(arguments: list[str]) -> None:
    survivors = "--survivors" in arguments
    folders = [argument for argument in arguments if argument != "--survivors"]
    results = module_results(Path(folders[0] if folders else "mutants"))
    print(score_table(results))
    if survivors:
        for module, statuses in results.items():
            names = [name for name, status in statuses.items() if status not in DETECTED]
            if names:
                print(f"\n{module}: " + " ".join(sorted(names)))


if __name__ == "__main__":
    main(sys.argv[1:])
