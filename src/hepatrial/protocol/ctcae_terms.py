"""The CTCAE v5.0 term list: MedDRA code, system organ class and grade definitions per term.

Source: U.S. DHHS, NIH, National Cancer Institute. *Common Terminology Criteria for Adverse
Events (CTCAE) Version 5.0*, 27 November 2017 (public domain), bundled as
``hepatrial/data/ctcae_v5.csv``; where the copy came from, how it was converted and checked:
``hepatrial/data/ctcae_v5.README.md``. CTCAE v5.0 terms are MedDRA v20.1 lowest-level terms
grouped by their primary system organ class (SOC); each term has its own definition of
grades 1-5, and a grade NCI writes as ``-`` does not exist for that term (e.g. "Death NOS" is
grade 5 only, "Bruising" grades 1-2 only).

"Other, specify" terms: each SOC has one term ``"<SOC> - Other, specify"`` (its MedDRA code is
the SOC's code) for an event no CTCAE term describes. CTCAE requires the investigator to name
the event (the "specify" text) and to grade it with the generic grades of that term (1 mild
... 5 death). :func:`code_event` enforces that: a specify text is required for an "Other,
specify" term and refused for any other term.

Lookups are exact on the MedDRA code and case-insensitive on the term (surrounding and repeated
spaces ignored); nothing is fuzzy-matched, so an unknown or misspelt term is an error that
names it, never a guess.

::

    from hepatrial.protocol import ctcae_terms as ct
    t = ct.term("portal vein thrombosis")      # CtcaeTerm(meddra_code=10036206, ...)
    t.grade_definition(3)                        # 'Medical intervention indicated'
    ct.by_code(10036206).soc                     # 'Hepatobiliary disorders'
    ct.other_specify("Hepatobiliary disorders")  # the SOC's "Other, specify" term
    ct.code_event("Fever", 2)                    # CodedEvent(term=..., grade=2, ...)
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from hepatrial.errors import InputError, NotFoundError
from hepatrial.scores import ctcae as _lab

__all__ = [
    "CTCAE_VERSION",
    "GRADE_LABELS",
    "LAB_TERMS",
    "MEDDRA_VERSION",
    "CodedEvent",
    "CtcaeTerm",
    "CtcaeTermError",
    "UnknownTermError",
    "all_terms",
    "by_code",
    "code_event",
    "grade_definition",
    "lab_term",
    "other_specify",
    "search",
    "socs",
    "term",
    "terms_in_soc",
]

CTCAE_VERSION = "5.0"
#: CTCAE v5.0 terms are MedDRA v20.1 lowest-level terms (CTCAE v5.0, Introduction).
MEDDRA_VERSION = "20.1"
#: Suffix NCI gives the SOC-level "Other, specify" term of every system organ class.
OTHER_SPECIFY_SUFFIX = " - Other, specify"
#: The CTCAE v5.0 general grade descriptions (CTCAE v5.0, "Grades"; used as the adjective).
GRADE_LABELS: dict[int, str] = {
    1: "Mild",
    2: "Moderate",
    3: "Severe or medically significant but not immediately life-threatening",
    4: "Life-threatening consequences; urgent intervention indicated",
    5: "Death related to AE",
}

_CSV = Path(__file__).resolve().parents[1] / "data" / "ctcae_v5.csv"
_COLUMNS = ("meddra_code", "soc", "term", "grade_1", "grade_2", "grade_3", "grade_4",
            "grade_5", "definition", "navigational_note", "change_v5")


class CtcaeTermError(InputError):
    """A term, grade or "specify" text that CTCAE v5.0 does not allow (message says why)."""


class UnknownTermError(CtcaeTermError, NotFoundError):
    """No CTCAE v5.0 term has this name or MedDRA code."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class CtcaeTerm:
    """One CTCAE v5.0 term (a MedDRA v20.1 LLT) with its grade definitions.

    ``grades`` holds the definitions of grades 1-5 in order, None where the grade does not
    exist for the term (``-`` in NCI's spreadsheet).
    """

    meddra_code: int
    soc: str
    term: str
    grades: tuple[str | None, str | None, str | None, str | None, str | None]
    definition: str | None
    navigational_note: str | None
    change_v5: str | None

    @property
    def is_other_specify(self) -> bool:
        """True for a SOC's "Other, specify" term (the event must be named)."""
        return self.term.endswith(OTHER_SPECIFY_SUFFIX)

    @property
    def allowed_grades(self) -> tuple[int, ...]:
        """The grades that exist for this term (e.g. ``(5,)`` for "Death NOS")."""
        return tuple(g for g in range(1, 6) if self.grades[g - 1] is not None)

    def grade_definition(self, grade: int) -> str:
        """The definition of ``grade`` for this term (CtcaeTermError if it does not exist)."""
        _check_grade_number(grade)
        text = self.grades[grade - 1]
        if text is None:
            raise CtcaeTermError(
                f"CTCAE v5.0 term {self.term!r} has no grade {grade} (grades: "
                f"{', '.join(map(str, self.allowed_grades))})")
        return text


@dataclass(frozen=True)
class CodedEvent:
    """An adverse event coded to CTCAE v5.0: term, MedDRA code, SOC, grade and its text.

    ``specify`` is the investigator's name for the event when the term is an "Other,
    specify" term (None otherwise); ``verbatim`` is what was reported, kept unchanged.
    """

    term: str
    meddra_code: int
    soc: str
    grade: int
    grade_definition: str
    specify: str | None = None
    verbatim: str | None = None

    @property
    def label(self) -> str:
        """``term`` or, for "Other, specify", ``"<SOC> - Other, specify: <specify>"``."""
        return f"{self.term}: {self.specify}" if self.specify else self.term


def _norm(name: str) -> str:
    return " ".join(name.split()).casefold()


def _check_grade_number(grade: object) -> int:
    if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= 5:
        raise CtcaeTermError(f"grade {grade!r} is not a CTCAE grade (an integer 1-5)")
    return grade


@functools.lru_cache(maxsize=1)
def _table() -> tuple[tuple[CtcaeTerm, ...], dict[str, CtcaeTerm], dict[int, CtcaeTerm]]:
    rows: list[CtcaeTerm] = []
    with _CSV.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader))
        if header != _COLUMNS:
            raise RuntimeError(f"{_CSV}: unexpected header {header}")
        for rec in reader:
            d = dict(zip(_COLUMNS, rec, strict=True))
            grades = tuple(None if d[f"grade_{g}"] in ("", "-") else d[f"grade_{g}"]
                           for g in range(1, 6))
            rows.append(CtcaeTerm(
                meddra_code=int(d["meddra_code"]),
                soc=d["soc"],
                term=d["term"],
                grades=grades,  # type: ignore[arg-type]
                definition=None if d["definition"] in ("", "-") else d["definition"],
                navigational_note=d["navigational_note"] or None,
                change_v5=d["change_v5"] or None,
            ))
    by_name = {_norm(t.term): t for t in rows}
    by_code_ = {t.meddra_code: t for t in rows}
    if len(by_name) != len(rows) or len(by_code_) != len(rows):
        raise RuntimeError(f"{_CSV}: duplicate terms or MedDRA codes")
    return tuple(rows), by_name, by_code_


def all_terms() -> tuple[CtcaeTerm, ...]:
    """Every CTCAE v5.0 term in NCI's order (by SOC, then term): 837 terms."""
    return _table()[0]


def term(name: str) -> CtcaeTerm:
    """The term called ``name`` (case and repeated spaces ignored; UnknownTermError if none)."""
    if not isinstance(name, str) or not name.strip():
        raise CtcaeTermError(f"term {name!r} is not a CTCAE term name")
    hit = _table()[1].get(_norm(name))
    if hit is None:
        raise UnknownTermError(
            f"{name!r} is not a CTCAE v5.0 term (use the exact term, or the SOC's "
            f"'<SOC>{OTHER_SPECIFY_SUFFIX}' term with a specify text)")
    return hit


def by_code(meddra_code: int | str) -> CtcaeTerm:
    """The term with this MedDRA code (an integer or its digits; UnknownTermError if none)."""
    code: int | None = None
    if isinstance(meddra_code, int) and not isinstance(meddra_code, bool):
        code = meddra_code
    elif isinstance(meddra_code, str) and meddra_code.strip().isdigit():
        code = int(meddra_code.strip())
    if code is None:
        raise CtcaeTermError(f"MedDRA code {meddra_code!r} is not an integer code")
    hit = _table()[2].get(code)
    if hit is None:
        raise UnknownTermError(f"MedDRA code {code} is not a CTCAE v5.0 term")
    return hit


def socs() -> tuple[str, ...]:
    """The 26 system organ classes in NCI's order."""
    return tuple(dict.fromkeys(t.soc for t in all_terms()))


def terms_in_soc(soc: str) -> tuple[CtcaeTerm, ...]:
    """The terms of one SOC (its name, case-insensitive), "Other, specify" included."""
    key = _norm(soc)
    hits = tuple(t for t in all_terms() if _norm(t.soc) == key)
    if not hits:
        raise UnknownTermError(f"{soc!r} is not a CTCAE v5.0 system organ class")
    return hits


def other_specify(soc: str) -> CtcaeTerm:
    """The "Other, specify" term of a SOC."""
    for t in terms_in_soc(soc):
        if t.is_other_specify:
            return t
    raise UnknownTermError(f"SOC {soc!r} has no 'Other, specify' term")  # pragma: no cover


def grade_definition(name: str, grade: int) -> str:
    """The CTCAE v5.0 definition of ``grade`` for the term ``name`` (shown at entry)."""
    return term(name).grade_definition(grade)


def search(text: str) -> tuple[CtcaeTerm, ...]:
    """Terms whose name contains ``text`` (case-insensitive), for pickers; NCI's order."""
    key = _norm(text)
    return tuple(t for t in all_terms() if key in _norm(t.term))


#: analyte code -> the CTCAE v5.0 term its lab grade belongs to (the terms graded by
#: :func:`hepatrial.scores.ctcae.ctcae_grade`); a lab grade that rises from baseline proposes
#: an adverse event with this term for the investigator to confirm or dismiss.
LAB_TERMS: dict[str, str] = {
    "bilirubin": _lab.BILIRUBIN,
    "alt": _lab.ALT,
    "ast": _lab.AST,
    "inr": _lab.INR,
    "creatinine": _lab.CREATININE,
    "albumin": _lab.HYPOALBUMINEMIA,
    "platelets": _lab.PLATELETS,
}


def lab_term(analyte: str) -> CtcaeTerm:
    """The CTCAE term of an analyte's lab grade (``"alt"`` -> "Alanine aminotransferase
    increased"); UnknownTermError for an analyte without a CTCAE lab grade."""
    name = LAB_TERMS.get(analyte)
    if name is None:
        raise UnknownTermError(f"analyte {analyte!r} has no CTCAE v5.0 lab grade here (known: "
                               f"{', '.join(LAB_TERMS)})")
    return term(name)


def code_event(
    name: str,
    grade: int,
    *,
    specify: str | None = None,
    meddra_code: int | str | None = None,
    verbatim: str | None = None,
) -> CodedEvent:
    """Code one adverse event to CTCAE v5.0, or raise CtcaeTermError naming every problem.

    Rules (CTCAE v5.0, Introduction: "Grades", "Other, specify"):

    * ``name`` is a CTCAE v5.0 term (case-insensitive);
    * ``grade`` is 1-5 and exists for that term (not ``-``);
    * "Other, specify" terms need a non-empty ``specify`` text (the event's name); other
      terms take none (a specified name would contradict the coded term);
    * ``meddra_code``, if given, is that term's code (a code entered beside the term must
      agree with it; nothing is silently replaced).

    The returned event carries the canonical spelling, the MedDRA code, the SOC and the
    grade's definition text; ``verbatim`` is kept as given.
    """
    problems: list[str] = []
    t: CtcaeTerm | None = None
    try:
        t = term(name)
    except CtcaeTermError as e:
        problems.append(f"term: {e}")
    g: int | None = None
    try:
        g = _check_grade_number(grade)
    except CtcaeTermError as e:
        problems.append(f"grade: {e}")
    spec = specify.strip() if isinstance(specify, str) else specify
    if t is not None:
        if g is not None and t.grades[g - 1] is None:
            problems.append(f"grade: CTCAE v5.0 term {t.term!r} has no grade {g} (grades: "
                            f"{', '.join(map(str, t.allowed_grades))})")
        if t.is_other_specify and not spec:
            problems.append(f"specify: {t.term!r} needs the name of the event (specify text)")
        if not t.is_other_specify and spec:
            problems.append(f"specify: only an 'Other, specify' term takes a specify text; "
                            f"{t.term!r} is a CTCAE term of its own")
        if meddra_code is not None:
            try:
                other = by_code(meddra_code)
            except CtcaeTermError as e:
                problems.append(f"meddra_code: {e}")
            else:
                if other is not t:
                    problems.append(f"meddra_code: {other.meddra_code} is {other.term!r}, not "
                                    f"{t.term!r} ({t.meddra_code})")
    if problems:
        raise CtcaeTermError("; ".join(problems))
    assert t is not None and g is not None
    return CodedEvent(term=t.term, meddra_code=t.meddra_code, soc=t.soc, grade=g,
                      grade_definition=t.grades[g - 1] or "", specify=spec or None,
                      verbatim=verbatim)
