"""MELD, MELD-Na and MELD 3.0.

"MELD" means several incompatible things in the literature; every function here takes a
``variant=`` naming the definition, and the variant names are part of the public API and of
the CLI's output columns (``meld_<variant>``).

Sources (see ``docs/scores.md`` for the full list and the points where they disagree):

* Kamath PS et al. A model to predict survival in patients with end-stage liver disease.
  Hepatology 2001;33:464-470.
* OPTN/UNOS Policy 9.1.D (MELD from February 2002; MELD-Na from January 2016), as quoted in
  MIT-LCP mimic-code ``meld.sql`` and the CU-Anschutz SAS macro ``meld.sas``.
* Kim WR et al. Hyponatremia and mortality among patients on the liver-transplant waiting
  list. N Engl J Med 2008;359:1018-1026.
* Kim WR et al. MELD 3.0: the Model for End-Stage Liver Disease updated for the modern era.
  Gastroenterology 2021;161:1887-1895.e4; OPTN policy notice "Improving Liver Allocation:
  MELD, PELD, Status 1A and Status 1B" (in force 13 July 2023).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from hepatrial.scores import units as _units
from hepatrial.scores._core import (
    Errors,
    FloatArray,
    Units,
    broadcast,
    category,
    check_choice,
    check_errors,
    finish,
    flag,
    lab,
    round_half_away,
)

MeldVariant = Literal["kamath2001", "continuous", "optn2002"]
MeldNaVariant = Literal["kim2008", "optn2016"]
Meld3Variant = Literal["optn2023"]

MELD_VARIANTS: tuple[str, ...] = ("kamath2001", "continuous", "optn2002")
MELD_NA_VARIANTS: tuple[str, ...] = ("kim2008", "optn2016")
MELD3_VARIANTS: tuple[str, ...] = ("optn2023",)

#: MELD score range under OPTN policy.
OPTN_MIN, OPTN_MAX = 6.0, 40.0

SEX_FEMALE = {"f": 1.0, "female": 1.0, "w": 1.0, "woman": 1.0, "m": 0.0, "male": 0.0, "man": 0.0}


def _meld_labs(
    bilirubin: Any, creatinine: Any, inr: Any, units: str, errors: Errors
) -> tuple[FloatArray, FloatArray, FloatArray]:
    check_errors(errors)
    check_choice(units, ("conventional", "si"), "units")
    b = _units.to_conventional("bilirubin", lab(bilirubin, "bilirubin", errors), units)
    c = _units.to_conventional("creatinine", lab(creatinine, "creatinine", errors), units)
    i = lab(inr, "inr", errors)
    return b, c, i


def _dialysis_override(c: FloatArray, d: FloatArray, cap: float) -> FloatArray:
    """Creatinine set to ``cap`` where dialysed; NaN where the dialysis flag is missing."""
    c = np.where(d == 1.0, cap, c)
    if np.isnan(d).any():
        c = np.where(np.isnan(d), np.nan, c)
    return c


def _optn_meld_raw(b: FloatArray, c: FloatArray, i: FloatArray, d: FloatArray) -> FloatArray:
    """10·R with the OPTN floors (1.0), creatinine cap (4.0) and dialysis rule, unrounded."""
    c = np.minimum(np.maximum(c, 1.0), 4.0)
    # dialysis overrides the floor and the measured value; NaN dialysis keeps NaN
    c = _dialysis_override(c, d, 4.0)
    b = np.maximum(b, 1.0)
    i = np.maximum(i, 1.0)
    return 9.57 * np.log(c) + 3.78 * np.log(b) + 11.2 * np.log(i) + 6.43


def meld(
    bilirubin: Any,
    creatinine: Any,
    inr: Any,
    *,
    dialysis: Any = False,
    variant: MeldVariant = "optn2002",
    units: Units = "conventional",
    errors: Errors = "raise",
) -> Any:
    """Model for End-Stage Liver Disease (MELD), without sodium.

    ``R = 0.957·ln(creatinine mg/dL) + 0.378·ln(bilirubin mg/dL) + 1.120·ln(INR) + 0.643``
    (Kamath et al., Hepatology 2001;33:464), reported as ``10·R``.

    Variants:

    ``"kamath2001"``
        The published regression ``10·R``: continuous, no floors, no caps, no dialysis rule
        (``dialysis`` is ignored). Values below 1 give negative log terms.
    ``"continuous"``
        ``10·R`` with the OPTN/UNOS input rules (Policy 9.1.D): bilirubin, creatinine and INR
        below 1.0 are set to 1.0; creatinine above 4.0 is set to 4.0; two or more dialyses or
        24 h of CVVHD in the prior week set creatinine to 4.0 whatever was measured. Not
        rounded and not capped (minimum 6.43).
    ``"optn2002"``
        The OPTN/UNOS allocation MELD used February 2002 – January 2016: the ``continuous``
        value rounded to the tenth of ``R`` and multiplied by 10 (= ``10·R`` rounded to an
        integer, halves away from zero), bounded to 6–40.

    Parameters
    ----------
    bilirubin, creatinine, inr:
        Total bilirubin, serum creatinine and INR; mg/dL (``units="conventional"``) or µmol/L
        (``units="si"``). Conversion (``hepatrial.scores.units``) happens before the floors.
    dialysis:
        True when the patient had ≥ 2 dialyses or 24 h of CVVHD in the prior week.
    errors:
        ``"raise"`` (default): an impossible input (≤ 0, infinite, not a number) raises
        :class:`~hepatrial.scores.ScoreInputError` naming the input, row and value;
        ``"coerce"``: that row gives NaN. Missing inputs always give NaN.

    Returns
    -------
    float64 array of the broadcast shape (a numpy scalar for scalar inputs).
    """
    check_choice(variant, MELD_VARIANTS, "MELD variant")
    b, c, i = _meld_labs(bilirubin, creatinine, inr, units, errors)
    if variant == "kamath2001":
        b, c, i = broadcast(b, c, i)
        return finish(9.57 * np.log(c) + 3.78 * np.log(b) + 11.2 * np.log(i) + 6.43)
    d = flag(dialysis, "dialysis", errors)
    b, c, i, d = broadcast(b, c, i, d)
    raw = _optn_meld_raw(b, c, i, d)
    if variant == "continuous":
        return finish(raw)
    return finish(np.clip(round_half_away(raw), OPTN_MIN, OPTN_MAX))


def meld_na(
    bilirubin: Any,
    creatinine: Any,
    inr: Any,
    sodium: Any,
    *,
    dialysis: Any = False,
    variant: MeldNaVariant = "optn2016",
    units: Units = "conventional",
    errors: Errors = "raise",
) -> Any:
    """MELD with serum sodium.

    Variants:

    ``"kim2008"``
        Kim et al., N Engl J Med 2008;359:1018:
        ``MELD-Na = MELD − Na − 0.025·MELD·(140 − Na) + 140`` with sodium bounded to
        125–140 mmol/L, no MELD > 11 gate, continuous. ``MELD`` is the ``"continuous"`` MELD
        (OPTN floors, creatinine cap 4, dialysis rule, not rounded).
    ``"optn2016"``
        OPTN/UNOS Policy 9.1.D, January 2016 – 12 July 2023: MELD(i) is the integer
        ``"optn2002"`` MELD; if MELD(i) > 11 (strictly),
        ``MELD = MELD(i) + 1.32·(137 − Na) − 0.033·MELD(i)·(137 − Na)`` with sodium bounded
        to 125–137; otherwise MELD(i). The result is rounded (halves away from zero) and
        bounded to 6–40.

    Sodium in mmol/L (= mEq/L). Other parameters as in :func:`meld`.
    """
    check_choice(variant, MELD_NA_VARIANTS, "MELD-Na variant")
    na = lab(sodium, "sodium", errors)
    if variant == "kim2008":
        m = np.asarray(
            meld(
                bilirubin,
                creatinine,
                inr,
                dialysis=dialysis,
                variant="continuous",
                units=units,
                errors=errors,
            ),
            dtype=np.float64,
        )
        m, na = broadcast(m, na)
        na = np.clip(na, 125.0, 140.0)
        return finish(m - na - 0.025 * m * (140.0 - na) + 140.0)
    mi = np.asarray(
        meld(
            bilirubin,
            creatinine,
            inr,
            dialysis=dialysis,
            variant="optn2002",
            units=units,
            errors=errors,
        ),
        dtype=np.float64,
    )
    mi, na = broadcast(mi, na)
    d = 137.0 - np.clip(na, 125.0, 137.0)
    adjusted = mi + 1.32 * d - 0.033 * mi * d
    out = np.where(mi > 11.0, adjusted, mi)
    out = np.where(np.isnan(mi) | np.isnan(na), np.nan, out)
    return finish(np.clip(round_half_away(out), OPTN_MIN, OPTN_MAX))


def meld3(
    bilirubin: Any,
    creatinine: Any,
    inr: Any,
    sodium: Any,
    albumin: Any,
    sex: Any,
    *,
    age_at_registration: Any,
    dialysis: Any = False,
    variant: Meld3Variant = "optn2023",
    units: Units = "conventional",
    errors: Errors = "raise",
) -> Any:
    """MELD 3.0 (Kim et al., Gastroenterology 2021;161:1887; OPTN policy from 13 July 2023).

    ::

        MELD 3.0 = 1.33·(female) + 4.56·ln(bili) + 0.82·(137 − Na) − 0.24·(137 − Na)·ln(bili)
                 + 9.09·ln(INR) + 11.14·ln(Cr) + 1.85·(3.5 − alb) − 1.83·(3.5 − alb)·ln(Cr) + 6

    Units mg/dL, mmol/L, g/dL. Variant ``"optn2023"`` (the OPTN allocation rule):

    * bilirubin, INR and creatinine below 1.0 are set to 1.0; creatinine above 3.0 is set
      to 3.0; ≥ 2 dialyses or 24 h CVVHD in the prior week set creatinine to 3.0;
    * sodium bounded to 125–137 mmol/L; albumin bounded to 1.5–3.5 g/dL;
    * candidates registered before age 18 (including those registered before 12 who aged
      into MELD) use intercept 7.33 and no sex term (OPTN policy; the SAS macro keys this on
      age at listing); for them ``sex`` may be missing;
    * the unrounded sum is rounded to the nearest integer (halves away from zero) and
      bounded to 6–40 (OPTN caps at 40; the derivation paper sets no maximum).

    Parameters
    ----------
    sex:
        ``"F"``/``"female"`` or ``"M"``/``"male"`` (case-insensitive); missing gives NaN for
        adult registrants.
    age_at_registration:
        Age in years when the candidate was registered (listed); for a trial, the age at
        screening. Required: the under-18 rule changes the intercept.
    Other parameters as in :func:`meld`.
    """
    check_choice(variant, MELD3_VARIANTS, "MELD 3.0 variant")
    b, c, i = _meld_labs(bilirubin, creatinine, inr, units, errors)
    na = lab(sodium, "sodium", errors)
    alb = _units.to_conventional("albumin", lab(albumin, "albumin", errors), units)
    female = category(sex, SEX_FEMALE, "sex", errors)
    age = lab(age_at_registration, "age_at_registration", errors, positive=False)
    d = flag(dialysis, "dialysis", errors)
    b, c, i, na, alb, female, age, d = broadcast(b, c, i, na, alb, female, age, d)
    c = np.minimum(np.maximum(c, 1.0), 3.0)
    c = _dialysis_override(c, d, 3.0)
    b = np.maximum(b, 1.0)
    i = np.maximum(i, 1.0)
    na = np.clip(na, 125.0, 137.0)
    alb = np.clip(alb, 1.5, 3.5)
    lb, lc = np.log(b), np.log(c)
    core = (
        4.56 * lb
        + 0.82 * (137.0 - na)
        - 0.24 * (137.0 - na) * lb
        + 9.09 * np.log(i)
        + 11.14 * lc
        + 1.85 * (3.5 - alb)
        - 1.83 * (3.5 - alb) * lc
    )
    paediatric = age < 18.0
    intercept = np.where(paediatric, 7.33, 6.0 + 1.33 * female)
    intercept = np.where(np.isnan(age), np.nan, intercept)
    return finish(np.clip(round_half_away(core + intercept), OPTN_MIN, OPTN_MAX))


MeldXiVariant = Literal["heuman2007", "heuman2007_continuous"]
MELD_XI_VARIANTS: tuple[str, ...] = ("heuman2007", "heuman2007_continuous")


def meld_xi(
    bilirubin: Any,
    creatinine: Any,
    *,
    dialysis: Any = False,
    variant: MeldXiVariant = "heuman2007",
    units: Units = "conventional",
    errors: Errors = "raise",
) -> Any:
    """MELD excluding INR (MELD-XI), for patients on oral anticoagulants.

    Heuman DM et al. MELD-XI: a rational approach to "sickest first" liver transplantation in
    cirrhotic patients requiring anticoagulant therapy. Liver Transpl 2007;13:30-37.

    ``MELD-XI = 5.11·ln(bilirubin mg/dL) + 11.76·ln(creatinine mg/dL) + 9.44`` with bilirubin
    and creatinine below 1 set to 1 and creatinine above 4 set to 4 (medicalalgorithms.com
    MELD-XI page); ``dialysis`` sets creatinine to 4. That page defines dialysis as "3 or more
    times in the preceding week" where MELD uses ≥ 2; hepatrial applies the flag as given.

    Variants: ``"heuman2007"`` rounded to an integer (halves away from zero; minimum 9);
    ``"heuman2007_continuous"`` unrounded (minimum 9.44).
    """
    check_choice(variant, MELD_XI_VARIANTS, "MELD-XI variant")
    check_errors(errors)
    check_choice(units, ("conventional", "si"), "units")
    b = _units.to_conventional("bilirubin", lab(bilirubin, "bilirubin", errors), units)
    c = _units.to_conventional("creatinine", lab(creatinine, "creatinine", errors), units)
    d = flag(dialysis, "dialysis", errors)
    b, c, d = broadcast(b, c, d)
    c = np.minimum(np.maximum(c, 1.0), 4.0)
    c = _dialysis_override(c, d, 4.0)
    raw = 5.11 * np.log(np.maximum(b, 1.0)) + 11.76 * np.log(c) + 9.44
    if variant == "heuman2007":
        raw = round_half_away(raw)
    return finish(raw)
