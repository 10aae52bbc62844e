"""Rules for text that people type or files carry, and for text we write into CSV files.

* :func:`text_problem` — control characters (NUL, escape, …; tab/newline only where allowed)
  and the field's maximum length, checked *before* writing, so that SQLite (which stores any
  length) and PostgreSQL (which refuses) behave the same.
* :func:`identifier_problem` — identifiers (study ids, site codes, batch ids, user names) must
  not start with ``= + - @``, tab or carriage return (spreadsheet formula injection, OWASP
  "CSV Injection"), nor contain blanks at either end or control characters.
* :func:`csv_cell` — what every CSV writer of hepatrial does to a text cell: a text that a
  spreadsheet would run as a formula gets a leading apostrophe (numbers are left alone).
* :func:`utf8_problem` — where a file stops being UTF-8 (line and byte), for the message of
  every command that reads a text file.

Imports nothing of hepatrial but the number pattern.
"""

from __future__ import annotations

import os
import re
import unicodedata

from hepatrial.scores.numbers import is_number_text

__all__ = [
    "CONTROL_PATTERN",
    "CONTROL_PATTERN_MULTILINE",
    "FORMULA_PATTERN",
    "FORMULA_START",
    "csv_cell",
    "identifier_problem",
    "text_problem",
    "utf8_problem",
]

#: first characters that make a spreadsheet treat a cell as a formula
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: the same as a regular expression for vectorised readers (``Series.str.match``)
FORMULA_PATTERN = r"^[=+\-@\t\r]"
#: a control character (C0, DEL, C1): refused in single-line fields (``Series.str.contains``
#: with this pattern finds the rows :func:`text_problem` refuses for the character rule; a
#: lone surrogate, which :func:`text_problem` also refuses, cannot come from a UTF-8 file)
CONTROL_PATTERN = "[\x00-\x1f\x7f-\x9f]"
#: the same for multi-line fields (tab, line feed and carriage return allowed)
CONTROL_PATTERN_MULTILINE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"

_CTRL_NAMES = {0: "NUL", 9: "TAB", 10: "LINE FEED", 13: "CARRIAGE RETURN", 27: "ESCAPE"}
_CTRL_SINGLE = re.compile(CONTROL_PATTERN)
_CTRL_MULTI = re.compile(CONTROL_PATTERN_MULTILINE)


def text_problem(
    text: str, max_length: int | None = None, *, multiline: bool = False
) -> str | None:
    """Why ``text`` cannot be stored in a field (or ``None``): too long, or a control character
    (tab and newlines are allowed only in ``multiline`` fields), or a lone surrogate."""
    if max_length is not None and len(text) > max_length:
        return f"is {len(text)} characters long; at most {max_length} are allowed"
    bad = (_CTRL_MULTI if multiline else _CTRL_SINGLE).search(text)
    if bad:
        ch = bad.group(0)
        name = _CTRL_NAMES.get(ord(ch)) or unicodedata.name(ch, "")
        label = f"{name} (U+{ord(ch):04X})" if name else f"U+{ord(ch):04X}"
        return f"contains the control character {label}"
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return "contains an invalid character (a lone surrogate)"
    return None


def identifier_problem(text: str, max_length: int | None = None) -> str | None:
    """Why ``text`` cannot be an identifier (or ``None``)."""
    if not text:
        return "is empty"
    if text != text.strip():
        return "has blanks at the start or end"
    if text.startswith(FORMULA_START):
        return (f"starts with {text[0]!r}: identifiers may not start with = + - @ (a spreadsheet "
                "would run them as a formula)")
    return text_problem(text, max_length)


def csv_cell(value: object) -> object:
    """``value`` made safe for a CSV cell: text starting like a formula gets a leading ``'``
    (numbers, including negative ones, and non-text values are returned unchanged)."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not is_number_text(value):
        return "'" + value
    return value


def utf8_problem(path: str | os.PathLike[str]) -> str | None:
    """Where the file at ``path`` stops being UTF-8 - ``"line 3 (byte 41) is not UTF-8 (byte
    0xe9); save the file as UTF-8"`` - or ``None`` when it is UTF-8 throughout (read in blocks:
    memory stays bounded)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                pos = max(exc.start, 0)
                line += block.count(b"\n", 0, pos)
                byte = block[pos:pos + 1].hex()
                what = f"byte 0x{byte}" if byte else "a character cut off at the end"
                return (f"line {line} (byte {offset + pos + 1}) is not UTF-8 ({what}); save the "
                        "file as UTF-8")
            if not block:
                return None
            line += block.count(b"\n")
            offset += len(block)
