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
    assert "onestage.engine.device" in graph["onestage.engine.torch_forward"]


def imports_of_modules(prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    """For each module in or under one of `prefixes`, the onestage modules it imports."""
    return {
        name: targets
        for name, targets in import_graph().items()
        if any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)
    }


def offending_imports(
    importers: tuple[str, ...], forbidden: tuple[str, ...]
) -> dict[str, list[str]]:
    """The modules under `importers` that import a module under `forbidden`, with those imports."""
    found = {
        name: sorted(t for t in targets if any(t == f or t.startswith(f"{f}.") for f in forbidden))
        for name, targets in imports_of_modules(importers).items()
    }
    return {name: targets for name, targets in found.items() if targets}


MAX_LINES = 500


def test_no_source_file_is_over_500_lines():
    """engine/trainer.py grew to 587 lines (its Trainer class alone ~466) before it was split
    into trainer, train_process, training_data, step_loop, validation and run_checkpoint."""
    lengths = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    offenders = {path: lines for path, lines in sorted(lengths.items()) if lines > MAX_LINES}
    assert not offenders, f"over {MAX_LINES} lines: {offenders}"


def test_losses_optimiser_and_schedule_never_import_the_config():
    """The criterion (criterion_for lived in losses/criterion.py), the optimiser and the
    learning-rate schedule once took a TrainConfig; they take plain values now, and
    engine/train_settings.py is the one place a TrainConfig is translated into them."""
    importers = ("onestage.losses", "onestage.engine.optim", "onestage.engine.schedule")
    assert offending_imports(importers, ("onestage.config",)) == {}


def test_priors_never_import_assigners_or_losses():
    """The box codings (box_coding.py) once imported the assigners, for the Priors type, and
    the loss terms, for the ltrb distances; Priors and the distances live in onestage.priors."""
    forbidden = ("onestage.assign", "onestage.losses")
    assert offending_imports(("onestage.priors",), forbidden) == {}


def test_data_never_imports_the_assigners():
    """data/dataset.py once took the padding and ignored class ids from onestage.assign; they
    live in onestage.data.records, which the assigners import."""
    assert offending_imports(("onestage.data",), ("onestage.assign",)) == {}


def test_export_reaches_models_only_through_its_package_api():
    """export/onnx_graph.py imported onestage.models.fuse and export/graph_check.py
    onestage.models.heads; export takes fused_for_inference, BOX_CODINGS and output_values
    from onestage.models, so the models package can rearrange its modules."""
    internals = {
        name: sorted(t for t in targets if t.startswith("onestage.models."))
        for name, targets in imports_of_modules(("onestage.export",)).items()
    }
    assert {name: targets for name, targets in internals.items() if targets} == {}


def test_prediction_and_serving_never_import_the_metrics():
    """The predictor's result type (ImageDetections) once lived in onestage.metrics, so the
    predictor and the server imported the metrics; it lives in onestage.detections."""
    importers = ("onestage.engine.predictor", "onestage.engine.predict_folder", "onestage.serve")
    assert offending_imports(importers, ("onestage.metrics",)) == {}


def test_the_readme_map_names_every_package_and_top_level_module():
    """README's "Where things live" table must name each folder and top-level module of the
    package, so that the map cannot fall behind the tree."""
    readme = (PACKAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    names = {
        f"{path.name}/" if path.is_dir() else path.name
        for path in PACKAGE.iterdir()
        if (path.is_dir() and (path / "__init__.py").exists())
        or (path.suffix == ".py" and path.stem not in ("__init__", "__main__"))
    }
    assert sorted(name for name in names if f"`{name}`" not in section) == []


def test_the_command_line_imports_no_config_yaml_torch_or_optuna_before_a_command_runs():
    """Every command's cold start pays for what `import onestage.cli` loads: `tune`'s defaults
    once pulled the config and PyYAML into every command (25 ms of a 0.3 s cold start)."""
    import subprocess
    import sys

    heavy = ("yaml", "onestage.config", "torch", "optuna")
    code = f"import sys, onestage.cli; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
