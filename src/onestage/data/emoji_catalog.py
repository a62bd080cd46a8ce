"""The OpenMoji catalogue the shipped `base` model trains on, and the emoji it never sees.

`base` learns general detection features from many emoji; its benchmark (benchmarks/own_data.py)
then measures transfer to classes it has not seen: HELD_OUT_EMOJI, and every emoji whose Unicode
name holds one of them as whole words (`oncoming taxi`, `old key`; `monkey` stays in).
"""

from __future__ import annotations

import re
import unicodedata

from onestage.data.icons import EmojiClass, openmoji_svg_dir

# The 40 classes the base model never trains on (Unicode names, lower case).
HELD_OUT_EMOJI: tuple[str, ...] = (
    "bicycle", "automobile", "airplane", "guitar", "umbrella", "alarm clock", "bus", "taxi",
    "ambulance", "fire engine", "police car", "delivery truck", "tractor", "motor scooter",
    "sailboat", "speedboat", "ship", "helicopter", "rocket", "tram", "trumpet", "violin",
    "saxophone", "banjo", "accordion", "hammer", "wrench", "screwdriver", "axe", "magnet", "key",
    "lock", "candle", "camera", "television", "radio", "watch", "teddy bear", "kite", "crown",
)  # fmt: skip

# OpenMoji's variation selector: `2708-FE0F` is the emoji form of U+2708.
_VARIATION_SELECTOR = "FE0F"


def is_held_out(name: str, held_out: tuple[str, ...] = HELD_OUT_EMOJI) -> bool:
    """True when `name` holds one of `held_out` as whole words (`old key`, not `monkey`)."""
    return any(_spaced_words(held) in _spaced_words(name) for held in held_out)


def _spaced_words(text: str) -> str:
    """`text`'s lower-case words, each between single spaces (`Old-Key` -> ` old key `)."""
    return f" {' '.join(re.findall(r'[a-z0-9]+', text.lower()))} "


def openmoji_single_emoji() -> list[EmojiClass]:
    """Every OpenMoji emoji of one Unicode code point with a Unicode name (no flags, skin tones,
    keycaps or joined sequences), named by that name, sorted by code point."""
    stems = {path.name.split(".")[0] for path in openmoji_svg_dir().iterdir()}
    found: dict[str, EmojiClass] = {}
    for stem in sorted(stems):
        points = [part for part in stem.split("-") if part != _VARIATION_SELECTOR]
        if len(points) != 1:
            continue
        name = unicodedata.name(chr(int(points[0], 16)), "").lower()
        if name and points[0] not in found:
            found[points[0]] = EmojiClass(name, points[0])
    return sorted(found.values(), key=lambda emoji: int(emoji.code, 16))


def base_emoji(held_out: tuple[str, ...] = HELD_OUT_EMOJI) -> list[EmojiClass]:
    """The emoji `base` trains on: `openmoji_single_emoji()` less every held-out one."""
    return [emoji for emoji in openmoji_single_emoji() if not is_held_out(emoji.name, held_out)]
