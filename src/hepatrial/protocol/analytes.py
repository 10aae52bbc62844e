"""Registry of laboratory analytes and derived scores: canonical units, unit conversion, ranges.

Every stored lab value in hepatrial is kept in one **canonical (SI) unit** per analyte
(docs/contracts.md §1). This module is the single place that knows

* which analytes exist (``bilirubin``, ``creatinine``, ``albumin``, ``inr``, ...), their LOINC
  code and canonical unit;
* which input units are accepted for each and the factor that converts them to canonical;
* two ranges per analyte, both in the canonical unit:

  - ``limits`` (hard): values outside are physically impossible or, far more often, a unit
    mistake (bilirubin entered in mg/dL as if it were µmol/L). :func:`to_canonical` rejects them.
  - ``expected`` (soft): values outside are possible in end-stage liver disease but unusual
    enough to deserve a data query. :func:`range_flag` reports them; nothing is rejected.

Conversion factors (µmol/L = mg/dL × 17.1 for bilirubin, × 88.4 for creatinine; g/L = g/dL × 10;
10^3/µL = 10^9/L; mmol/L = mg/dL ÷ 38.67 for cholesterol) are the conventional ones used by the
reference score implementations; see shared reference ``scores.md`` §0 (sources: transplantr
``R/unit_conversion.R``; MedCalc-Bench; GDL ALBI) and, for cholesterol, the molar mass of
cholesterol (386.65 g/mol → 1 mmol/L = 38.67 mg/dL). 1 µkat/L = 60 U/L (1 U = 1 µmol/min =
16.67 nkat). LOINC codes are from loinc.org (bilirubin total 1975-2, creatinine 2160-0,
albumin 1751-7, INR 6301-6, sodium 2951-2, AST 1920-8, ALT 1742-6, platelets 777-3,
ALP 6768-6, cholesterol 2093-3, PT 5902-2, body weight 29463-7).

The ranges are hepatrial's own choices (documented, not from a guideline): the hard limits are
set wide enough that every value in the Mayo PBC data (``pbcseq``) passes (e.g. albumin
8.01 g/dL = 80.1 g/L and alkaline phosphatase 13 862 U/L occur there).

Scores (MELD variants, Child-Pugh, ALBI) are registered too (:data:`SCORES`) so protocols can
name them as outcomes; their unit is ``points`` and they are computed by :mod:`hepatrial.scores`,
never converted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hepatrial.errors import AnalyteError, RangeError, UnitError, UnknownAnalyteError

__all__ = [
    "ANALYTES",
    "SCORES",
    "Analyte",
    "AnalyteError",
    "RangeError",
    "Score",
    "UnitError",
    "UnknownAnalyteError",
    "analyte",
    "canonical_unit",
    "is_known",
    "list_analytes",
    "normalise_unit",
    "range_flag",
    "score",
    "to_canonical",
    "to_canonical_array",
]




@dataclass(frozen=True)
class Analyte:
    """One laboratory analyte or clinical measurement.

    Attributes:
        code: canonical hepatrial code (``bilirubin``).
        label: human-readable name.
        loinc: LOINC code of the usual serum/plasma test.
        unit: canonical (SI) unit, as written in the analysis dataset.
        units: accepted input units → multiplicative factor to the canonical unit. Keys are the
            display spellings; matching is done on :func:`normalise_unit` of both sides.
        limits: hard (low, high) limits in the canonical unit, inclusive.
        expected: soft (low, high) range in the canonical unit, inclusive.
    """

    code: str
    label: str
    loinc: str
    unit: str
    units: Mapping[str, float]
    limits: tuple[float, float]
    expected: tuple[float, float]
    note: str = ""
    _lookup: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lookup = {normalise_unit(u): f for u, f in self.units.items()}
        object.__setattr__(self, "_lookup", lookup)

    def factor(self, unit: str) -> float:
        """Factor from ``unit`` to the canonical unit; :class:`UnitError` if not accepted."""
        try:
            return self._lookup[normalise_unit(unit)]
        except KeyError:
            allowed = ", ".join(self.units)
            raise UnitError(
                f"{self.code}: unit {unit!r} is not accepted (accepted units: {allowed})"
            ) from None

    def accepts(self, unit: str) -> bool:
        """True when ``unit`` is an accepted input unit for this analyte."""
        return normalise_unit(unit) in self._lookup


@dataclass(frozen=True)
class Score:
    """A derived score that a protocol may name as an outcome (computed by hepatrial.scores)."""

    code: str
    label: str
    unit: str = "points"
    meld_variant: str | None = None


_UNIT_ALIASES = {"µ": "u", "μ": "u", "×": "x", " ": ""}


def normalise_unit(unit: str) -> str:
    """Canonical spelling used to compare units: no spaces, micro sign → ``u``, lower case.

    ``"µmol/L"``, ``"umol/l"`` and ``"μmol / L"`` all normalise to ``"umol/l"``. ``10^9/L``,
    ``10E9/L`` and ``x10^9/L`` normalise to ``10^9/l``.
    """
    if not isinstance(unit, str):
        raise UnitError(f"unit must be a string, got {unit!r}")
    u = unit.strip()
    for a, b in _UNIT_ALIASES.items():
        u = u.replace(a, b)
    u = u.lower()
    u = re.sub(r"^x(?=10)", "", u)
    u = re.sub(r"10\*\*?|10e", "10^", u)
    return u


def _a(
    code: str,
    label: str,
    loinc: str,
    unit: str,
    units: dict[str, float],
    limits: tuple[float, float],
    expected: tuple[float, float],
    note: str = "",
) -> Analyte:
    return Analyte(code, label, loinc, unit, units, limits, expected, note)


_CHOL_MG_PER_MMOL = 38.67

#: The analyte registry, keyed by code.
ANALYTES: dict[str, Analyte] = {
    a.code: a
    for a in (
        _a("bilirubin", "Bilirubin, total", "1975-2", "umol/L",
           {"umol/L": 1.0, "mg/dL": 17.1}, (0.0, 1500.0), (2.0, 700.0)),
        _a("creatinine", "Creatinine", "2160-0", "umol/L",
           {"umol/L": 1.0, "mg/dL": 88.4}, (5.0, 2500.0), (20.0, 1000.0)),
        _a("albumin", "Albumin", "1751-7", "g/L",
           {"g/L": 1.0, "g/dL": 10.0}, (5.0, 100.0), (10.0, 60.0),
           "hard upper limit 100 g/L admits the 8.01 g/dL value in pbcseq"),
        _a("inr", "INR", "6301-6", "1",
           {"1": 1.0, "ratio": 1.0, "INR": 1.0}, (0.5, 20.0), (0.8, 8.0)),
        _a("sodium", "Sodium", "2951-2", "mmol/L",
           {"mmol/L": 1.0, "mEq/L": 1.0}, (90.0, 200.0), (110.0, 160.0)),
        _a("ast", "Aspartate aminotransferase", "1920-8", "U/L",
           {"U/L": 1.0, "IU/L": 1.0, "ukat/L": 60.0}, (0.0, 50000.0), (5.0, 2000.0)),
        _a("alt", "Alanine aminotransferase", "1742-6", "U/L",
           {"U/L": 1.0, "IU/L": 1.0, "ukat/L": 60.0}, (0.0, 50000.0), (5.0, 2000.0)),
        _a("platelets", "Platelets", "777-3", "10^9/L",
           {"10^9/L": 1.0, "10^3/uL": 1.0, "G/L": 1.0, "/nL": 1.0},
           (0.0, 3000.0), (10.0, 1000.0)),
        _a("alk_phos", "Alkaline phosphatase", "6768-6", "U/L",
           {"U/L": 1.0, "IU/L": 1.0, "ukat/L": 60.0}, (0.0, 50000.0), (20.0, 5000.0)),
        _a("cholesterol", "Cholesterol, total", "2093-3", "mmol/L",
           {"mmol/L": 1.0, "mg/dL": 1.0 / _CHOL_MG_PER_MMOL}, (0.3, 80.0), (1.5, 20.0)),
        _a("prothrombin_time", "Prothrombin time", "5902-2", "s",
           {"s": 1.0, "sec": 1.0, "seconds": 1.0}, (5.0, 200.0), (9.0, 60.0)),
        _a("weight", "Body weight", "29463-7", "kg",
           {"kg": 1.0, "lb": 0.45359237}, (1.0, 400.0), (30.0, 200.0)),
    )
}

#: Derived scores a protocol may name as outcomes or in eligibility (unit ``points``).
SCORES: dict[str, Score] = {
    s.code: s
    for s in (
        Score("meld_kamath2001", "MELD (Kamath 2001, continuous)", meld_variant="kamath2001"),
        Score("meld_continuous", "MELD (OPTN input rules, unrounded)", meld_variant="continuous"),
        Score("meld_optn2002", "MELD (UNOS/OPTN 2002-2016, integer)", meld_variant="optn2002"),
        Score("meld_na_kim2008", "MELD-Na (Kim 2008)", meld_variant="kim2008"),
        Score("meld_na_optn2016", "MELD-Na (OPTN 2016)", meld_variant="optn2016"),
        Score("meld3_optn2023", "MELD 3.0 (OPTN 2023)", meld_variant="optn2023"),
        Score("child_pugh_points", "Child-Pugh points"),
        Score("albi", "ALBI score"),
        Score("fib4", "FIB-4 index"),
        Score("apri", "APRI"),
        Score("meld_xi", "MELD-XI"),
        Score("ukeld", "UKELD"),
    )
}

#: MELD-family variant name (the ``variant=`` of ``hepatrial.scores.meld`` / ``meld_na`` /
#: ``meld3``) → score code in the analysis dataset (``optn2002`` → ``meld_optn2002``).
MELD_VARIANTS: dict[str, str] = {
    s.meld_variant: s.code for s in SCORES.values() if s.meld_variant is not None
}


def analyte(code: str) -> Analyte:
    """Return the :class:`Analyte` registered under ``code``.

    Raises:
        UnknownAnalyteError: the code is not registered (message lists the known codes).
    """
    try:
        return ANALYTES[code]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ANALYTES))
        raise UnknownAnalyteError(f"unknown analyte {code!r} (known: {known})") from None


def score(code: str) -> Score:
    """Return the :class:`Score` registered under ``code`` (raises :class:`UnknownAnalyteError`)."""
    try:
        return SCORES[code]
    except (KeyError, TypeError):
        known = ", ".join(sorted(SCORES))
        raise UnknownAnalyteError(f"unknown score {code!r} (known: {known})") from None


def is_known(code: str) -> bool:
    """True when ``code`` is a registered analyte or score."""
    return code in ANALYTES or code in SCORES


def canonical_unit(code: str) -> str:
    """Canonical unit of an analyte or score (``points`` for scores)."""
    if code in SCORES:
        return SCORES[code].unit
    return analyte(code).unit


def list_analytes() -> list[Analyte]:
    """All registered analytes, sorted by code."""
    return [ANALYTES[k] for k in sorted(ANALYTES)]


def to_canonical(code: str, value: float, unit: str, *, check: bool = True) -> float:
    """Convert one value of analyte ``code`` from ``unit`` to the canonical unit.

    Args:
        code: analyte code (``"bilirubin"``).
        value: the measured value (a finite number).
        unit: the unit it was measured in (``"mg/dL"``); must be accepted for the analyte.
        check: when true (default), reject values outside the analyte's hard ``limits``.

    Returns:
        The value in the canonical unit, as a float.

    Raises:
        UnknownAnalyteError, UnitError, RangeError (all :class:`ValueError` subclasses), and
        :class:`ValueError` for a missing / non-numeric / non-finite value.

    Example:
        >>> to_canonical("bilirubin", 1.0, "mg/dL")
        17.1
    """
    a = analyte(code)
    factor = a.factor(unit)
    if isinstance(value, bool) or value is None:
        raise AnalyteError(f"{code}: value {value!r} is not a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise AnalyteError(f"{code}: value {value!r} is not a number") from None
    if not math.isfinite(v):
        raise AnalyteError(f"{code}: value {value!r} is missing or not finite")
    out = v * factor
    if check:
        lo, hi = a.limits
        if not lo <= out <= hi:
            raise RangeError(
                f"{code}: {value!r} {unit} = {out:g} {a.unit} is outside the plausible range "
                f"{lo:g}-{hi:g} {a.unit} (wrong unit?)"
            )
    return out


def to_canonical_array(code: str, values: Any, unit: str, *, check: bool = True) -> np.ndarray:
    """Vectorised :func:`to_canonical` for array-likes (numpy arrays, lists, pandas Series).

    Missing values (NaN/None) pass through as NaN. With ``check``, any finite value outside the
    hard limits raises :class:`RangeError` naming the (0-based) positions of the offending values
    (the first ten) and how many there are in total.
    """
    a = analyte(code)
    factor = a.factor(unit)
    arr = np.asarray(values, dtype=float) * factor
    if check:
        lo, hi = a.limits
        bad = np.isfinite(arr) & ((arr < lo) | (arr > hi))
        if bad.any():
            idx = np.flatnonzero(bad)
            shown = ", ".join(f"[{i}]={arr.flat[i] / factor:g}" for i in idx[:10])
            raise RangeError(
                f"{code}: {idx.size} value(s) in {unit} outside the plausible range "
                f"{lo:g}-{hi:g} {a.unit} after conversion: {shown}"
            )
    return arr


def range_flag(code: str, value: float) -> Literal["ok", "low", "high", "implausible"]:
    """Classify a **canonical** value: ``ok``, ``low``/``high`` (outside the expected range,
    query it) or ``implausible`` (outside the hard limits). NaN raises :class:`AnalyteError`."""
    a = analyte(code)
    v = float(value)
    if not math.isfinite(v):
        raise AnalyteError(f"{code}: value {value!r} is missing or not finite")
    if not a.limits[0] <= v <= a.limits[1]:
        return "implausible"
    if v < a.expected[0]:
        return "low"
    if v > a.expected[1]:
        return "high"
    return "ok"
