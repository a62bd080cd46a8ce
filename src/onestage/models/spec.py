"""Model specs: a detector declared as named layers in YAML (or Python), read into a `Spec`;
`onestage.models.spec_model` builds it into a module graph.

A spec has a `name`, an `input_size` (the side of the square image it is built for; a build call
may change it), an optional `init` (`torch`: each layer's own initialisation, the default;
`glorot`: Keras' Glorot-uniform kernels with zero biases, as the seed), optional `imports`
(the plugin files that register the user's own blocks: named in errors, never imported; the
user passes them with `--plugin`, `onestage.models.plugins`) and three sections, `backbone`,
`neck` (optional) and `head`, each a list of layers that run in order:

    - {name: NAME, block: BLOCK, from: NAME or [NAMES], ARG: VALUE, ...}

`name` is the layer's attribute name in the model, so its state-dict keys are `NAME.weight`, ...
`block` is a name in `onestage.models.blocks.BLOCKS`. `from` names the layers it reads: by
default the previous layer; the first layer reads `input`, the image (B, 3, S, S). Every other
key is an argument of the block (they may also go under `args: {...}`). Input channels are never
written: the builder runs a dummy image through the layers built so far and takes each layer's
`in_channels` from the shapes its inputs have. `num_classes` is never written either: it comes
from the build call and goes to every block with a `num_classes` parameter. The last layer is
a head (`onestage.models.heads`): anchor-based, (B, A, 4 + num_classes + 1), or anchor-free,
(B, A, 4 (reg_max + 1) + num_classes). A worked example, two levels at 16 and 8 px:

    name: tiny
    input_size: 64
    imports: [my_blocks.py]           # optional: the plugin files the spec needs (--plugin)
    backbone:
      - {name: stem, block: conv, out: 16, k: 3, s: 2, act: relu}    # (B, 16, 32, 32)
      - {name: c4, block: csp, out: 32, n: 1}                         # (B, 32, 32, 32)
      - {name: down, block: conv_bn, out: 32, k: 3, s: 2}             # (B, 32, 16, 16)
      - {name: c5, block: sppf, out: 64}                              # (B, 64, 16, 16)
    neck:
      - {name: up, block: upsample, scale: 2}                         # (B, 64, 32, 32)
      - {name: p4, block: concat, from: [up, c4]}                     # (B, 96, 32, 32)
    head:
      - {name: box_p4, block: ssd_box, from: p4, anchors: 3}
      - {name: class_p4, block: ssd_class, from: p4, anchors: 3}
      - {name: box_p5, block: ssd_box, from: c5, anchors: 3}
      - {name: class_p5, block: ssd_class, from: c5, anchors: 3}
      - name: detect                                                  # (B, 3840, 4 + K + 1)
        block: ssd_output
        from: [box_p4, class_p4, box_p5, class_p5]

The same graph in Python: `Spec(name="tiny", input_size=64, backbone=[Layer("stem", "conv",
out=16, k=3, s=2, act="relu"), ...], neck=[..., Layer("p4", "concat", ["up", "c4"])], head=[...])`.

A broken spec fails at build time with one line (an `OnestageError`) naming the layer, its input
shapes and what is wrong: an unknown block (with a "did you mean"), an unknown `from`, a bad
argument or a shape mismatch in the dry run.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from onestage.errors import OnestageError, first_line
from onestage.limits import MAX_INPUT_SIZE, read_text_within
from onestage.parsing import MalformedText, parse_yaml

SPECS_DIR = Path(__file__).parent / "specs"
SECTIONS = ("backbone", "neck", "head")
TOP_KEYS = ("name", "input_size", "init", "imports", *SECTIONS)
LAYER_KEYS = ("name", "block", "from", "args")
INITS = ("torch", "glorot")
INPUT = "input"  # the name under which layers read the image


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 with `1e-3` read as a float (PyYAML alone reads it as a string)."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass(init=False)
class Layer:
    """One layer: `Layer("p4", "concat", ["up", "c4"])`, `Layer("stem", "conv", out=16, k=3)`.

    `sources` are the names of the layers it reads; None means the previous layer (or `input`).
    """

    name: str
    block: str
    sources: tuple[str, ...] | None
    args: dict[str, Any]

    def __init__(
        self, name: str, block: str, from_: str | Iterable[str] | None = None, **args: Any
    ) -> None:
        self.name = name
        self.block = block
        self.sources = (
            (from_,) if isinstance(from_, str) else None if from_ is None else tuple(from_)
        )
        self.args = args

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form: name, block, from (when given), args."""
        data: dict[str, Any] = {"name": self.name, "block": self.block}
        if self.sources is not None:
            data["from"] = self.sources[0] if len(self.sources) == 1 else list(self.sources)
        return {**data, "args": dict(self.args)}


@dataclass(kw_only=True)
class Spec:
    """A detector: layers of a backbone, a neck and a head, run in that order (see the module).

    `origin` (the file, or `spec 'name'`) starts every error message; it is not compared.
    """

    name: str
    backbone: list[Layer]
    head: list[Layer]
    neck: list[Layer] = field(default_factory=list)
    input_size: int = 320
    init: str = "torch"
    imports: tuple[str, ...] = ()
    origin: str = field(default="", compare=False)

    def where(self) -> str:
        """How error messages name this spec."""
        return self.origin or f"spec {self.name!r}"

    def layers(self) -> list[tuple[str, Layer]]:
        """Every layer in run order with its position, e.g. ("neck[1]", layer)."""
        return [
            (f"{section}[{index}]", layer)
            for section in SECTIONS
            for index, layer in enumerate(getattr(self, section))
        ]

    def to_dict(self) -> dict[str, Any]:
        """A plain (JSON- and YAML-ready) mapping that `spec_from_dict` reads back."""
        data: dict[str, Any] = {"name": self.name, "input_size": self.input_size}
        data |= {"init": self.init, "imports": list(self.imports)}
        return data | {s: [layer.to_dict() for layer in getattr(self, s)] for s in SECTIONS}


# The layer arguments `scaled_spec` scales: channel counts, and a block's repeats.
CHANNEL_ARGS = ("out", "box_width", "class_width")
REPEAT_ARGS = ("n",)


def scaled_spec(spec: Spec, width: float = 1.0, depth: float = 1.0) -> Spec:
    """`spec` with every layer's channel counts (CHANNEL_ARGS) times `width`, rounded up to a
    multiple of 8, and its repeats (REPEAT_ARGS) times `depth`, rounded (at least
    1): YOLO's width and depth multiples. Its name says the factors ("csp-t-w0.5-d0.33")."""
    if width <= 0 or depth <= 0:
        raise OnestageError(f"{spec.where()}: width and depth multiples are above 0")
    if (width, depth) == (1.0, 1.0):
        return spec

    def scaled(layer: Layer) -> Layer:
        args = dict(layer.args)
        for key in CHANNEL_ARGS:
            if isinstance(args.get(key), int):
                args[key] = max(8, math.ceil(args[key] * width / 8) * 8)
        for key in REPEAT_ARGS:
            if isinstance(args.get(key), int):
                args[key] = max(1, round(args[key] * depth))
        return Layer(layer.name, layer.block, layer.sources, **args)

    factors = (f"-w{width:g}" if width != 1.0 else "") + (f"-d{depth:g}" if depth != 1.0 else "")
    return replace(
        spec,
        name=spec.name + factors,
        backbone=[scaled(layer) for layer in spec.backbone],
        neck=[scaled(layer) for layer in spec.neck],
        head=[scaled(layer) for layer in spec.head],
    )


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """'; did you mean 'x'?' for a close option (or the longest one that starts the word, as
    `k` for `kernel`), else ''."""
    options = list(options)
    close = difflib.get_close_matches(word, options, n=1)
    close += sorted((o for o in options if word.startswith(o)), key=len, reverse=True)
    return f"; did you mean {close[0]!r}?" if close else ""


def _layer_from(item: Any, origin: str, position: str) -> Layer:
    """A Layer from its YAML mapping, with inline arguments merged into `args`."""
    if not isinstance(item, dict):
        raise OnestageError(f"{origin}: {position}: a layer is a mapping with name and block")
    for key in ("name", "block"):
        if not isinstance(item.get(key), str):
            raise OnestageError(f"{origin}: {position}: a layer needs a {key} (a string)")
    sources = item.get("from")
    names = [sources] if isinstance(sources, str) else sources
    if sources is not None and not (
        isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    ):
        raise OnestageError(
            f"{origin}: {position} ({item['name']!r}): from must be a layer name or a list of them"
        )
    args = item.get("args") or {}
    if not isinstance(args, dict):
        raise OnestageError(f"{origin}: {position} ({item['name']!r}): args must be a mapping")
    if not all(isinstance(key, str) for key in (*item, *args)):
        raise OnestageError(
            f"{origin}: {position} ({item['name']!r}): argument names must be strings"
        )
    inline = {key: value for key, value in item.items() if key not in LAYER_KEYS}
    if twice := sorted(set(args) & set(inline)):
        raise OnestageError(
            f"{origin}: {position} ({item['name']!r}): argument {twice[0]!r} given twice"
        )
    return Layer(item["name"], item["block"], sources, **args, **inline)


def spec_from_dict(data: dict[str, Any], origin: str = "") -> Spec:
    """A Spec from its mapping (parsed YAML or `Spec.to_dict()`)."""
    origin = origin or f"spec {data.get('name')!r}"
    for key in data:
        if key not in TOP_KEYS:
            hint = did_you_mean(str(key), TOP_KEYS) or f"; valid keys: {', '.join(TOP_KEYS)}"
            raise OnestageError(f"{origin}: unknown key {key!r}{hint}")
    if not isinstance(data.get("name"), str):
        raise OnestageError(f"{origin}: a spec needs a name (a string)")
    size = data.get("input_size", 320)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_INPUT_SIZE:
        raise OnestageError(
            f"{origin}: input_size must be an integer from 1 to {MAX_INPUT_SIZE}, got {size!r:.40}"
        )
    imports = data.get("imports") or []
    if not isinstance(imports, list) or not all(isinstance(p, str) for p in imports):
        raise OnestageError(f"{origin}: imports must be a list of Python file paths")
    sections = {}
    for section in SECTIONS:
        items = data.get(section) or []
        if not isinstance(items, list):
            raise OnestageError(f"{origin}: {section} must be a list of layers")
        sections[section] = [
            _layer_from(item, origin, f"{section}[{index}]") for index, item in enumerate(items)
        ]
    return Spec(
        name=data["name"],
        input_size=size,
        init=data.get("init", "torch"),
        imports=tuple(imports),
        origin=origin,
        **sections,
    )


def parse_spec(text: str, origin: str = "<spec>") -> Spec:
    """A Spec from YAML text; malformed YAML is one line with its line and column."""
    try:
        data = parse_yaml(text, _SpecLoader)
    except MalformedText as error:
        where = f":{error.line}" if error.line is not None else ""
        where += f":{error.column}" if error.line is not None and error.column is not None else ""
        raise OnestageError(f"{origin}{where}: malformed YAML: {error.problem}") from None
    if not isinstance(data, dict):
        raise OnestageError(f"{origin}: a spec is a mapping with name, backbone, neck and head")
    return spec_from_dict(data, origin)


def spec_names() -> list[str]:
    """The built-in specs (files in `models/specs/`), sorted."""
    return sorted(path.stem for path in SPECS_DIR.glob("*.yaml"))


def load_spec(source: str | Path) -> Spec:
    """A Spec from a YAML file, or a built-in spec by name (`"seed"`)."""
    path = Path(source)
    if not path.is_file() and isinstance(source, str) and source in spec_names():
        path = SPECS_DIR / f"{source}.yaml"
    if not path.is_file():
        raise OnestageError(
            f"{source}: no such spec file, and no built-in spec of that name "
            f"(built-in: {', '.join(spec_names())})"
        )
    try:
        text = read_text_within(path)
    except (OSError, UnicodeDecodeError) as error:
        raise OnestageError(f"{path}: cannot read the spec file ({first_line(error)})") from None
    return parse_spec(text, str(path))


def as_spec(source: Spec | dict[str, Any] | str | Path) -> Spec:
    """A Spec from a Spec, its mapping, a YAML file or a built-in spec name."""
    if isinstance(source, Spec):
        return source
    if isinstance(source, dict):
        return spec_from_dict(source)
    return load_spec(source)
