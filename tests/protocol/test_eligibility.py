"""Eligibility criteria evaluated on screening data."""

from __future__ import annotations

import pytest

from hepatrial.protocol import Check, Criterion, load_protocol

KH = load_protocol("kharaziha2009")
ELIGIBLE = {
    "cirrhosis": True,
    "bilirubin": 46.0,  # umol/L
    "creatinine": 114.0,  # umol/L
    "inr": 1.9,
    "age": 55,
    "etiology": "HBV",
    "portal_vein_patent": True,
    "informed_consent": True,
    "hcc": False,
    "active_infection": False,
    "pregnant": False,
}


def _crit(cid: str) -> Criterion:
    return next(c for c in KH.eligibility if c.id == cid)


def _scores_available() -> bool:
    try:
        from hepatrial.scores import meld  # noqa: F401
    except ImportError:
        return False
    return True


needs_scores = pytest.mark.skipif(not _scores_available(), reason="hepatrial.scores not importable")


@needs_scores
@pytest.mark.parametrize(
    ("inr", "expected_meld", "met"),
    [
        # creatinine 1 mg/dL (88.4 umol/L), bilirubin 1 mg/dL (17.1 umol/L):
        # MELD = round(11.2 ln INR + 6.43): INR 1 -> 6, 1.3 -> 9 (9.37), 1.4 -> 10 (10.20)
        (1.0, 6.0, False),
        (1.3, 9.0, False),
        (1.4, 10.0, True),
    ],
)
def test_meld_boundary_computed_with_named_variant(
    inr: float, expected_meld: float, met: bool
) -> None:
    r = _crit("INC-MELD").evaluate({"bilirubin": 17.1, "creatinine": 88.4, "inr": inr})
    assert r.value_used == expected_meld
    assert r.met is met
    assert r.passes is met
    assert "optn2002" in r.reason


def test_meld_precomputed_by_variant_name() -> None:
    c = _crit("INC-MELD")
    assert c.evaluate({"meld_optn2002": 9}).met is False
    assert c.evaluate({"meld_optn2002": 10}).met is True
    # a bare 'meld' does not say which variant it is and is not used
    r = c.evaluate({"meld": 25})
    assert r.met is None
    assert "missing bilirubin, creatinine, inr" in r.reason


@needs_scores
def test_meld_dialysis_sets_creatinine_to_cap() -> None:
    # dialysis: creatinine 4 mg/dL -> 9.57 ln 4 + 6.43 = 19.70 -> 20
    r = _crit("INC-MELD").evaluate(
        {"bilirubin": 17.1, "creatinine": 88.4, "inr": 1.0, "dialysis": True}
    )
    assert r.value_used == 20.0


def test_missing_field_is_undecided() -> None:
    r = _crit("INC-PORTAL").evaluate({})
    assert r.met is None
    assert r.passes is None
    assert "portal_vein_patent missing" in r.reason
    assert _crit("INC-AGE").evaluate({"age": float("nan")}).met is None


@pytest.mark.parametrize(("age", "met"), [(17.9, False), (18, True), (70, True), (70.1, False)])
def test_age_between_inclusive(age: float, met: bool) -> None:
    assert _crit("INC-AGE").evaluate({"age": age}).met is met


def test_etiology_in() -> None:
    c = _crit("INC-ETIOLOGY")
    assert c.evaluate({"etiology": "HCV"}).met is True
    assert c.evaluate({"etiology": "PBC"}).met is False


def test_exclusion_semantics() -> None:
    r = _crit("EXC-HCC").evaluate({"hcc": True})
    assert r.met is True  # the condition holds ...
    assert r.passes is False  # ... so the participant is excluded
    assert _crit("EXC-HCC").evaluate({"hcc": False}).passes is True


@needs_scores
def test_screen_whole_protocol() -> None:
    res = KH.screen(ELIGIBLE)
    assert res.eligible is True
    assert res.failed == ()
    res = KH.screen({**ELIGIBLE, "hcc": True, "age": 71})
    assert res.eligible is False
    assert {r.criterion_id for r in res.failed} == {"EXC-HCC", "INC-AGE"}
    res = KH.screen({k: v for k, v in ELIGIBLE.items() if k != "pregnant"})
    assert res.eligible is None
    assert [r.criterion_id for r in res.undecided] == ["EXC-PREGNANCY"]


def test_threshold_in_other_unit() -> None:
    c = Check(field="bilirubin", op="<=", value=5, unit="mg/dL")  # 85.5 umol/L
    assert c.threshold() == pytest.approx(85.5)
    assert c.compare(85.5) is True
    assert c.compare(86.0) is False


@pytest.mark.parametrize(
    "bad",
    [
        {"field": "age", "op": ">=", "value": "old"},
        {"field": "age", "op": "in", "value": 3},
        {"field": "age", "op": "between", "value": [65, 18]},
        {"field": "meld", "op": ">=", "value": 10},  # no variant
        {"field": "age", "op": ">=", "value": 18, "variant": "optn2002"},
        {"field": "bilirubin", "op": "<=", "value": 5, "unit": "mmol/L"},
        {"field": "age", "op": "~", "value": 18},
    ],
)
def test_invalid_checks_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        Check.model_validate(bad)


def test_incomparable_value_is_undecided() -> None:
    r = _crit("INC-AGE").evaluate({"age": "unknown"})
    assert r.met is None
    assert "cannot compare" in r.reason
