"""The emoji the shipped `base` model trains on, and the held-out ones it never sees."""

from __future__ import annotations

from onestage.data.emoji_catalog import (
    HELD_OUT_EMOJI,
    base_emoji,
    is_held_out,
    openmoji_single_emoji,
)
from onestage.data.icons import openmoji_svg_dir, resolve_emoji


def test_a_name_is_held_out_when_it_holds_a_held_out_name_as_whole_words():
    assert is_held_out("old key") and is_held_out("oncoming taxi") and is_held_out("key")
    assert is_held_out("closed lock with key") and is_held_out("Teddy Bear")
    assert is_held_out("hammer and pick") and is_held_out("radio button")
    assert not is_held_out("monkey") and not is_held_out("locked") and not is_held_out("keys")
    assert not is_held_out("stopwatch") and not is_held_out("minibus")
    assert not is_held_out("teddy") and not is_held_out("bear")
    assert is_held_out("teddy", ("teddy bear", "teddy")) and not is_held_out("key", ("lock",))


def test_the_catalogue_holds_single_named_emoji_each_with_its_svg():
    catalogue = openmoji_single_emoji()
    assert len(catalogue) > 1400
    codes = [emoji.code for emoji in catalogue]
    assert len(set(codes)) == len(codes) and codes == sorted(codes, key=lambda c: int(c, 16))
    assert all("-" not in code for code in codes)  # no flags, skin tones or joined sequences
    names = {emoji.name: emoji.code for emoji in catalogue}
    assert names["grinning face"] == "1F600" and names["airplane"] == "2708"
    svg_dir = openmoji_svg_dir()
    assert all((svg_dir / f"{code}.svg").is_file() for code in codes)


def test_base_never_holds_a_held_out_emoji_nor_one_named_after_it():
    base = base_emoji()
    catalogue = openmoji_single_emoji()
    assert len(HELD_OUT_EMOJI) == 40
    codes = {emoji.code for emoji in base}
    # each held-out class as the generator draws it (own_data's classes among them)
    assert not codes & {resolve_emoji(name).code for name in HELD_OUT_EMOJI}
    names = {emoji.name for emoji in base}
    assert not names & {"oncoming taxi", "old key", "small airplane", "hammer and wrench"}
    assert {"monkey", "grinning face", "stopwatch"} <= names
    assert len(catalogue) - len(base) == sum(is_held_out(e.name) for e in catalogue) >= 60
