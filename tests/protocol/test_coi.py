"""Chain-of-identity identifier and ISO/IEC 7064 MOD 37-2 (hepatrial.protocol.coi)."""

from __future__ import annotations

import datetime as dt
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hepatrial.protocol import coi

DATA = string.digits + string.ascii_uppercase


# ---------------------------------------------------------------------- ISO/IEC 7064 MOD 37-2
def test_red_book_isbt128_worked_example() -> None:
    # UK Blood Transfusion Services "Red Book", Annex 2, Table A2.2: DIN G123 498 654 321,
    # sum of weighted values 148354, mod 37 = 21, 38 - 21 = 17, check 'H', bar-code flag 77
    assert coi.mod37_2_checksum("G123498654321") == 17
    assert coi.mod37_2_check_char("G123498654321") == "H"
    assert coi.isbt128_flag("G123498654321") == "77"
    assert coi.mod37_2_is_valid("G123498654321H")


def test_iso7064_example() -> None:
    # the ISO/IEC 7064 MOD 37-2 example (as reproduced by python-stdnum / Commons Validator)
    assert coi.mod37_2_check_char("G123489654321") == "Y"
    assert not coi.mod37_2_is_valid("G123489654322Y")


def _direct(data: str) -> int:
    """The textbook definition: (38 - Σ v·2^n mod 37) mod 37, n from 1 at the right."""
    s = sum(coi.ALPHABET.index(c) * 2 ** (len(data) - i) for i, c in enumerate(data))
    return (38 - s % 37) % 37


@given(st.text(alphabet=DATA, min_size=1, max_size=40))
def test_horner_equals_the_definition_and_verifies(data: str) -> None:
    c = coi.mod37_2_checksum(data)
    assert c == _direct(data)
    protected = data + coi.ALPHABET[c]
    # ISO/IEC 7064 verification: Σ v·2^n ≡ 1 (mod 37), n from 0 at the right
    total = sum(coi.ALPHABET.index(ch) * 2 ** (len(protected) - 1 - i)
                for i, ch in enumerate(protected))  # fmt: skip
    assert total % 37 == 1
    assert coi.mod37_2_is_valid(protected)


@given(st.text(alphabet=DATA, min_size=2, max_size=30), st.data())
def test_every_single_substitution_and_adjacent_transposition_is_caught(
    data: str, draw: st.DataObject
) -> None:
    protected = data + coi.mod37_2_check_char(data)
    i = draw.draw(st.integers(0, len(protected) - 2))
    new = draw.draw(st.sampled_from(DATA).filter(lambda ch: ch != protected[i]))
    assert not coi.mod37_2_is_valid(protected[:i] + new + protected[i + 1:])
    if protected[i] != protected[i + 1]:
        swapped = protected[:i] + protected[i + 1] + protected[i] + protected[i + 2:]
        assert not coi.mod37_2_is_valid(swapped)


def test_star_is_a_check_character_only() -> None:
    found = next(d for d in (f"A{n:05d}" for n in range(100000)) if coi.mod37_2_checksum(d) == 36)
    assert coi.mod37_2_check_char(found) == "*"
    assert coi.mod37_2_is_valid(found + "*")
    with pytest.raises(ValueError, match=r"character '\*' at position 2"):
        coi.mod37_2_checksum("A*1")
    with pytest.raises(ValueError, match="character 'a' at position 1"):
        coi.mod37_2_checksum("a1")
    with pytest.raises(ValueError, match="no characters"):
        coi.mod37_2_checksum("")
    assert not coi.mod37_2_is_valid("a")


# ---------------------------------------------------------------------- the identifier
D = dt.date(2009, 1, 15)


def test_make_coi_is_deterministic_and_documented() -> None:
    c = coi.make_coi("S01", "K01", D, 1)
    assert c == "S01-20090115-001-JG15S-D"  # the docstring's example
    assert c == coi.make_coi("S01", "K01", D, 1)
    assert coi.validate_coi(c).ok
    p = coi.parse_coi(c)
    assert (p.site, p.harvest_date, p.sequence, p.check) == ("S01", D, 1, "D")
    assert coi.mod37_2_check_char(p.data) == "D"


def test_coi_unique_over_inputs() -> None:
    ids = {
        coi.make_coi(site, pid, D + dt.timedelta(days=day), seq)
        for site in ("S01", "S02")
        for pid in ("K01", "K02", "K03")
        for day in range(3)
        for seq in (1, 2, 999)
    }
    assert len(ids) == 2 * 3 * 3 * 3


def test_coi_binds_the_participant() -> None:
    c = coi.make_coi("S01", "K01", D, 1)
    assert coi.coi_matches_participant(c, "K01")
    assert not coi.coi_matches_participant(c, "K02")
    assert not coi.coi_matches_participant(c[:-1] + "Q", "K01")
    assert coi.participant_binding("K01") == "JG15S"
    # any study id text works (the store allows any pseudonymous id)
    assert len(coi.participant_binding("pbc-0001 é")) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("s01", "K01", D, 1), "site code 's01' cannot be used"),
        (("S-01", "K01", D, 1), "site code 'S-01'"),
        (("S0123456789", "K01", D, 1), "1-8 upper-case"),
        (("S01", "", D, 1), "study id is empty"),
        (("S01", "K01", dt.datetime(2009, 1, 15, 8), 1), "is not a date"),
        (("S01", "K01", D, 0), "sequence 0 is not a whole number from 1 to 999"),
        (("S01", "K01", D, 1000), "from 1 to 999"),
        (("S01", "K01", D, True), "sequence True"),
    ],
)
def test_make_coi_refuses(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        coi.make_coi(*args)


def test_validate_scanned_names_the_expected_check_character() -> None:
    good = coi.make_coi("S01", "K01", D, 1)
    bad = good[:-1] + "Q"
    res = coi.validate_coi(bad)
    assert not res.ok and res.expected_check == "D"
    assert res.reason == (f"{bad!r}: check character 'Q' is wrong: expected 'D' "
                          "(mis-scanned or mistyped identifier)")  # fmt: skip
    # a scanner's line ending is not part of the id; nothing else is forgiven
    assert coi.validate_coi(good + "\r\n").ok
    assert not coi.validate_coi(good.lower()).ok
    assert not coi.validate_coi(" " + good).ok
    # one mistyped character of the data part is caught by the check character
    typo = good.replace("JG15S", "JG16S")
    assert "check character 'D' is wrong" in coi.validate_coi(typo).reason


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("S01-2009011-001-JG15S-D", "is not a chain-of-identity identifier"),
        ("S01-20090230-001-JG15S-D", "20090230 is not a calendar date"),
        ("S01-20090115-000-JG15S-D", "sequence 000 is never issued"),
        ("", "is not a chain-of-identity identifier"),
    ],
)
def test_validate_refuses_malformed(text: str, message: str) -> None:
    res = coi.validate_coi(text)
    assert not res.ok and message in res.reason and res.parts is None
    assert not coi.validate_coi(None).ok  # type: ignore[arg-type]
