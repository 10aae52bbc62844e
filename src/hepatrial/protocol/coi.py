"""Chain of identity: the identifier made at harvest that follows an autologous product to the
patient, and its ISO/IEC 7064 MOD 37-2 check character.

**Check character.** ISO/IEC 7064:2003 "Check character systems", pure system MOD 37-2
(modulus 37, radix 2, one check character from ``0-9 A-Z *``), as ISBT 128 uses it for the
check character of the Donation Identification Number (ICCBBA, ISBT 128 Standard Technical
Specification ST-001, and the worked example of the UK Blood Transfusion Services' "Red Book",
Annex 2 "ISBT 128 check character calculation"):

1. each character gets its value (``0-9`` → 0-9, ``A-Z`` → 10-35);
2. each value is multiplied by ``2**n``, ``n`` its position counted from the right (1 = last);
3. the products are summed; ``c = (38 - sum mod 37) mod 37``;
4. the check character is the character of value ``c`` (36 is ``*``).

Equivalently, a protected string (data followed by its check character, ``*`` = 36) satisfies
``sum(value * 2**n) ≡ 1 (mod 37)`` with ``n`` counted from the right starting at 0 — the
verification rule of ISO/IEC 7064. In ISBT 128 bar codes the check value is also carried in the
two flag characters as ``60 + c`` (:func:`isbt128_flag`). Published examples (tested):
``G123498654321`` → ``H`` (checksum 17, flag ``77``; Red Book Annex 2, Table A2.2) and
``G123489654321`` → ``Y`` (the ISO/IEC 7064 example, as in python-stdnum and Apache Commons
Validator).

**Chain-of-identity identifier.** ICCBBA's ISBT 128 ST-028 defines a globally unique
Chain of Identity (CoI) Identifier for cellular therapies, assigned at collection and carried
on every label with at least two patient identifiers (FDA, "Considerations for the Development
of CAR T Cell Products", draft guidance 2022; FACT-JACIE International Standards, labelling;
21 CFR 1271.290 tracking). ST-028's exact data structure needs an ICCBBA licence and a
registered Facility Identification Number, which a trial site may not have, so hepatrial makes
an identifier of the same kind that needs neither (:func:`make_coi`)::

    S01-20090115-001-JG15S-D
    └┬┘ └──┬───┘ └┬┘ └─┬─┘ └ ISO/IEC 7064 MOD 37-2 check character of the 19 characters
     │     │      │    └ participant binding: 5 base-36 characters of SHA-256(study id)
     │     │      └ sequence: the n-th harvest at this site on this date (001-999)
     │     └ harvest (collection) date, YYYYMMDD
     └ site code (1-8 of A-Z 0-9)

It is unique because (site, date, sequence) is (the store assigns the sequence under a unique
constraint), deterministic (same inputs, same identifier), readable, and **binds the
participant** without printing more than the label already shows: :func:`coi_matches_participant`
recomputes the binding from a study id, so a product scanned at another patient's bedside is
caught even before the database is asked. The check character catches every single-character
error and every transposition of adjacent characters (ISO/IEC 7064 §5).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "COI_PATTERN",
    "CoiCheck",
    "CoiParts",
    "coi_matches_participant",
    "isbt128_flag",
    "make_coi",
    "mod37_2_check_char",
    "mod37_2_checksum",
    "mod37_2_is_valid",
    "parse_coi",
    "participant_binding",
    "validate_coi",
]

#: the character set of ISO/IEC 7064 MOD 37-2: value = index (``*`` = 36, check character only)
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_MOD = 37

#: the displayed form of a chain-of-identity identifier (see the module docstring)
COI_PATTERN = re.compile(
    r"^(?P<site>[A-Z0-9]{1,8})-(?P<date>\d{8})-(?P<seq>\d{3})-(?P<binding>[A-Z0-9]{5})"
    r"-(?P<check>[0-9A-Z*])$"
)
_SITE = re.compile(r"^[A-Z0-9]{1,8}$")
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _values(data: str) -> list[int]:
    out = []
    for i, ch in enumerate(data):
        v = _VALUE.get(ch)
        if v is None or v == 36:
            raise ValueError(
                f"character {ch!r} at position {i + 1} of {data!r} is not in the ISO/IEC 7064 "
                "MOD 37-2 data alphabet (0-9, A-Z)"
            )
        out.append(v)
    return out


def mod37_2_checksum(data: str) -> int:
    """The ISO/IEC 7064 MOD 37-2 check value (0-36) of ``data`` (characters ``0-9 A-Z``).

    ``(38 - Σ value·2^n mod 37) mod 37``, ``n`` = position from the right, 1 for the last
    character (ISBT 128 ST-001; Red Book Annex 2, steps 1-6). Computed by Horner's rule
    (ISO/IEC 7064's recursive method), which gives the same value without large powers.
    """
    if not data:
        raise ValueError("no characters to protect")
    p = 0
    for v in _values(data):
        p = ((p + v) * 2) % _MOD
    return (_MOD + 1 - p) % _MOD


def mod37_2_check_char(data: str) -> str:
    """The ISO/IEC 7064 MOD 37-2 check character of ``data`` (``0-9``, ``A-Z`` or ``*``)."""
    return ALPHABET[mod37_2_checksum(data)]


def mod37_2_is_valid(protected: str) -> bool:
    """True when the last character of ``protected`` is the MOD 37-2 check character of the
    rest (ISO/IEC 7064 verification: Σ value·2^n ≡ 1 mod 37, n from 0 at the right)."""
    if len(protected) < 2 or protected[-1] not in _VALUE:
        return False
    try:
        return mod37_2_check_char(protected[:-1]) == protected[-1]
    except ValueError:
        return False


def isbt128_flag(data: str) -> str:
    """The two ISBT 128 flag digits that carry the check value in a bar code: ``60 + c``
    (ST-001; ``G123498654321`` → ``"77"``)."""
    return f"{60 + mod37_2_checksum(data):02d}"


def participant_binding(participant: str) -> str:
    """Five base-36 characters of SHA-256 of the participant's study id (UTF-8): ties an
    identifier to its participant (a different study id matches by chance with probability
    36^-5 ≈ 1.7×10^-8)."""
    if not participant:
        raise ValueError("the participant's study id is empty")
    n = int.from_bytes(hashlib.sha256(participant.encode("utf-8")).digest()[:8], "big")
    chars = []
    for _ in range(5):
        n, r = divmod(n, 36)
        chars.append(_BASE36[r])
    return "".join(reversed(chars))


@dataclass(frozen=True)
class CoiParts:
    """The fields of a well-formed chain-of-identity identifier."""

    site: str
    harvest_date: _dt.date
    sequence: int
    binding: str
    check: str

    @property
    def data(self) -> str:
        """The characters the check character protects (no hyphens)."""
        return f"{self.site}{self.harvest_date:%Y%m%d}{self.sequence:03d}{self.binding}"


def make_coi(site: str, participant: str, harvest_date: _dt.date, sequence: int) -> str:
    """The chain-of-identity identifier of a harvest (see the module docstring).

    ``site``: the site code, 1-8 characters of ``A-Z 0-9`` (refused otherwise: never
    converted); ``participant``: the study id; ``harvest_date``: the collection date;
    ``sequence``: 1-999, the n-th harvest at this site on this date. Same inputs, same id.
    """
    if not isinstance(site, str) or not _SITE.match(site):
        raise ValueError(
            f"site code {site!r} cannot be used in a chain-of-identity id: it must be 1-8 "
            "upper-case letters or digits"
        )
    if isinstance(harvest_date, _dt.datetime) or not isinstance(harvest_date, _dt.date):
        raise ValueError(f"harvest date {harvest_date!r} is not a date")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 1 <= sequence <= 999:
        raise ValueError(f"sequence {sequence!r} is not a whole number from 1 to 999")
    binding = participant_binding(participant)
    data = f"{site}{harvest_date:%Y%m%d}{sequence:03d}{binding}"
    return f"{site}-{harvest_date:%Y%m%d}-{sequence:03d}-{binding}-{mod37_2_check_char(data)}"


@dataclass(frozen=True)
class CoiCheck:
    """The verdict on a scanned or typed identifier: ``ok``, the reason when not, and the
    parsed fields (None when it is not even well-formed)."""

    ok: bool
    reason: str = ""
    expected_check: str | None = None
    parts: CoiParts | None = None


def parse_coi(text: str) -> CoiParts:
    """The fields of a well-formed identifier (ValueError naming what is wrong otherwise).
    The check character is not verified here (:func:`validate_coi` does)."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a chain-of-identity identifier")
    m = COI_PATTERN.match(text)
    if m is None:
        raise ValueError(
            f"{text!r} is not a chain-of-identity identifier (expected SITE-YYYYMMDD-NNN-"
            "XXXXX-C, e.g. S01-20090115-001-JG15S-D)"
        )
    try:
        day = _dt.datetime.strptime(m["date"], "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"{text!r}: {m['date']} is not a calendar date") from None
    seq = int(m["seq"])
    if seq == 0:
        raise ValueError(f"{text!r}: sequence 000 is never issued (1-999)")
    return CoiParts(m["site"], day, seq, m["binding"], m["check"])


def validate_coi(scanned: str) -> CoiCheck:
    """Check a scanned identifier: well-formed and its check character right.

    A scanner's trailing carriage return or line feed is ignored; nothing else is changed
    (lower case is refused, not converted). A wrong check character is named with the
    expected one: ``check character 'Q' is wrong: expected 'D' (mis-scan or mistyped id)``.
    """
    text = scanned.rstrip("\r\n") if isinstance(scanned, str) else scanned
    try:
        parts = parse_coi(text)  # type: ignore[arg-type]
    except ValueError as exc:
        return CoiCheck(False, str(exc))
    expected = mod37_2_check_char(parts.data)
    if parts.check != expected:
        return CoiCheck(False, f"{text!r}: check character {parts.check!r} is wrong: expected "
                        f"{expected!r} (mis-scanned or mistyped identifier)", expected, parts)
    return CoiCheck(True, "", expected, parts)


def coi_matches_participant(coi: str, participant: str) -> bool:
    """True when a valid identifier was made for this participant's study id."""
    res = validate_coi(coi)
    return res.ok and res.parts is not None and res.parts.binding == participant_binding(
        participant
    )
