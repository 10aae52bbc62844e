"""The liver scores a visit's CRF shows as soon as their inputs are present.

Every value is computed by :func:`hepatrial.scores.score_columns` (the function the analysis
dataset derives its scores with) from the values in the form converted to the canonical unit
by the analyte registry; nothing here defines a score. Inputs: the labs (bilirubin,
creatinine, INR, albumin, sodium), dialysis in the week before, ascites and encephalopathy
(clinical assessment), sex and the age at the visit (age at consent in whole years + study
day / 365.25, docs/contracts.md §2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: (score column, label, inputs it needs, decimals shown)
SCORE_ROWS: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("meld_kamath2001", "MELD (Kamath 2001, continuous)", ("bilirubin", "creatinine", "inr"), 1),
    ("meld_continuous", "MELD (OPTN rules, unrounded)", ("bilirubin", "creatinine", "inr"), 1),
    ("meld_optn2002", "MELD (UNOS/OPTN 2002-2016)", ("bilirubin", "creatinine", "inr"), 0),
    ("meld_na_kim2008", "MELD-Na (Kim 2008)", ("bilirubin", "creatinine", "inr", "sodium"), 1),
    ("meld_na_optn2016", "MELD-Na (OPTN 2016)", ("bilirubin", "creatinine", "inr", "sodium"),
     0),
    ("meld3_optn2023", "MELD 3.0 (OPTN 2023)",
     ("bilirubin", "creatinine", "inr", "sodium", "albumin", "sex", "age"), 0),
    ("child_pugh_points", "Child-Pugh",
     ("bilirubin", "albumin", "inr", "ascites", "encephalopathy"), 0),
    ("albi", "ALBI", ("bilirubin", "albumin"), 2),
)
_COLUMN = {"bilirubin": "bilirubin_umol_l", "creatinine": "creatinine_umol_l",
           "albumin": "albumin_g_l", "inr": "inr", "sodium": "sodium_mmol_l"}


def canonical(analyte: str, value: Any, unit: str) -> float | None:
    """The value in the analyte's canonical unit, or None when it is not a number, the unit
    is not accepted or the value is outside the hard limits (the store refuses it)."""
    from hepatrial.protocol import analytes

    text = str(value if value is not None else "").strip()
    if not text:
        return None
    try:
        return analytes.to_canonical(analyte, float(text), unit)
    except (ValueError, TypeError):
        return None


def live_scores(labs: Mapping[str, float], *, sex: str | None, age: float | None,
                dialysis: bool, ascites: str | None, encephalopathy: str | None
                ) -> list[dict[str, Any]]:
    """Each score of :data:`SCORE_ROWS`: ``{code, label, value, text, grade, needs}`` - the
    value when its inputs are present, else the inputs it still ``needs``."""
    import numpy as np

    from hepatrial.scores import score_columns

    have: dict[str, Any] = {k: v for k, v in labs.items() if v is not None}
    data: dict[str, Any] = {_COLUMN[k]: np.array([float(v)]) for k, v in have.items()
                            if k in _COLUMN}
    present = set(have)
    data["dialysis"] = np.array(["true" if dialysis else "false"], dtype=object)
    if sex:
        data["sex"] = np.array([sex], dtype=object)
        present.add("sex")
    if age is not None and math.isfinite(age):
        data["age"] = np.array([float(age)])
        present.add("age")
    for name, v in (("ascites", ascites), ("encephalopathy", encephalopathy)):
        if v:
            data[name] = np.array([v], dtype=object)
            present.add(name)
    got = score_columns(data, errors="coerce")
    out = []
    for code, label, needs, decimals in SCORE_ROWS:
        missing = [n for n in needs if n not in present]
        value = None
        if not missing and code in got:
            x = float(np.asarray(got[code], dtype=float)[0])
            value = x if math.isfinite(x) else None
        grade = ""
        if value is not None and code == "child_pugh_points":
            grade = f"class {np.asarray(got['child_pugh_class'], dtype=object)[0]}"
        elif value is not None and code == "albi":
            grade = f"grade {int(np.asarray(got['albi_grade'], dtype=float)[0])}"
        text = "" if value is None else f"{value:.{decimals}f}"
        out.append({"code": code, "label": label, "value": value, "text": text, "grade": grade,
                    "needs": missing})
    return out
