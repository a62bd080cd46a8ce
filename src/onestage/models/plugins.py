"""Users' own code: Python files the user names (`--plugin FILE.py`, `plugins=[...]`), run so
that their `@register_block` / `@register_model` calls add blocks and models without editing
onestage.

Only the user names plugins: no spec, weights file or exported file makes onestage run code.
A weights file records each plugin its model needs as `{"file": "mine.py", "sha256": DIGEST,
"blocks": [...], "models": [...]}` (`plugin_records`): the file name alone, never a folder, and
the SHA-256 of its source. Loading such weights (`check_recorded_plugins`) asks that every block
and model they name is registered, by the plugin with the recorded digest: a missing one is a
one-line error naming the block and the plugin file it came from; a plugin whose source differs
is one line too, unless the user loaded it with `trusted=True` (`--trust-plugin FILE`).
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onestage import limits
from onestage.errors import DataError, OnestageError, first_line
from onestage.limits import read_bytes_within
from onestage.metadata import PLUGIN_RECORD_KEYS
from onestage.models.blocks import BLOCKS
from onestage.models.registry import MODELS
from onestage.registry import Registry

# what a plugin registers, by record key
RECORD_KINDS = dict(zip(PLUGIN_RECORD_KEYS, (BLOCKS, MODELS), strict=True))


@dataclass(frozen=True)
class Plugin:
    """A plugin file run in this process: its file name, the SHA-256 of its source, the module
    its code ran in, and whether the user trusts it whatever digest a weights file records."""

    file: str
    sha256: str
    module: str
    trusted: bool = False


# Plugins run in this process, by module name (`_onestage_plugin_<digest>`).
_LOADED: dict[str, Plugin] = {}


def load_plugins(paths: Iterable[str | Path], trusted: bool = False) -> list[Plugin]:
    """Run each Python file (`.py` only) so that its registrations take effect; the same source
    runs once per process. Every failure (no such file, another suffix, too large, unreadable,
    an error in the code) is a one-line `OnestageError` naming the file."""
    return [_load_plugin(Path(entry), trusted) for entry in paths]


def _load_plugin(path: Path, trusted: bool) -> Plugin:
    source = _read_source(path)
    digest = hashlib.sha256(source).hexdigest()
    module_name = f"_onestage_plugin_{digest[:16]}"
    loaded = _LOADED.get(module_name)
    if loaded is not None and module_name in sys.modules and _still_registered(module_name):
        plugin = Plugin(path.name, digest, module_name, trusted or loaded.trusted)
        _LOADED[module_name] = plugin
        return plugin
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # the user named this file
    except (Exception, SystemExit) as error:  # the user's code: any error is one line naming it
        del sys.modules[module_name]
        raise OnestageError(f"plugin {path}: failed: {first_line(error)}") from None
    plugin = Plugin(path.name, digest, module_name, trusted)
    _LOADED[module_name] = plugin
    return plugin


def _read_source(path: Path) -> bytes:
    """The plugin's bytes, after checking it is a `.py` file within MAX_PLUGIN_BYTES."""
    if path.suffix != ".py":
        raise OnestageError(f"plugin {path}: not a .py file (plugins are Python source files)")
    try:
        if not path.exists():
            raise OnestageError(f"plugin {path}: no such file")
        if not path.is_file():
            raise OnestageError(f"plugin {path}: not a file")
        return read_bytes_within(path, limits.MAX_PLUGIN_BYTES)
    except DataError as error:
        raise OnestageError(f"plugin {error}") from None
    except OSError as error:
        raise OnestageError(f"plugin {path}: cannot read it ({error.strerror})") from None


def _still_registered(module_name: str) -> bool:
    """Whether a plugin module run before still has a registration in place (a test may have
    put the registries back, and then the plugin must run again)."""
    return any(
        cls.__module__ == module_name
        for registry in RECORD_KINDS.values()
        for cls in registry.classes.values()
    )


def plugin_of(cls: type) -> Plugin | None:
    """The plugin that defined `cls`, or None for onestage's own and other code."""
    return _LOADED.get(cls.__module__)


def plugin_records(names: Mapping[str, Iterable[str]]) -> list[dict[str, Any]]:
    """What a weights file records of the plugins behind the given registered names
    (`{"blocks": [...], "models": [...]}`): per plugin, its file name, digest and the names it
    registered among them. Names of onestage's own classes record nothing."""
    records: dict[str, dict[str, Any]] = {}
    for kind, registry in RECORD_KINDS.items():
        for name in sorted(set(names.get(kind, ()))):
            plugin = plugin_of(registry.classes[name]) if name in registry.classes else None
            if plugin is None:
                continue
            record = records.setdefault(
                plugin.sha256,
                {"file": plugin.file, "sha256": plugin.sha256, "blocks": [], "models": []},
            )
            record[kind].append(name)
    return list(records.values())


def check_recorded_plugins(records: Any, source: str | Path) -> None:
    """Check what a weights file at `source` records of its plugins (`plugin_records`) against
    this process: every recorded block and model registered, by a plugin of the recorded
    digest (or one loaded as trusted). One-line errors name the block and the plugin file.
    Records as older onestage wrote them (plain paths) carry nothing to check."""
    for record in records or ():
        if not isinstance(record, dict):
            continue
        file, digest = record.get("file"), record.get("sha256")
        for kind, registry in RECORD_KINDS.items():
            for name in record.get(kind, ()):
                _check_one(registry, kind, name, file, digest, source)


def _check_one(
    registry: Registry, kind: str, name: str, file: str, digest: str, source: str | Path
) -> None:
    what = f"{kind[:-1]} {name!r}"
    cls = registry.classes.get(name)
    if cls is None:
        raise OnestageError(
            f"{source}: needs {what}, which the plugin {file} registered: pass that file with "
            "--plugin (plugins=[...] in Python)"
        )
    plugin = plugin_of(cls)
    if plugin is None or plugin.sha256 == digest or plugin.trusted:
        return
    raise OnestageError(
        f"{source}: {what} comes from plugin {plugin.file} (sha256 {plugin.sha256[:12]}), not "
        f"the {file} these weights were trained with (sha256 {digest[:12]}); to run it anyway, "
        f"give it with --trust-plugin {plugin.file}"
    )
