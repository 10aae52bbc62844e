"""Scalar value checks shared by the product, administration and adverse-event validators.

Each helper reads one entered value, records a problem on the :class:`Checker` when it is not
acceptable (naming the field and the reason) and returns the typed value, or ``None`` when the
value is missing or refused. Nothing is converted beyond reading its type: a date is a
``date``/``datetime`` or ISO ``YYYY-MM-DD`` text, a number is a number or the text of one, a
decimal keeps its digits (never rounded), a boolean is a boolean.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from hepatrial.trials.validators._common import Checker

__all__ = [
    "boolean",
    "choice",
    "date",
    "decimal",
    "missing",
    "not_future",
    "number",
    "text",
]


def missing(value: Any) -> bool:
    """True when nothing was entered (None or blank text)."""
    return value is None or (isinstance(value, str) and not value.strip())


def date(c: Checker, field: str, value: Any, *, required: bool = True) -> _dt.date | None:
    """A date (``date``, ``datetime`` or ISO text), or None (problem if required/invalid)."""
    if missing(value):
        if required:
            c.fail(field, "is required (a date, YYYY-MM-DD)")
        return None
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    c.fail(field, f"{value!r} is not a date (YYYY-MM-DD)")
    return None


def not_future(c: Checker, field: str, value: _dt.date | None, today: _dt.date) -> None:
    """Refuse a date after ``today``."""
    if value is not None and value > today:
        c.fail(field, f"{value} is in the future (today is {today})")


def choice(c: Checker, field: str, value: Any, allowed: Sequence[str]) -> str | None:
    """One of ``allowed`` (exact code), or None with the list of codes."""
    if isinstance(value, str) and value in allowed:
        return value
    c.fail(field, f"{value!r} is not one of {', '.join(allowed)}")
    return None


def boolean(c: Checker, field: str, value: Any) -> bool | None:
    """A boolean (``True``/``False`` only: ``"yes"``, ``1`` are refused)."""
    if isinstance(value, bool):
        return value
    c.fail(field, f"{value!r} is not true or false")
    return None


def number(
    c: Checker, field: str, value: Any, *, required: bool = True, positive: bool = False
) -> float | None:
    """A finite number (or the text of one); ``positive`` refuses zero and below."""
    if missing(value):
        if required:
            c.fail(field, "is required (a number)")
        return None
    if isinstance(value, bool):
        c.fail(field, f"{value!r} is not a number")
        return None
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        c.fail(field, f"{value!r} is not a number")
        return None
    if not math.isfinite(x):
        c.fail(field, f"{value!r} is not a finite number")
        return None
    if positive and not x > 0:
        c.fail(field, f"{value!r} must be positive")
        return None
    return x


def decimal(
    c: Checker, field: str, value: Any, *, max_digits: int, places: int, positive: bool = False
) -> Decimal | None:
    """A decimal with at most ``places`` decimals and ``max_digits`` digits (never rounded)."""
    if missing(value) or isinstance(value, bool):
        c.fail(field, "is required (a number)" if missing(value) else f"{value!r} is not a number")
        return None
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        c.fail(field, f"{value!r} is not a number")
        return None
    if not d.is_finite():
        c.fail(field, f"{value!r} is not a finite number")
        return None
    exp = d.normalize().as_tuple().exponent
    decimals = -exp if isinstance(exp, int) and exp < 0 else 0
    if decimals > places:
        c.fail(field, f"{value!r} has more than {places} decimal places (it is not rounded)")
        return None
    if abs(d) >= 1 and len(str(int(abs(d)))) > max_digits - places:
        c.fail(field, f"{value!r} is too large (at most {max_digits - places} digits before "
               "the decimal point)")
        return None
    if positive and not d > 0:
        c.fail(field, f"{value!r} must be positive")
        return None
    return d


def text(
    c: Checker, field: str, value: Any, *, max_length: int, required: bool = True
) -> str | None:
    """Text without surrounding spaces, at most ``max_length`` characters."""
    if missing(value):
        if required:
            c.fail(field, "is required")
            return None
        return ""
    if not isinstance(value, str):
        c.fail(field, f"{value!r} is not text")
        return None
    s = value.strip()
    if len(s) > max_length:
        c.fail(field, f"is {len(s)} characters long (at most {max_length})")
        return None
    return s
