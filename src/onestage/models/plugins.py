"""Users' own code: Python files imported by path (`imports:` in a spec, `--plugin FILE.py`), so
that their `@register_block` calls add blocks without editing onestage."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from onestage.errors import OnestageError, first_line

# Absolute paths of the plugin files imported in this process, in import order.
_IMPORTED_PLUGINS: list[str] = []


def imported_plugins() -> list[str]:
    """The plugin files imported so far (weights record them, so loading imports them too)."""
    return list(_IMPORTED_PLUGINS)


def import_plugins(paths: Iterable[str | Path]) -> None:
    """Import each Python file (once per process) so that its `@register_block` calls run."""
    for entry in paths:
        path = Path(entry).resolve()
        if not path.is_file():
            raise OnestageError(f"plugin {entry}: no such file")
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        stem = re.sub(r"\W", "_", path.stem)
        module_name = f"_onestage_plugin_{stem}_{digest}"
        if module_name in sys.modules:
            continue
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise OnestageError(f"plugin {entry}: not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:  # the user's code: any error becomes one line naming it
            del sys.modules[module_name]
            raise OnestageError(f"plugin {entry}: import failed: {first_line(error)}") from None
        _IMPORTED_PLUGINS.append(str(path))
