"""Unit conversion for the score engine: the one place where conversion factors live.

The MELD family, PELD, Child-Pugh (US tables) and the Mayo PBC score are defined in
conventional units (mg/dL, g/dL); UKELD and ALBI in SI units (µmol/L, g/L). Every calculator
converts its inputs with these functions *before* applying floors and caps, because the floors
and caps are stated in the units of the defining source.

Factors (conventional → SI):

* bilirubin: µmol/L = mg/dL × 17.1 (molar mass 584.66 g/mol; as used by transplantr
  ``unit_conversion.R`` and the ALBI paper, Johnson et al., J Clin Oncol 2015;33:550).
* creatinine: µmol/L = mg/dL × 88.4 (molar mass 113.12 g/mol; transplantr, MedCalc-Bench).
  Some tools use 88.42; the difference is < 0.03 %.
* albumin: g/L = g/dL × 10.
* sodium: mmol/L = mEq/L (monovalent).
* platelets: 10⁹/L = 10³/µL.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepatrial.scores._core import FloatArray

BILIRUBIN_UMOL_PER_MG_DL = 17.1
CREATININE_UMOL_PER_MG_DL = 88.4
ALBUMIN_G_L_PER_G_DL = 10.0

#: analyte -> (conventional unit, SI unit, factor SI per conventional)
FACTORS: dict[str, tuple[str, str, float]] = {
    "bilirubin": ("mg/dL", "umol/L", BILIRUBIN_UMOL_PER_MG_DL),
    "creatinine": ("mg/dL", "umol/L", CREATININE_UMOL_PER_MG_DL),
    "albumin": ("g/dL", "g/L", ALBUMIN_G_L_PER_G_DL),
}


def bilirubin_to_mg_dl(umol_l: Any) -> FloatArray:
    """Bilirubin µmol/L → mg/dL (÷ 17.1)."""
    return np.asarray(umol_l, dtype=np.float64) / BILIRUBIN_UMOL_PER_MG_DL


def bilirubin_to_umol_l(mg_dl: Any) -> FloatArray:
    """Bilirubin mg/dL → µmol/L (× 17.1)."""
    return np.asarray(mg_dl, dtype=np.float64) * BILIRUBIN_UMOL_PER_MG_DL


def creatinine_to_mg_dl(umol_l: Any) -> FloatArray:
    """Creatinine µmol/L → mg/dL (÷ 88.4)."""
    return np.asarray(umol_l, dtype=np.float64) / CREATININE_UMOL_PER_MG_DL


def creatinine_to_umol_l(mg_dl: Any) -> FloatArray:
    """Creatinine mg/dL → µmol/L (× 88.4)."""
    return np.asarray(mg_dl, dtype=np.float64) * CREATININE_UMOL_PER_MG_DL


def albumin_to_g_dl(g_l: Any) -> FloatArray:
    """Albumin g/L → g/dL (÷ 10)."""
    return np.asarray(g_l, dtype=np.float64) / ALBUMIN_G_L_PER_G_DL


def albumin_to_g_l(g_dl: Any) -> FloatArray:
    """Albumin g/dL → g/L (× 10)."""
    return np.asarray(g_dl, dtype=np.float64) * ALBUMIN_G_L_PER_G_DL


def to_conventional(analyte: str, values: FloatArray, units: str) -> FloatArray:
    """Convert ``values`` of ``analyte`` in ``units`` ("conventional"|"si") to conventional."""
    if units == "conventional":
        return values
    return values / FACTORS[analyte][2]


def to_si(analyte: str, values: FloatArray, units: str) -> FloatArray:
    """Convert ``values`` of ``analyte`` given in ``units`` ("conventional"|"si") to SI."""
    if units == "si":
        return values
    return values * FACTORS[analyte][2]
