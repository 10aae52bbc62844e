"""United Kingdom Model for End-Stage Liver Disease (UKELD).

Barber K et al. Elective liver transplant list mortality: development of a United Kingdom
end-stage liver disease score. Transplantation 2011;92:469-476 (used by NHS Blood and
Transplant for listing; threshold UKELD ≥ 49).

``UKELD = 5.395·ln(INR) + 1.485·ln(creatinine µmol/L) + 3.13·ln(bilirubin µmol/L)
− 81.565·ln(sodium mmol/L) + 435`` — defined in SI units.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from hepatrial.scores import units as _units
from hepatrial.scores._core import (
    Errors,
    Units,
    broadcast,
    check_choice,
    check_errors,
    finish,
    lab,
    round_half_away,
)

UkeldVariant = Literal["barber2011", "nhsbt"]
UKELD_VARIANTS: tuple[str, ...] = ("barber2011", "nhsbt")


def ukeld(
    bilirubin: Any,
    creatinine: Any,
    inr: Any,
    sodium: Any,
    *,
    variant: UkeldVariant = "barber2011",
    units: Units = "si",
    errors: Errors = "raise",
) -> Any:
    """UKELD.

    Variants:

    ``"barber2011"``
        The published formula, continuous, no bounds (none are stated in the primary text).
    ``"nhsbt"``
        Implementation practice of the NHSBT-derived Transplant Benefit Score app
        (SurgicalInformatics/transplantbenefit ``server1_3.R``): bilirubin (µmol/L) and INR
        below 1 set to 1, creatinine bounded to 1–400 µmol/L, sodium unbounded, rounded to an
        integer (halves away from zero).

    ``units="si"`` (default, the defining units): µmol/L; ``"conventional"``: mg/dL, converted
    first. Sodium mmol/L.
    """
    check_errors(errors)
    check_choice(variant, UKELD_VARIANTS, "UKELD variant")
    check_choice(units, ("conventional", "si"), "units")
    b = _units.to_si("bilirubin", lab(bilirubin, "bilirubin", errors), units)
    c = _units.to_si("creatinine", lab(creatinine, "creatinine", errors), units)
    i = lab(inr, "inr", errors)
    na = lab(sodium, "sodium", errors)
    b, c, i, na = broadcast(b, c, i, na)
    if variant == "nhsbt":
        b = np.maximum(b, 1.0)
        i = np.maximum(i, 1.0)
        c = np.clip(c, 1.0, 400.0)
    raw = 5.395 * np.log(i) + 1.485 * np.log(c) + 3.13 * np.log(b) - 81.565 * np.log(na) + 435.0
    if variant == "nhsbt":
        raw = round_half_away(raw)
    return finish(raw)
