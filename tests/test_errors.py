"""User-facing errors: one line, whatever control characters the user's input carries."""

from __future__ import annotations

import unicodedata

from onestage.errors import DataError, OnestageError, first_line, one_line

# Unicode's control characters (category Cc: C0, DEL, C1; none above U+009F), and every
# character str.splitlines breaks lines at that is not one of them.
CONTROLS = "".join(chr(code) for code in range(0x100) if unicodedata.category(chr(code)) == "Cc")
LINE_SEPARATORS = "\u2028\u2029"


def has_control(text: str) -> bool:
    return any(unicodedata.category(character) == "Cc" for character in text)


def test_one_line_escapes_every_control_character_and_line_break() -> None:
    # ESC (a terminal escape sequence), NUL, BEL, DEL; line breaks and tab by name
    assert one_line("a\x1b[2Jb\x00c\x07d\x7fe") == "a\\x1b[2Jb\\x00c\\x07d\\x7fe"
    assert one_line("1\n2\r3\t4") == "1\\n2\\r3\\t4"
    # C1: NEL (a line break to str.splitlines) and CSI (a terminal command); U+2028, U+2029
    assert one_line("a\x85b\x9bc\u2028d\u2029e") == "a\\x85b\\x9bc\\u2028d\\u2029e"
    assert len(CONTROLS) == 65  # 0x00-0x1f, 0x7f-0x9f
    escaped = one_line(CONTROLS + LINE_SEPARATORS)
    assert not has_control(escaped) and escaped.count("\\") == 65 + 2
    assert len(f"a{escaped}b".splitlines()) == 1
    assert one_line("café ✓ [2J") == "café ✓ [2J"  # printable text is left as it is


def test_error_messages_are_one_escaped_line() -> None:
    assert str(OnestageError("bad\x1b[31m name\x00")) == "bad\\x1b[31m name\\x00"
    error = DataError("im\x07g.png", "box\x7f\u2028", line=3, field="class\x1b")
    assert str(error) == "im\\x07g.png:3: class\\x1b: box\\x7f\\u2028"
    assert not has_control(str(error)) and len(str(error).splitlines()) == 1


def test_first_line_quotes_another_librarys_error_in_one_line() -> None:
    assert first_line(ValueError("  bad value\nmore detail\n")) == "ValueError: bad value"
    assert first_line(KeyError()) == "KeyError"  # no message: the type alone
    assert first_line(OSError("")) == "OSError"


def test_a_data_error_carries_its_message_as_its_argument() -> None:
    error = DataError("labels/a.txt", "bad line", line=3)
    assert error.args == ("labels/a.txt:3: bad line",)
    assert repr(error) == "DataError('labels/a.txt:3: bad line')"
