"""CTCAE v5.0 grades for the liver-trial laboratory terms.

Sources:

* National Cancer Institute, Cancer Therapy Evaluation Program. Common Terminology Criteria
  for Adverse Events (CTCAE) version 5.0, published 27 November 2017 (US DHHS, NIH, NCI).
* pharmaverse/admiral, ``data-raw/adlb_grading/ncictcaev5.json`` (the criteria text and the
  ``GRADE_*_CODE`` operational rules used by ``admiral::derive_var_atoxgr()``), whose rules
  are followed here except where a docstring says otherwise; the reference vectors in
  ``score_vectors.csv`` (rows ``ctcae_v5``) come from admiral's tests 12a, 18a, 26a, 36a, 46a
  and 68a/b.

Only the laboratory part of each criterion is graded: grade 5 (death) and the clinical parts
(e.g. hypoalbuminemia grade 4 "life-threatening consequences; urgent intervention indicated")
cannot be derived from a lab value. Pin the CTCAE version in trial data: v6.0 changes the
abnormal-baseline criteria for ALT and bilirubin and renames "Platelet count decreased" to
"Thrombocytopenia"; this module grades v5.0 only and rejects the v6.0 name.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from hepatrial.scores._core import (
    MISSING_TEXT,
    Errors,
    FloatArray,
    ScoreInputError,
    as_float,
    broadcast,
    check_choice,
    check_errors,
    finish,
    flag,
    lab,
)

InrRule = Literal["ctcae", "admiral"]
INR_RULES: tuple[str, ...] = ("ctcae", "admiral")

BILIRUBIN = "Blood bilirubin increased"
ALT = "Alanine aminotransferase increased"
AST = "Aspartate aminotransferase increased"
INR = "INR increased"
CREATININE = "Creatinine increased"
HYPOALBUMINEMIA = "Hypoalbuminemia"
PLATELETS = "Platelet count decreased"

#: The CTCAE v5.0 terms this module grades (canonical spelling, MedDRA lowest-level terms).
CTCAE_TERMS: tuple[str, ...] = (BILIRUBIN, ALT, AST, INR, CREATININE, HYPOALBUMINEMIA, PLATELETS)

_CODE = {t: float(i) for i, t in enumerate(CTCAE_TERMS)}
_BIL, _ALT, _AST, _INR, _CR, _ALB, _PLT = range(len(CTCAE_TERMS))

#: Accepted spellings (lower case) -> canonical term.
TERM_SYNONYMS: dict[str, str] = {
    **{t.lower(): t for t in CTCAE_TERMS},
    "bilirubin increased": BILIRUBIN,
    "total bilirubin increased": BILIRUBIN,
    "blood bilirubin increased": BILIRUBIN,
    "alt increased": ALT,
    "sgpt increased": ALT,
    "alanine transaminase increased": ALT,
    "ast increased": AST,
    "sgot increased": AST,
    "aspartate transaminase increased": AST,
    "international normalized ratio increased": INR,
    "blood creatinine increased": CREATININE,
    "serum creatinine increased": CREATININE,
    "hypoalbuminaemia": HYPOALBUMINEMIA,
    "albumin decreased": HYPOALBUMINEMIA,
    "platelets decreased": PLATELETS,
    "platelet decreased": PLATELETS,
}

#: Names from other CTCAE versions that must not be graded silently under v5.0.
_OTHER_VERSION_TERMS: dict[str, str] = {
    "thrombocytopenia": (
        "is the CTCAE v6.0 name; this function grades CTCAE v5.0, "
        f"whose term is {PLATELETS!r}"
    ),
}

#: Unit text (normalised: lower case, no spaces, µ→u, ×→x, 10e→10^, 10*→10^) ->
#: (quantity, factor to the canonical unit). Quantity "count": canonical 10^9/L;
#: "mass": canonical g/L.
_UNITS: dict[str, tuple[str, float]] = {
    **{
        u: ("count", 1.0)
        for u in (
            "10^9/l", "x10^9/l", "10^9cells/l", "10^3/ul", "x10^3/ul", "10^3/mm3", "x10^3/mm3",
            "10^3/mm^3", "x10^3/mm^3", "10^3cells/ul", "k/ul", "thou/ul", "gpt/l",
        )
    },
    **{u: ("count", 1e-3) for u in ("/ul", "/mm3", "/mm^3", "cells/ul", "cells/mm3")},
    "g/l": ("mass", 1.0),
    "g/dl": ("mass", 10.0),
    "g/100ml": ("mass", 10.0),
}

#: Relative tolerance of every comparison, so that floating-point noise in ``k × ULN`` does
#: not move a value across a threshold (admiral compares ``signif(x, 15)``).
_RTOL = 1e-12


def _gt(a: FloatArray, b: FloatArray | float) -> npt.NDArray[np.bool_]:
    """``a > b`` beyond floating-point noise (False where either side is NaN)."""
    with np.errstate(invalid="ignore"):
        return (a - b) > _RTOL * np.maximum(np.abs(a), np.abs(b))


def _ge(a: FloatArray, b: FloatArray | float) -> npt.NDArray[np.bool_]:
    """``a >= b`` up to floating-point noise (False where either side is NaN)."""
    with np.errstate(invalid="ignore"):
        return (a - b) >= -_RTOL * np.maximum(np.abs(a), np.abs(b))


def _lt(a: FloatArray, b: FloatArray | float) -> npt.NDArray[np.bool_]:
    return _gt(np.asarray(b, dtype=np.float64), a)


def _normalise_text(v: object) -> str | None:
    """Lower-case text with runs of blanks collapsed; None for missing."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    key = " ".join(str(v).split()).lower()
    return None if key in MISSING_TEXT else key


def _per_distinct(values: Any, fn: Any) -> tuple[npt.NDArray[Any], list[Any]]:
    """``fn`` of every element of ``values``, computed once per distinct value.

    Returns the input as an object array and the flat list of results.
    """
    arr = np.asarray(values, dtype=object)
    cache: dict[object, Any] = {}
    results: list[Any] = []
    for v in arr.ravel():
        try:
            results.append(cache[v])
        except KeyError:
            cache[v] = r = fn(v)
            results.append(r)
        except TypeError:  # pragma: no cover - unhashable entry
            results.append(fn(v))
    return arr, results


_UNKNOWN = -1.0


def _term_code(v: object) -> float:
    key = _normalise_text(v)
    if key is None:
        return np.nan
    canonical = TERM_SYNONYMS.get(key)
    return _UNKNOWN if canonical is None else _CODE[canonical]


def _term_codes(term: Any, errors: Errors) -> FloatArray:
    """Term text -> code (index into CTCAE_TERMS), NaN for missing."""
    arr, results = _per_distinct(term, _term_code)
    out = np.asarray(results, dtype=np.float64).reshape(arr.shape)
    unknown = out == _UNKNOWN
    if unknown.any():
        if errors == "raise":
            row = int(np.flatnonzero(unknown.ravel())[0])
            value = arr.ravel()[row]
            reason = _OTHER_VERSION_TERMS.get(
                _normalise_text(value) or "",
                "is not a CTCAE v5.0 term graded here (expected one of: "
                + ", ".join(CTCAE_TERMS) + ")",
            )
            raise ScoreInputError("term", None if arr.ndim == 0 else row, value, reason)
        out = np.where(unknown, np.nan, out)
    return out


_NO_UNIT, _COUNT, _MASS = 0.0, 1.0, 2.0
_QUANTITY = {"count": _COUNT, "mass": _MASS}


def _unit_of(v: object) -> tuple[float, float]:
    """(quantity code, factor to the canonical unit); quantity NaN for unknown text."""
    key = _normalise_text(v)
    if key is None:
        return _NO_UNIT, np.nan
    key = (
        key.replace(" ", "").replace("µ", "u").replace("μ", "u").replace("×", "x")
        .replace("10e", "10^").replace("10*", "10^").replace("³", "^3").replace("⁹", "^9")
    )
    if key not in _UNITS:
        return np.nan, np.nan
    quantity, factor = _UNITS[key]
    return _QUANTITY[quantity], factor


def _unit_info(unit: Any) -> tuple[FloatArray, FloatArray]:
    """Per-row quantity code (0 = no unit, NaN = unknown unit) and factor."""
    arr, results = _per_distinct(unit, _unit_of)
    pairs = np.asarray(results, dtype=np.float64).reshape((*arr.shape, 2))
    return pairs[..., 0], pairs[..., 1]


def _highest(x: FloatArray, ref: FloatArray | float, multiples: tuple[float, ...],
             inclusive_first: bool = False) -> FloatArray:
    """Highest grade k (1-based) with ``x > multiples[k-1] × ref``; 0 if none; NaN if unknown.

    ``inclusive_first`` makes grade 1 ``x >= multiples[0] × ref`` (admiral, ALT/AST abnormal
    baseline).
    """
    ref = np.asarray(ref, dtype=np.float64)
    g = np.zeros(np.broadcast(x, ref).shape)
    for k, m in enumerate(multiples, start=1):
        cmp = _ge if (k == 1 and inclusive_first) else _gt
        g = np.where(cmp(x, m * ref), float(k), g)
    return np.where(np.isnan(x) | np.isnan(ref), np.nan, g)


def _lowest(x: FloatArray, thresholds: tuple[float, ...], first: int) -> FloatArray:
    """Highest grade k for ``x < thresholds[k - first]`` (thresholds decreasing); 0 if none."""
    g = np.zeros(x.shape)
    for k, t in enumerate(thresholds, start=first):
        g = np.where(_lt(x, t), float(k), g)
    return np.where(np.isnan(x), np.nan, g)


def _missing(values: Any) -> npt.NDArray[np.bool_]:
    """True where an input is missing (None, NaN or missing text such as "" or "NA")."""
    if values is None:
        return np.asarray(True)
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    if arr.dtype.kind in "iub":
        return np.zeros(arr.shape, dtype=bool)
    arr, results = _per_distinct(arr, lambda v: _normalise_text(v) is None)
    return np.asarray(results, dtype=bool).reshape(arr.shape)


def _coerced(x: FloatArray, values: Any) -> npt.NDArray[np.bool_]:
    """Rows that ``errors="coerce"`` turned into NaN (NaN now, but not missing on input)."""
    return np.isnan(x) & ~_missing(values)


def _check_value(v: FloatArray, codes: FloatArray, raw: Any, errors: Errors) -> FloatArray:
    """Values must be finite and > 0 (platelet counts: >= 0)."""
    with np.errstate(invalid="ignore"):
        plt = codes == _PLT
        bad = np.where(plt, v < 0, v <= 0) | np.isinf(v)
    if not bad.any():
        return v
    if errors == "coerce":
        return np.where(bad, np.nan, v)
    row = None if bad.ndim == 0 else int(np.flatnonzero(bad.ravel())[0])
    if row is None:
        value = raw.item() if isinstance(raw, np.ndarray) else raw
        is_plt = bool(plt)
    else:
        try:
            value = np.broadcast_to(np.asarray(raw, dtype=object), v.shape).ravel()[row]
        except ValueError:  # pragma: no cover - defensive
            value = v.ravel()[row]
        is_plt = bool(plt.ravel()[row])
    if np.isinf(v.ravel()[0 if row is None else row]):
        reason = "is impossible: must be finite"
    elif is_plt:
        reason = "is impossible: a platelet count must not be negative"
    else:
        reason = "is impossible: must be greater than 0"
    raise ScoreInputError("value", row, value, reason)


def ctcae_grade(
    term: Any,
    value: Any,
    *,
    uln: Any = None,
    lln: Any = None,
    baseline: Any = None,
    anticoagulated: Any = False,
    unit: Any = None,
    inr_rule: InrRule = "ctcae",
    errors: Errors = "raise",
) -> Any:
    """CTCAE v5.0 grade (0–4) of a laboratory value.

    Grades follow NCI CTEP CTCAE v5.0 (27 Nov 2017) with the operational rules of
    pharmaverse/admiral ``ncictcaev5.json``: the grade is the highest criterion met, grade 0
    means no abnormality, and every comparison is made up to floating-point noise (relative
    1e-12, as admiral compares ``signif(x, 15)``). Thresholds ("> 1.5–3.0 × ULN") are
    exclusive at the lower end and inclusive at the upper end unless stated.

    ``"Blood bilirubin increased"``
        Baseline normal: > ULN → 1; > 1.5 × ULN → 2; > 3.0 × ULN → 3; > 10.0 × ULN → 4.
        Baseline abnormal (``baseline > uln``): > 1.0 × baseline → 1; > 1.5 × → 2;
        > 3.0 × → 3; > 10.0 × → 4.
    ``"Alanine aminotransferase increased"``, ``"Aspartate aminotransferase increased"``
        Baseline normal: > ULN → 1; > 3.0 × ULN → 2; > 5.0 × ULN → 3; > 20.0 × ULN → 4.
        Baseline abnormal: **≥** 1.5 × baseline → 1 (inclusive, as admiral; CTCAE writes
        "1.5 – 3.0 × baseline"); > 3.0 × → 2; > 5.0 × → 3; > 20.0 × → 4. A value between
        ULN and 1.5 × an abnormal baseline is grade 0.
    ``"INR increased"`` (no grade 4 in CTCAE)
        ``inr_rule="ctcae"`` (default): patients not anticoagulated are graded on the
        absolute INR, > 1.2 → 1, > 1.5 → 2, > 2.5 → 3; patients with ``anticoagulated``
        true only on the rise over their baseline, > 1.0 × baseline → 1, > 1.5 × → 2,
        > 2.5 × → 3 (NaN without a baseline). This is the reading chosen for cirrhosis
        trials, where INR is high at baseline and patients are usually not anticoagulated:
        the ×baseline arm would grade every rise above a raised baseline.
        ``inr_rule="admiral"``: the worse of both arms for everyone, whatever
        ``anticoagulated`` says (admiral "takes worst case and assumes on anticoagulation");
        without a baseline the absolute arm's grade if ≥ 1, else NaN (as admiral).
    ``"Creatinine increased"``
        The worse of the ×ULN arm (> ULN → 1; > 1.5 × ULN → 2; > 3.0 × ULN → 3;
        > 6.0 × ULN → 4) and the ×baseline arm (> 1.5 × baseline → 2; > 3.0 × baseline → 3;
        no grade 1 or 4 from baseline). Without a baseline, only the ×ULN arm. Without a
        ULN, the ×baseline arm's grade if ≥ 2 (as admiral; this cannot see grade 4), else
        NaN.
    ``"Hypoalbuminemia"``
        < 20 g/L (2 g/dL) → 3; < 30 g/L (3 g/dL) → 2; < LLN → 1. Grade 4 is clinical and is
        never returned. Needs ``unit`` (g/dL or g/L) for the absolute thresholds.
    ``"Platelet count decreased"``
        < 25 × 10⁹/L → 4; < 50 → 3; < 75 → 2; < LLN → 1. Needs ``unit`` (10⁹/L = 10³/µL,
        spelt e.g. ``"10^9/L"``, ``"x10^9/L"``, ``"10e9/L"``, ``"10^3/uL"``, ``"K/uL"``; or
        a plain count per µL / mm³, ``"/uL"``, ``"/mm3"``). The v6.0 name
        "Thrombocytopenia" is rejected.

    Parameters
    ----------
    term:
        CTCAE v5.0 term (one of :data:`CTCAE_TERMS`) or a synonym, case-insensitive
        (:data:`TERM_SYNONYMS`, e.g. ``"ALT increased"``, ``"AST increased"``,
        ``"bilirubin increased"``). A scalar or an array of mixed terms.
    value:
        The lab result. Must be > 0 (a platelet count may be 0).
    uln, lln:
        Upper / lower limit of normal, in the unit of ``value``; > 0.
    baseline:
        The participant's baseline value of the same lab, in the unit of ``value``; > 0.
        Baseline is abnormal when ``baseline > uln``, with the ULN of the graded sample
        (admiral uses the baseline record's own reference-range indicator ``BNRIND``; the
        two differ only when the reference range changed between the samples). Without a
        baseline, bilirubin, ALT and AST use the baseline-normal (×ULN) criteria (admiral
        likewise: a missing ``BNRIND`` is not HIGH).
    anticoagulated:
        True when the participant is on anticoagulation (INR only). Missing means False.
    unit:
        Unit of ``value`` (and ``lln``). Used only for hypoalbuminemia and platelets, where
        the criteria have absolute thresholds; for the other terms value, ULN and baseline
        just have to share a unit. Missing unit for those two terms gives NaN (the unit is
        never guessed from the magnitude); an unknown unit is an error.
    inr_rule:
        ``"ctcae"`` (default) or ``"admiral"``, see above.
    errors:
        ``"raise"`` (default): an unknown term or unit, a value ≤ 0, a ULN/LLN/baseline ≤ 0,
        or text that is not a number raises :class:`~hepatrial.scores.ScoreInputError`
        naming the input, the 0-based row and the value; ``"coerce"``: that row gives NaN
        (the whole row: a bad baseline is not treated as a missing one).

    Returns
    -------
    float64 array of grades 0–4 of the broadcast shape (a numpy scalar for scalar inputs);
    NaN where the grade cannot be derived: missing term or value, or a missing ULN, LLN,
    baseline or unit that the criterion needs.
    """
    check_errors(errors)
    check_choice(inr_rule, INR_RULES, "INR rule")
    codes = _term_codes(term, errors)
    v = as_float(value, "value", errors)
    u = lab(uln, "uln", errors)
    lo = lab(lln, "lln", errors)
    b = lab(baseline, "baseline", errors)
    ac = flag(anticoagulated, "anticoagulated", errors)
    ukind, ufactor = _unit_info(unit)
    # under errors="coerce" a row with any bad input is not graded at all (a bad baseline
    # must not silently switch the row to the baseline-normal criteria); under "raise" a bad
    # input has raised already
    if errors == "coerce":
        coerced = [
            _coerced(x, raw).astype(np.float64)
            for x, raw in ((codes, term), (v, value), (u, uln), (lo, lln), (b, baseline),
                           (ac, anticoagulated))
        ]
    else:
        coerced = []
    codes, v, u, lo, b, ac, ukind, ufactor, *bad_inputs = broadcast(
        codes, v, u, lo, b, ac, ukind, ufactor, *coerced
    )
    bad_row = np.zeros(codes.shape, dtype=bool)
    for bad_input in bad_inputs:
        bad_row |= bad_input > 0
    checked = _check_value(v, codes, value, errors)
    bad_row |= np.isnan(checked) & ~np.isnan(v)
    v = checked

    # units: only albumin and platelets need them, each its own quantity; no unit -> NaN
    needs = np.where(codes == _ALB, _MASS, np.where(codes == _PLT, _COUNT, _NO_UNIT))
    wrong = (needs != _NO_UNIT) & (ukind != _NO_UNIT) & (ukind != needs)  # NaN: unknown
    if wrong.any():
        if errors == "raise":
            row = None if wrong.ndim == 0 else int(np.flatnonzero(wrong.ravel())[0])
            at = 0 if row is None else row
            raw_unit = np.broadcast_to(np.asarray(unit, dtype=object), codes.shape).ravel()[at]
            term_name = CTCAE_TERMS[int(codes.ravel()[at])]
            allowed = "g/dL, g/L" if needs.ravel()[at] == _MASS else "10^9/L, 10^3/uL, /uL"
            raise ScoreInputError(
                "unit", row, raw_unit, f"is not a unit for {term_name!r} (expected e.g. {allowed})"
            )
        bad_row |= wrong
    ufactor = np.where(ukind == needs, ufactor, np.nan)
    canon = v * ufactor  # value in g/L or 10^9/L (NaN without a usable unit)

    out = np.full(codes.shape, np.nan)

    # bilirubin, ALT, AST: baseline-normal vs baseline-abnormal arms
    for code, mults, incl in (
        (_BIL, (1.0, 1.5, 3.0, 10.0), False),
        (_ALT, (1.5, 3.0, 5.0, 20.0), True),
        (_AST, (1.5, 3.0, 5.0, 20.0), True),
    ):
        m = codes == code
        if not m.any():
            continue
        normal_mults = (1.0, *mults[1:])
        g_normal = _highest(v, u, normal_mults)
        g_abn = _highest(v, b, mults, inclusive_first=incl)
        abnormal = _gt(b, u)  # False where the baseline (or ULN) is missing
        g = np.where(abnormal, g_abn, g_normal)
        out = np.where(m, g, out)

    # INR
    m = codes == _INR
    if m.any():
        g_abs = _highest(v, 1.0, (1.2, 1.5, 2.5))
        g_base = _highest(v, b, (1.0, 1.5, 2.5))
        if inr_rule == "admiral":
            g = np.fmax(g_abs, g_base)
            g = np.where(np.isnan(b) & (g_abs < 1), np.nan, g)
        else:
            g = np.where(ac == 1.0, g_base, g_abs)
        out = np.where(m, g, out)

    # creatinine
    m = codes == _CR
    if m.any():
        g_uln = _highest(v, u, (1.0, 1.5, 3.0, 6.0))
        g_base = _highest(v, b, (1.5, 3.0))
        g_base = np.where(g_base > 0, g_base + 1.0, g_base)  # arm grades 2 and 3
        g = np.fmax(g_uln, g_base)  # fmax: a missing arm does not hide the other
        g = np.where(np.isnan(u) & ~(g_base >= 2), np.nan, g)
        out = np.where(m, g, out)

    # hypoalbuminemia (g/L) and platelets (10^9/L): absolute grades 2+, grade 1 below LLN
    for code, thresholds, first in (
        (_ALB, (30.0, 20.0), 2),
        (_PLT, (75.0, 50.0, 25.0), 2),
    ):
        m = codes == code
        if not m.any():
            continue
        g_abs = _lowest(canon, thresholds, first)
        g_lln = np.where(_lt(v, lo), 1.0, np.where(np.isnan(lo), np.nan, 0.0))
        g = np.where(g_abs >= 2, g_abs, g_lln)
        g = np.where(np.isnan(g_abs), np.nan, g)
        out = np.where(m, g, out)

    out = np.where(np.isnan(v) | np.isnan(codes) | bad_row, np.nan, out)
    return finish(out)
