"""YAML and JSON parsing whose every failure is one `MalformedText`: the parsers' own errors,
and what they let escape besides (nesting deeper than the recursion limit, integers longer
than Python converts, impossible dates), each with a one-line problem and, where known, the
line and column. Readers turn it into their own one-line error naming the file."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from onestage.errors import first_line

if TYPE_CHECKING:
    import yaml

# PyYAML's scanner takes time quadratic in the depth of flow nesting ([[[... or {{{...: 1.2 s
# for 20,000 levels, before its parser gives up at the recursion limit); no config nests more
# than a few levels, so deeper text is refused before it is parsed.
MAX_FLOW_DEPTH = 100
_FLOW_BRACKETS = re.compile(r"[\[\]{}]")


class MalformedText(ValueError):
    """Text that does not parse: `problem` (one line) at `line`, `column` (1-based, or None)."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        self.problem = problem
        self.line = line
        self.column = column
        super().__init__(problem)


def parse_yaml(text: str, loader: type[yaml.SafeLoader] | None = None) -> Any:
    """The document in YAML `text`, read with `loader` (a SafeLoader or a subclass; default
    SafeLoader). PyYAML is imported here: reading an exported file's JSON needs none of it."""
    import yaml

    loader = loader or yaml.SafeLoader
    _check_flow_depth(text)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "malformed"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        raise MalformedText(_one_line(problem), line, column) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise MalformedText(f"character #x{code:04x} is not allowed", line) from None
    except yaml.YAMLError as error:
        raise MalformedText(_one_line(first_line(error))) from None
    except RecursionError:
        raise MalformedText("nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as error:  # e.g. a 5000-digit integer
        raise MalformedText(_one_line(first_line(error))) from None


def parse_json(text: str) -> Any:
    """The value in JSON `text`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedText(error.msg, error.lineno, error.colno) from None
    except RecursionError:
        raise MalformedText("nested too deeply") from None
    except ValueError as error:  # e.g. a 5000-digit integer
        raise MalformedText(_one_line(first_line(error))) from None


def _check_flow_depth(text: str) -> None:
    """Refuse text whose [ and { (counted anywhere, quoted or not) open more than
    MAX_FLOW_DEPTH levels at once."""
    if text.count("[") + text.count("{") <= MAX_FLOW_DEPTH:
        return
    depth = 0
    for match in _FLOW_BRACKETS.finditer(text):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_FLOW_DEPTH:
            line = text.count("\n", 0, match.start()) + 1
            raise MalformedText(f"nested deeper than {MAX_FLOW_DEPTH} levels", line)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
