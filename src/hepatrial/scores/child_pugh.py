"""Child-Turcotte-Pugh score and class.

Sources: Child CG, Turcotte JG. Surgery and portal hypertension. In: The liver and portal
hypertension. Saunders 1964:50-64; Pugh RNH et al. Transection of the oesophagus for bleeding
oesophageal varices. Br J Surg 1973;60:646-649. Cut-offs as tabulated by the Cleveland Clinic
Journal of Medicine Child-Pugh Table 1 (CCJM) and MedCalc-Bench ``child_pugh_score.py``.

Where the sources disagree, hepatrial uses (and records in the variant name):

* bilirubin (standard): < 2 mg/dL → 1, 2–3 → 2, > 3 → 3 (CCJM; Harrison's);
* bilirubin (cholestatic disease, PBC/PSC): < 4 mg/dL → 1, 4–10 → 2, > 10 → 3
  (pharmacy-notebook Child-Pugh page; onenueng/wordplease);
* albumin: > 3.5 g/dL → 1, 2.8–3.5 → 2, < 2.8 → 3 (CCJM; MedCalc-Bench). Harrison's and
  PMC3017746 use 3.0–3.5 / < 3.0 — not used;
* INR: < 1.7 → 1, 1.7–2.3 → 2, > 2.3 → 3 (CCJM; MedCalc-Bench). The GDL guideline uses
  1.7–2.2 / > 2.2 — not used;
* prothrombin time, seconds prolonged over control (Pugh's original): < 4 → 1, 4–6 → 2,
  > 6 → 3 (Harrison's; PMC3017746). Some tables write "1–3" for the first band;
* boundary values belong to the middle band: bilirubin 2.0 and 3.0, albumin 2.8 and 3.5 and
  INR 1.7 and 2.3 all score 2;
* SI inputs are converted to conventional units first (bilirubin ÷ 17.1, albumin ÷ 10), so SI
  and conventional entries give identical points. The SI tables' "< 34 µmol/L" differs from
  2 mg/dL × 17.1 = 34.2 µmol/L: 34.0–34.1 µmol/L scores 1 here;
* class A = 5–6 points, B = 7–9, C = 10–15 (CCJM; medicalcriteria.com).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepatrial.scores import units as _units
from hepatrial.scores._core import (
    Errors,
    FloatArray,
    ScoreInputError,
    Units,
    broadcast,
    category,
    check_choice,
    check_errors,
    finish,
    lab,
)

#: ascites -> points
ASCITES = {
    "none": 1.0,
    "absent": 1.0,
    "no": 1.0,
    "slight": 2.0,
    "mild": 2.0,
    "moderate": 3.0,
    "severe": 3.0,
    "moderate_severe": 3.0,
    "tense": 3.0,
    "refractory": 3.0,
}
#: hepatic encephalopathy -> points
ENCEPHALOPATHY = {
    "none": 1.0,
    "absent": 1.0,
    "no": 1.0,
    "grade_1_2": 2.0,
    "grade 1-2": 2.0,
    "grade1-2": 2.0,
    "1-2": 2.0,
    "mild": 2.0,
    "grade_3_4": 3.0,
    "grade 3-4": 3.0,
    "grade3-4": 3.0,
    "3-4": 3.0,
    "severe": 3.0,
}
#: cholestatic disease flag: yes/no or the disease name (PBC, PSC -> cholestatic table)
CHOLESTATIC = {
    "true": 1.0,
    "yes": 1.0,
    "y": 1.0,
    "1": 1.0,
    "1.0": 1.0,
    "pbc": 1.0,
    "psc": 1.0,
    "false": 0.0,
    "no": 0.0,
    "n": 0.0,
    "0": 0.0,
    "0.0": 0.0,
}

CLASS_LABELS = np.array(["", "A", "B", "C"], dtype=object)


def _band(x: FloatArray, low: float, high: float) -> FloatArray:
    """1 below ``low``, 2 within [low, high], 3 above ``high``; NaN stays NaN."""
    out = np.array(x >= low, dtype=np.float64)
    out += x > high
    out += 1.0
    out[np.isnan(x)] = np.nan
    return out


def _band_desc(x: FloatArray, low: float, high: float) -> FloatArray:
    """1 above ``high``, 2 within [low, high], 3 below ``low`` (albumin)."""
    out = np.array(x <= high, dtype=np.float64)
    out += x < low
    out += 1.0
    out[np.isnan(x)] = np.nan
    return out


def _all_equal(x: FloatArray, value: float) -> bool:
    return bool(x.size) and bool(np.all(x == value))


def child_pugh_bilirubin_points(
    bilirubin: Any,
    *,
    cholestatic: Any = False,
    units: Units = "conventional",
    errors: Errors = "raise",
) -> Any:
    """Child-Pugh bilirubin points: standard < 2 / 2–3 / > 3 mg/dL; PBC/PSC < 4 / 4–10 / > 10."""
    check_errors(errors)
    check_choice(units, ("conventional", "si"), "units")
    b = _units.to_conventional("bilirubin", lab(bilirubin, "bilirubin", errors), units)
    ch = category(cholestatic, CHOLESTATIC, "cholestatic_disease", errors)
    if _all_equal(ch, 0.0):
        return finish(_band(b, 2.0, 3.0))
    b, ch = broadcast(b, ch)
    pts = np.where(ch == 1.0, _band(b, 4.0, 10.0), _band(b, 2.0, 3.0))
    return finish(np.where(np.isnan(ch), np.nan, pts))


def child_pugh_coagulation_points(
    *, inr: Any = None, pt_seconds_prolonged: Any = None, errors: Errors = "raise"
) -> Any:
    """Child-Pugh coagulation points from INR (< 1.7 / 1.7–2.3 / > 2.3) or, where INR is
    missing, from prothrombin time prolonged over control in seconds (< 4 / 4–6 / > 6)."""
    check_errors(errors)
    i = lab(inr, "inr", errors)
    pt = lab(pt_seconds_prolonged, "pt_seconds_prolonged", errors, positive=False)
    if pt.ndim == 0 and np.isnan(pt):
        return finish(_band(i, 1.7, 2.3))
    i, pt = broadcast(i, pt)
    return finish(np.where(np.isnan(i), _band(pt, 4.0, 6.0), _band(i, 1.7, 2.3)))


def child_pugh(
    bilirubin: Any,
    albumin: Any,
    ascites: Any,
    encephalopathy: Any,
    *,
    inr: Any = None,
    pt_seconds_prolonged: Any = None,
    inr_points: Any = None,
    cholestatic: Any = False,
    units: Units = "conventional",
    errors: Errors = "raise",
) -> Any:
    """Child-Pugh points (5–15): bilirubin + albumin + coagulation + ascites + encephalopathy.

    Coagulation comes from ``inr`` when present, else from ``pt_seconds_prolonged``, else from
    ``inr_points`` (1–3, when a case-report form records the ticked band rather than the value).
    ``ascites``: none / slight (mild, diuretic-responsive) / moderate (severe, refractory).
    ``encephalopathy``: none / grade_1_2 / grade_3_4. ``cholestatic``: true (or "PBC"/"PSC")
    selects the cholestatic bilirubin bands. Cut-offs and where sources disagree: see the
    module docstring. Units: bilirubin mg/dL or µmol/L, albumin g/dL or g/L.
    """
    check_errors(errors)
    check_choice(units, ("conventional", "si"), "units")
    bp = np.asarray(
        child_pugh_bilirubin_points(bilirubin, cholestatic=cholestatic, units=units, errors=errors),
        dtype=np.float64,
    )
    alb = _units.to_conventional("albumin", lab(albumin, "albumin", errors), units)
    ap = _band_desc(alb, 2.8, 3.5)
    cp = np.asarray(
        child_pugh_coagulation_points(
            inr=inr, pt_seconds_prolonged=pt_seconds_prolonged, errors=errors
        ),
        dtype=np.float64,
    )
    given = category(inr_points, {"1": 1.0, "2": 2.0, "3": 3.0}, "inr_points", errors)
    asc = category(ascites, ASCITES, "ascites", errors)
    enc = category(encephalopathy, ENCEPHALOPATHY, "encephalopathy", errors)
    if not (given.ndim == 0 and np.isnan(given)):
        cp, given = broadcast(cp, given)
        cp = np.where(np.isnan(cp), given, cp)
    bp, ap, cp, asc, enc = broadcast(bp, ap, cp, asc, enc)
    return finish(bp + ap + cp + asc + enc)


def child_pugh_class(points: Any) -> Any:
    """Child-Pugh class from points: A = 5–6, B = 7–9, C = 10–15; "" where points are NaN.

    Returns an object array of "A"/"B"/"C"/"" (a str for scalar input).
    """
    p = np.asarray(points, dtype=np.float64)
    bad = ~np.isnan(p) & ((p < 5) | (p > 15) | (p != np.floor(p)))
    if bad.any():
        row = None if p.ndim == 0 else int(np.flatnonzero(bad.ravel())[0])
        value = p.item() if p.ndim == 0 else p.ravel()[row]
        raise ScoreInputError("child_pugh_points", row, value, "is not a Child-Pugh score (5-15)")
    idx = np.where(np.isnan(p), 0, np.where(p <= 6, 1, np.where(p <= 9, 2, 3))).astype(np.intp)
    if idx.ndim == 0:
        return str(CLASS_LABELS[int(idx)])
    return CLASS_LABELS[idx]


__all__ = [
    "ASCITES",
    "ENCEPHALOPATHY",
    "child_pugh",
    "child_pugh_bilirubin_points",
    "child_pugh_class",
    "child_pugh_coagulation_points",
]
