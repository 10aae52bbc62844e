"""Analyte registry: units, conversion factors, LOINC codes, ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hepatrial.protocol import analytes as an


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected"),
    [
        ("bilirubin", 1.0, "mg/dL", 17.1),
        ("bilirubin", 2.5, "mg/dL", 42.75),
        ("bilirubin", 46.0, "µmol/L", 46.0),
        ("bilirubin", 46.0, "umol/l", 46.0),
        ("creatinine", 1.0, "mg/dL", 88.4),
        ("creatinine", 1.3, "mg/dl", 114.92),
        ("albumin", 3.0, "g/dL", 30.0),
        ("albumin", 33.0, "g/L", 33.0),
        ("platelets", 190.0, "10^3/uL", 190.0),
        ("platelets", 190.0, "10^3/µL", 190.0),
        ("platelets", 190.0, "x10^9/L", 190.0),
        ("cholesterol", 386.7, "mg/dL", 10.0),
        ("cholesterol", 261.0, "mg/dL", 261.0 / 38.67),
        ("inr", 1.9, "1", 1.9),
        ("sodium", 135.0, "mEq/L", 135.0),
        ("ast", 2.0, "ukat/L", 120.0),
        ("prothrombin_time", 12.2, "s", 12.2),
        ("weight", 100.0, "lb", 45.359237),
    ],
)
def test_to_canonical_factors(code: str, value: float, unit: str, expected: float) -> None:
    assert an.to_canonical(code, value, unit) == pytest.approx(expected, rel=1e-12)


def test_canonical_units_match_contract() -> None:
    # docs/contracts.md §1 canonical units
    expected = {
        "bilirubin": "umol/L",
        "creatinine": "umol/L",
        "albumin": "g/L",
        "inr": "1",
        "sodium": "mmol/L",
        "ast": "U/L",
        "alt": "U/L",
        "platelets": "10^9/L",
        "weight": "kg",
        "alk_phos": "U/L",
        "cholesterol": "mmol/L",
        "prothrombin_time": "s",
    }
    assert {a.code: a.unit for a in an.list_analytes()} == expected
    assert an.canonical_unit("meld_optn2002") == "points"


def test_loinc_codes() -> None:
    loinc = {a.code: a.loinc for a in an.list_analytes()}
    assert loinc == {
        "bilirubin": "1975-2",
        "creatinine": "2160-0",
        "albumin": "1751-7",
        "inr": "6301-6",
        "sodium": "2951-2",
        "ast": "1920-8",
        "alt": "1742-6",
        "platelets": "777-3",
        "alk_phos": "6768-6",
        "cholesterol": "2093-3",
        "prothrombin_time": "5902-2",
        "weight": "29463-7",
    }


def test_unknown_analyte_names_known_codes() -> None:
    with pytest.raises(an.UnknownAnalyteError, match=r"unknown analyte 'bili'.*bilirubin"):
        an.analyte("bili")
    with pytest.raises(ValueError):  # also a ValueError for callers catching broadly
        an.to_canonical("bili", 1.0, "mg/dL")


def test_unknown_unit_lists_accepted_units() -> None:
    with pytest.raises(an.UnitError, match=r"bilirubin: unit 'mmol/L' is not accepted.*mg/dL"):
        an.to_canonical("bilirubin", 1.0, "mmol/L")
    # the pbcseq label U/mL is deliberately not accepted for AST (it would mean x1000)
    with pytest.raises(an.UnitError):
        an.to_canonical("ast", 100.0, "U/mL")


def test_out_of_range_rejected_with_reason() -> None:
    # bilirubin 46 "mg/dL" is really 46 umol/L entered with the wrong unit -> 786.6, plausible,
    # but 100 mg/dL (1710 umol/L) is not
    with pytest.raises(an.RangeError, match=r"1710 umol/L is outside the plausible range 0-1500"):
        an.to_canonical("bilirubin", 100.0, "mg/dL")
    # albumin entered as g/L but labelled g/dL
    with pytest.raises(an.RangeError, match="albumin"):
        an.to_canonical("albumin", 33.0, "g/dL")
    with pytest.raises(an.RangeError):
        an.to_canonical("inr", 0.1, "1")
    # the check can be switched off
    assert an.to_canonical("albumin", 33.0, "g/dL", check=False) == 330.0


def test_limits_are_inclusive() -> None:
    lo, hi = an.analyte("albumin").limits
    assert an.to_canonical("albumin", lo, "g/L") == lo
    assert an.to_canonical("albumin", hi, "g/L") == hi
    with pytest.raises(an.RangeError):
        an.to_canonical("albumin", math.nextafter(hi, 1e9), "g/L")


@pytest.mark.parametrize("bad", [None, float("nan"), "abc", True, float("inf")])
def test_scalar_missing_or_non_numeric(bad: object) -> None:
    with pytest.raises(an.AnalyteError, match="creatinine"):
        an.to_canonical("creatinine", bad, "mg/dL")  # type: ignore[arg-type]


def test_vectorised_conversion_keeps_nan() -> None:
    out = an.to_canonical_array("bilirubin", [1.0, np.nan, 2.0], "mg/dL")
    assert out[0] == pytest.approx(17.1)
    assert math.isnan(out[1])
    assert out[2] == pytest.approx(34.2)


def test_vectorised_range_error_names_positions() -> None:
    with pytest.raises(an.RangeError, match=r"2 value\(s\).*\[1\]=200.*\[3\]=300"):
        an.to_canonical_array("bilirubin", np.array([1.0, 200.0, 2.0, 300.0]), "mg/dL")


def test_range_flag() -> None:
    assert an.range_flag("albumin", 35.0) == "ok"
    assert an.range_flag("albumin", 8.0) == "low"
    assert an.range_flag("albumin", 80.1) == "high"  # pbcseq has 8.01 g/dL
    assert an.range_flag("albumin", 120.0) == "implausible"


def test_unit_normalisation() -> None:
    assert an.normalise_unit(" µmol / L ") == "umol/l"
    assert an.normalise_unit("μmol/L") == "umol/l"  # Greek mu
    assert an.normalise_unit("10E9/L") == an.normalise_unit("10^9/L")
    assert an.normalise_unit("x10^3/uL") == "10^3/ul"
