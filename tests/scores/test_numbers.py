"""The one number parser (hepatrial.scores.numbers)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hepatrial.scores.numbers import (
    NUMBER_PATTERN,
    NumberFormatError,
    is_number_text,
    parse_decimal,
    parse_number,
)


@pytest.mark.parametrize(("text", "value"), [
    ("46", 46.0), (" 1.90 ", 1.9), ("-3", -3.0), ("+0.5", 0.5), (".5", 0.5), ("5.", 5.0),
    ("1e3", 1000.0), ("2.5E-2", 0.025), (7, 7.0), (1.25, 1.25),
])
def test_plain_numbers(text: object, value: float) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(("text", "reason"), [
    ("4_6", "contains '_'"),
    ("١٢", "non-ASCII digit '١'"),
    ("۴۶", "non-ASCII digit"),
    ("1,9", "use a point as the decimal mark"),
    ("1 000", "is not a number"),
    ("nan", "not a finite number"),
    ("-inf", "not a finite number"),
    ("Infinity", "not a finite number"),
    ("0x1A", "is not a number"),
    ("1e999", "too large"),
    ("", "empty"),
    ("   ", "empty"),
    ("12 mg", "is not a number"),
    ("٣.٥", "non-ASCII digit"),
    ("４６", "non-ASCII digit"),  # full-width digits
    (True, "is not a number"),
    (None, "is not a number"),
    (float("nan"), "not a finite number"),
])
def test_refused_with_the_reason(text: object, reason: str) -> None:
    with pytest.raises(NumberFormatError, match=re.escape(reason)):
        parse_number(text, "bilirubin")
    with pytest.raises(NumberFormatError, match=r"^bilirubin: "):
        parse_number(text, "bilirubin")
    assert not is_number_text(text)


def test_decimal_keeps_the_digits_as_written() -> None:
    assert parse_decimal("1.90") == Decimal("1.90") and str(parse_decimal("1.90")) == "1.90"
    with pytest.raises(NumberFormatError):
        parse_decimal("4_6")  # Decimal("4_6") would be 46


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_repr_is_accepted_and_round_trips(x: float) -> None:
    assert parse_number(repr(x)) == x
    assert re.match(NUMBER_PATTERN, repr(x))


@given(st.text(max_size=12))
def test_accepted_text_is_exactly_the_pattern(s: str) -> None:
    ok = re.match(NUMBER_PATTERN, s.strip()) is not None
    try:
        parse_number(s)
        parsed = True
    except NumberFormatError:
        parsed = False
    # everything the pattern accepts parses (unless it overflows); nothing else does
    assert parsed == ok or (ok and not parsed and "e" in s.lower())
