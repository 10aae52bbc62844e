"""ALBI (albumin-bilirubin) score and grade.

Johnson PJ et al. Assessment of liver function in patients with hepatocellular carcinoma: a
new evidence-based approach — the ALBI grade. J Clin Oncol 2015;33:550-558.

``ALBI = 0.66·log10(bilirubin µmol/L) − 0.085·(albumin g/L)``; grade 1 ≤ −2.60,
grade 2 > −2.60 to ≤ −1.39, grade 3 > −1.39. The coefficient is −0.085 as published (some
code uses −0.0852, which moves e.g. bilirubin 32 µmol/L, albumin 28 g/L from grade 3 to 2).
The grade is computed from the unrounded score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepatrial.scores import units as _units
from hepatrial.scores._core import Errors, Units, broadcast, check_choice, check_errors, finish, lab

GRADE_1_MAX = -2.60
GRADE_2_MAX = -1.39


def albi(bilirubin: Any, albumin: Any, *, units: Units = "si", errors: Errors = "raise") -> Any:
    """ALBI score (Johnson 2015), continuous, unrounded.

    ``units="si"`` (default, the defining units): bilirubin µmol/L, albumin g/L;
    ``units="conventional"``: mg/dL and g/dL, converted first (× 17.1, × 10).
    """
    check_errors(errors)
    check_choice(units, ("conventional", "si"), "units")
    b = _units.to_si("bilirubin", lab(bilirubin, "bilirubin", errors), units)
    a = _units.to_si("albumin", lab(albumin, "albumin", errors), units)
    b, a = broadcast(b, a)
    return finish(0.66 * np.log10(b) - 0.085 * a)


def albi_grade(score: Any) -> Any:
    """ALBI grade 1 (≤ −2.60), 2 (≤ −1.39) or 3 (> −1.39) from the unrounded score.

    NaN stays NaN.
    """
    s = np.asarray(score, dtype=np.float64)
    g = np.where(s <= GRADE_1_MAX, 1.0, np.where(s <= GRADE_2_MAX, 2.0, 3.0))
    return finish(np.where(np.isnan(s), np.nan, g))
