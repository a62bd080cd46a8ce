"""The house rules of ARCHITECTURE: no import circles, lower floors never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

import onestage

PACKAGE = Path(onestage.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every onestage module imported anywhere in the file (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("onestage"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("onestage"))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {
        name: {target for target in imports_of(path) if target in modules and target != name}
        for name, path in modules.items()
    }


def test_no_import_circles():
    graph = import_graph()
    # the package itself re-exports the public API; the CLI package registers its commands
    graph = {
        name: {t for t in targets if t not in ("onestage", "onestage.cli")}
        for name, targets in graph.items()
    }
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_lower_floors_never_import_higher_ones():
    graph = import_graph()
    assert not {t for t in graph["onestage.boxes"] if t != "onestage.errors"}
    assert graph["onestage.__main__"] == {"onestage.cli"}
    for name, targets in graph.items():
        if name.startswith("onestage.models"):
            assert not {t for t in targets if t.startswith(("onestage.data", "onestage.engine"))}
        if name.startswith("onestage.data"):
            assert not {t for t in targets if t.startswith(("onestage.models", "onestage.engine"))}
        if not name.startswith(("onestage.cli", "onestage.__main__")):
            assert not {t for t in targets if t.startswith("onestage.cli")}, name


def test_the_old_circle_is_detected_by_the_graph():
    # engine/predictor.py once took resolve_device from engine/trainer.py, which imports it
    graph = import_graph()
    assert "onestage.engine.predictor" in graph["onestage.engine.trainer"]
    assert "onestage.engine.trainer" not in graph["onestage.engine.predictor"]
    assert "onestage.engine.device" in graph["onestage.engine.predictor"]
