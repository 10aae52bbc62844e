"""One number parser for every path that reads a number a person typed or a file holds.

Python's own parsers are too forgiving for clinical data: ``float("4_6")`` and
``Decimal("4_6")`` are 46, ``float("١٢")`` (Arabic-Indic digits) is 12, ``float(" nan")`` and
``float("inf")`` are numbers, ``int("٣")`` is 3. A value a coordinator or a laboratory file gives
must be written with ASCII digits, an optional sign, at most one decimal point and an optional
exponent — anything else is refused with the reason, never reinterpreted. The store, the
importers, ``hepatrial score``/``grade``/``stats`` and the forms all parse with this module
(:data:`NUMBER_PATTERN` is the same rule for vectorised readers, e.g.
``pyarrow.compute.match_substring_regex``).

This module imports nothing but the standard library and :mod:`hepatrial.errors`.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from hepatrial.errors import InputError

__all__ = [
    "NUMBER_PATTERN",
    "NumberFormatError",
    "is_number_text",
    "number_problem",
    "parse_decimal",
    "parse_number",
]

#: a plain decimal number: optional sign, ASCII digits with at most one point, optional exponent
NUMBER_PATTERN = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_NUMBER = re.compile(NUMBER_PATTERN)


class NumberFormatError(InputError):
    """A text that is not a plain decimal number (the message says why)."""


def number_problem(text: object) -> str | None:
    """Why ``text`` is not a plain decimal number, or ``None`` when it is one.

    Leading and trailing blanks are ignored; everything else must match :data:`NUMBER_PATTERN`.
    """
    if isinstance(text, bool) or text is None:
        return f"{text!r} is not a number"
    if isinstance(text, int):
        return None
    if isinstance(text, float):
        return None if math.isfinite(text) else f"{text!r} is not a finite number"
    if not isinstance(text, str):
        return f"{text!r} is not a number"
    s = text.strip()
    if not s:
        return "empty"
    if _NUMBER.match(s):
        return None if math.isfinite(float(s)) else f"{text!r} is too large to be a number"
    if not s.isascii():
        bad = next(ch for ch in s if not ch.isascii())
        if bad.isdigit():
            return f"{text!r} uses the non-ASCII digit {bad!r}; write digits 0-9"
        return f"{text!r} contains the character {bad!r}; write a plain number such as 1.25"
    if "_" in s:
        return f"{text!r} contains '_'; write the number without separators"
    if "," in s:
        return f"{text!r} contains ','; use a point as the decimal mark and no thousands separator"
    if s.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return f"{text!r} is not a finite number"
    return f"{text!r} is not a number"


def is_number_text(text: object) -> bool:
    """True when :func:`number_problem` finds nothing."""
    return number_problem(text) is None


def parse_number(text: object, what: str = "value") -> float:
    """``text`` as a finite float; :class:`NumberFormatError` naming ``what`` otherwise.

    Values that overflow a double (``1e999``) are refused, not turned into infinity.
    """
    problem = number_problem(text)
    if problem is not None:
        raise NumberFormatError(f"{what}: {problem}")
    value = float(text.strip() if isinstance(text, str) else text)  # type: ignore[arg-type]
    if not math.isfinite(value):
        raise NumberFormatError(f"{what}: {text!r} is too large to be a number")
    return value


def parse_decimal(text: object, what: str = "value") -> Decimal:
    """``text`` as an exact :class:`~decimal.Decimal` (the digits as written), with the same
    rules as :func:`parse_number`."""
    problem = number_problem(text)
    if problem is not None:
        raise NumberFormatError(f"{what}: {problem}")
    if isinstance(text, float):
        return Decimal(repr(text))
    d = Decimal(text.strip() if isinstance(text, str) else text)  # type: ignore[arg-type]
    if not d.is_finite() or not math.isfinite(float(d)):
        raise NumberFormatError(f"{what}: {text!r} is too large to be a number")
    return d
