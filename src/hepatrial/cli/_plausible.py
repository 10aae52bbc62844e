"""The analyte registry's hard limits and units for the file commands (``score``, ``grade``).

One plausibility table: the limits are those of :mod:`hepatrial.protocol.analytes` (the same
the store, the importers and the forms apply). ``hepatrial score`` must not pay for the
``hepatrial.protocol`` package (its ``__init__`` imports the pydantic models and, through
``protocol.safety``, scipy: ~1.2 s, against ~5 ms for the registry file alone) to read a table
of numbers, so when that package is not loaded yet :func:`registry` executes
``protocol/analytes.py`` - which imports only numpy and :mod:`hepatrial.errors` - as a private
module. When the package is loaded (tests, the store), its own module is used. Either way the
numbers come from that one file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["SCORE_INPUT_ANALYTES", "TERM_ANALYTES", "limit_reasons", "registry"]

_PRIVATE = "hepatrial.cli._analyte_registry"

#: ``hepatrial score`` input column -> (analyte code, unit the column is written in)
SCORE_INPUT_ANALYTES: dict[str, tuple[str, str]] = {
    "bilirubin_mg_dl": ("bilirubin", "mg/dL"),
    "bilirubin_umol_l": ("bilirubin", "umol/L"),
    "creatinine_mg_dl": ("creatinine", "mg/dL"),
    "creatinine_umol_l": ("creatinine", "umol/L"),
    "albumin_g_dl": ("albumin", "g/dL"),
    "albumin_g_l": ("albumin", "g/L"),
    "inr": ("inr", "1"),
    "sodium_mmol_l": ("sodium", "mmol/L"),
    "ast_u_l": ("ast", "U/L"),
    "alt_u_l": ("alt", "U/L"),
    "ast_uln_u_l": ("ast", "U/L"),
    "platelets_10e9_l": ("platelets", "10^9/L"),
}

#: CTCAE v5.0 term graded by ``hepatrial grade`` -> analyte code of the registry
TERM_ANALYTES: dict[str, str] = {
    "Blood bilirubin increased": "bilirubin",
    "Alanine aminotransferase increased": "alt",
    "Aspartate aminotransferase increased": "ast",
    "INR increased": "inr",
    "Creatinine increased": "creatinine",
    "Hypoalbuminemia": "albumin",
    "Platelet count decreased": "platelets",
}


def registry() -> ModuleType:
    """The analyte registry module (see the module docstring)."""
    # the package's own module is in sys.modules as soon as the package is (its __init__
    # imports it first)
    for name in ("hepatrial.protocol.analytes", _PRIVATE):
        mod = sys.modules.get(name)
        if mod is not None:
            return mod
    path = Path(__file__).resolve().parents[1] / "protocol" / "analytes.py"
    spec = importlib.util.spec_from_file_location(_PRIVATE, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[_PRIVATE] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def limit_reasons(code: str, unit: str | None, values: np.ndarray) -> tuple[np.ndarray, Any]:
    """Values outside the hard limits of analyte ``code`` (registry), given in ``unit``.

    ``unit=None`` (not known): a value is refused when it lies outside the limits in every
    unit the analyte accepts. Returns ``(bad mask, reason(i))``; NaN values are not judged.
    """
    reg = registry()
    a = reg.analyte(code)
    lo, hi = a.limits
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        if unit is not None:
            f = a.factor(unit)
            canon = v * f
            bad = (canon < lo) | (canon > hi)
        else:
            factors = np.array(sorted(set(a.units.values())), dtype=np.float64)
            bad = np.ones(v.shape, dtype=bool)
            for f in factors:
                bad &= (v * f < lo) | (v * f > hi)
    bad &= ~np.isnan(v)

    def reason(i: int) -> str:
        x = float(v[i])
        if unit is not None:
            given = f"{x:g} {unit}" if f == 1 else f"{x:g} {unit} = {x * f:g} {a.unit}"
            return (f"is outside the plausible {lo:g}-{hi:g} {a.unit} for {code} ({given}; "
                    "hard limit of the analyte registry: wrong unit or a typing error?)")
        return (f"is outside the plausible {lo:g}-{hi:g} {a.unit} for {code} in every unit it "
                f"can be given in ({', '.join(a.units)})")

    return bad, reason
