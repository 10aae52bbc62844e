"""Property and boundary tests of the score engine (hypothesis + hand-picked edges)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hepatrial import scores
from hepatrial.scores import ScoreInputError, round_half_away

lab_value = st.floats(min_value=0.05, max_value=80.0, allow_nan=False, allow_infinity=False)
inr_value = st.floats(min_value=0.5, max_value=12.0, allow_nan=False, allow_infinity=False)
sodium = st.floats(min_value=100.0, max_value=170.0, allow_nan=False)
albumin = st.floats(min_value=0.5, max_value=6.0, allow_nan=False)
factor = st.floats(min_value=1.0, max_value=3.0)
dialysis = st.booleans()
SETTINGS = settings(max_examples=300, deadline=None)


@SETTINGS
@given(b=lab_value, c=lab_value, i=inr_value, d=dialysis, k=factor, which=st.integers(0, 2))
def test_meld_monotone_in_each_lab(b, c, i, d, k, which) -> None:
    labs = [b, c, i]
    higher = list(labs)
    higher[which] *= k
    for variant in ("kamath2001", "continuous", "optn2002"):
        lo = scores.meld(*labs, dialysis=d, variant=variant)
        hi = scores.meld(*higher, dialysis=d, variant=variant)
        assert hi >= lo - 1e-12, (variant, labs, higher)


@SETTINGS
@given(b=lab_value, c=lab_value, i=inr_value, na=sodium, d=dialysis, k=factor,
       which=st.integers(0, 2), dna=st.floats(0, 30))
def test_meld_na_monotone(b, c, i, na, d, k, which, dna) -> None:
    labs = [b, c, i]
    higher = list(labs)
    higher[which] *= k
    for variant in ("kim2008", "optn2016"):
        base = scores.meld_na(*labs, na, dialysis=d, variant=variant)
        assert scores.meld_na(*higher, na, dialysis=d, variant=variant) >= base - 1e-12
        # lower sodium never lowers MELD-Na while MELD <= 40; in Kim's formula the sodium
        # slope is -1 + 0.025 MELD, which turns positive above MELD 40 (OPTN caps there)
        if variant == "optn2016" or scores.meld(*labs, dialysis=d, variant="continuous") <= 40:
            lower_na = scores.meld_na(*labs, na - dna, dialysis=d, variant=variant)
            assert lower_na >= base - 1e-12


@SETTINGS
@given(b=lab_value, c=lab_value, i=inr_value, na=sodium, alb=albumin, d=dialysis,
       female=st.booleans(), age=st.floats(0, 100), k=factor, which=st.integers(0, 2))
def test_meld3_monotone_in_bilirubin_creatinine_inr(b, c, i, na, alb, d, female, age, k,
                                                     which) -> None:
    labs = [b, c, i]
    higher = list(labs)
    higher[which] *= k
    sex = "F" if female else "M"
    lo = scores.meld3(*labs, na, alb, sex, age_at_registration=age, dialysis=d)
    hi = scores.meld3(*higher, na, alb, sex, age_at_registration=age, dialysis=d)
    assert hi >= lo


def test_meld3_is_not_monotone_in_albumin_at_high_creatinine() -> None:
    # d/d(alb) = -1.85 + 1.83 ln(Cr): positive once Cr > e^(1.85/1.83) = 2.748 mg/dL.
    # A property of the published formula, kept on purpose (Kim 2021).
    kw = dict(age_at_registration=50)
    low = scores.meld3(1, 3.0, 1, 137, 1.5, "M", **kw, variant="optn2023")
    high = scores.meld3(1, 3.0, 1, 137, 3.5, "M", **kw, variant="optn2023")
    assert high >= low  # not lower with more albumin at Cr 3 (continuous: +0.32)
    assert scores.meld3(1, 1.0, 1, 137, 1.5, "M", **kw) > scores.meld3(
        1, 1.0, 1, 137, 3.5, "M", **kw)


@SETTINGS
@given(b=lab_value, c=lab_value, i=inr_value, na=sodium, alb=albumin, d=dialysis,
       female=st.booleans(), age=st.floats(0, 100))
def test_integer_variants_within_6_40(b, c, i, na, alb, d, female, age) -> None:
    values = [
        scores.meld(b, c, i, dialysis=d, variant="optn2002"),
        scores.meld_na(b, c, i, na, dialysis=d, variant="optn2016"),
        scores.meld3(b, c, i, na, alb, "F" if female else "M", age_at_registration=age,
                     dialysis=d),
    ]
    for v in values:
        assert 6 <= v <= 40 and v == int(v)


@SETTINGS
@given(b=lab_value, c=lab_value, i=inr_value, na=sodium, alb=albumin, d=dialysis,
       age=st.floats(18, 90))
def test_si_and_conventional_give_identical_scores(b, c, i, na, alb, d, age) -> None:
    conv = scores.score_columns({
        "bilirubin_mg_dl": [b], "creatinine_mg_dl": [c], "albumin_g_dl": [alb], "inr": [i],
        "sodium_mmol_l": [na], "dialysis": [d], "sex": ["F"], "age": [age],
        "ascites": ["slight"], "encephalopathy": ["none"],
    })
    si = scores.score_columns({
        "bilirubin_umol_l": [b * 17.1], "creatinine_umol_l": [c * 88.4],
        "albumin_g_l": [alb * 10], "inr": [i], "sodium_mmol_l": [na], "dialysis": [d],
        "sex": ["F"], "age": [age], "ascites": ["slight"], "encephalopathy": ["none"],
    })
    assert list(conv) == list(si)
    for name in conv:
        if name == "child_pugh_class":
            assert conv[name][0] == si[name][0]
        else:
            assert si[name][0] == pytest.approx(conv[name][0], rel=1e-9, abs=1e-9), name


# --- boundaries on both sides -------------------------------------------------------------


def test_optn_floors_at_one() -> None:
    at = scores.meld(1.0, 1.0, 1.0, variant="optn2002")
    assert at == 6
    assert scores.meld(0.5, 0.3, 0.8, variant="optn2002") == at
    assert scores.meld(0.5, 0.3, 0.8, variant="continuous") == pytest.approx(6.43)
    assert scores.meld(0.5, 0.3, 0.8, variant="kamath2001") < 0  # no floors in the regression
    assert scores.meld(1.01, 1.0, 1.0, variant="continuous") > 6.43


def test_creatinine_cap_and_dialysis() -> None:
    cap = scores.meld(2.0, 4.0, 1.5, variant="optn2002")
    assert scores.meld(2.0, 9.9, 1.5, variant="optn2002") == cap
    assert scores.meld(2.0, 3.99, 1.5, variant="continuous") < scores.meld(
        2.0, 4.0, 1.5, variant="continuous")
    # dialysis overrides the floor: measured 0.5 counts as 4.0
    assert scores.meld(2.0, 0.5, 1.5, dialysis=True, variant="optn2002") == cap
    assert scores.meld(2.0, 0.5, 1.5, dialysis=False, variant="optn2002") < cap
    # MELD 3.0 caps at 3.0 and dialysis sets 3.0
    kw = dict(age_at_registration=40)
    m3 = scores.meld3(2.0, 3.0, 1.5, 137, 3.5, "M", **kw)
    assert scores.meld3(2.0, 4.0, 1.5, 137, 3.5, "M", **kw) == m3
    assert scores.meld3(2.0, 0.6, 1.5, 137, 3.5, "M", dialysis=True, **kw) == m3
    assert scores.meld3(2.0, 2.9, 1.5, 137, 3.5, "M", **kw) <= m3


def test_sodium_gate_is_strictly_above_11() -> None:
    # MELD(i) 11 (R = 1.097 -> 11): no sodium term even at Na 125
    assert scores.meld(1.0, 1.0, 1.5, variant="optn2002") == 11
    assert scores.meld_na(1.0, 1.0, 1.5, 125, variant="optn2016") == 11
    # MELD(i) 12: the sodium term applies
    inr12 = np.exp((12 - 6.43) / 11.2)
    assert scores.meld(1.0, 1.0, inr12, variant="optn2002") == 12
    assert scores.meld_na(1.0, 1.0, inr12, 125, variant="optn2016") > 12
    # Kim 2008 has no gate
    assert scores.meld_na(1.0, 1.0, 1.5, 125, variant="kim2008") > scores.meld(
        1.0, 1.0, 1.5, variant="continuous")


def test_sodium_bounds() -> None:
    for variant, low, high in (("optn2016", 125, 137), ("kim2008", 125, 140)):
        f = lambda na, v=variant: scores.meld_na(2.0, 2.0, 1.8, na, variant=v)  # noqa: E731
        step = 3  # > one integer point for the rounded variant
        assert f(low - 15) == f(low) and f(low + step) < f(low)
        assert f(high + 15) == f(high) and f(high - step) > f(high)


def test_meld3_albumin_and_sodium_bounds() -> None:
    kw = dict(age_at_registration=40)
    f = lambda alb, na=130: scores.meld3(3.0, 1.5, 1.8, na, alb, "M", **kw)  # noqa: E731
    assert f(0.5) == f(1.5) and f(5.0) == f(3.5)
    assert f(2.8, 120) == f(2.8, 125) and f(2.8, 145) == f(2.8, 137)


def test_meld3_registered_before_18_uses_7_33_without_sex() -> None:
    labs = (1.5, 1.0, 1.2, 135, 3.0)
    child = scores.meld3(*labs, None, age_at_registration=16)
    adult_f = scores.meld3(*labs, "F", age_at_registration=18)
    adult_m = scores.meld3(*labs, "M", age_at_registration=18)
    assert child == adult_f == 13 and adult_m == 12
    assert np.isnan(scores.meld3(*labs, None, age_at_registration=40))


def test_cap_40() -> None:
    assert scores.meld(40, 4, 8, variant="optn2002") == 40
    assert scores.meld(40, 4, 8, variant="continuous") > 40
    assert scores.meld_na(40, 4, 8, 125, variant="optn2016") == 40


def test_round_half_away_from_zero() -> None:
    x = np.array([24.5, 25.5, -2.5, 0.49999, 6.43, 39.5])
    assert round_half_away(x).tolist() == [25, 26, -3, 0, 6, 40]
    assert np.round(24.5) == 24  # what we must not do
    # MELD-Na: MELD(i) 20, Na 130 -> 20 + 9.24 - 4.62 = 24.62 -> 25
    assert scores.meld_na(1.0, 1.0, np.exp((20 - 6.43) / 11.2), 130) == 25


# --- missing and impossible inputs ------------------------------------------------------


def test_missing_gives_nan_for_that_row_only() -> None:
    out = scores.meld([2.0, np.nan, 2.0], [1.0, 1.0, None], [1.5, 1.5, 1.5])
    assert out[0] == scores.meld(2.0, 1.0, 1.5) and np.isnan(out[1]) and np.isnan(out[2])
    assert np.isnan(scores.meld(2.0, 1.0, 1.5, dialysis=[None])[0])


@pytest.mark.parametrize(
    ("kwargs", "name", "row", "value"),
    [
        (dict(bilirubin=[1, 2, -1], creatinine=1, inr=1), "bilirubin", 2, -1),
        (dict(bilirubin=1, creatinine=[1, 0], inr=1), "creatinine", 1, 0),
        (dict(bilirubin=1, creatinine=1, inr=[1.0, float("inf")]), "inr", 1, float("inf")),
        (dict(bilirubin=["1", "x"], creatinine=1, inr=1), "bilirubin", 1, "x"),
    ],
)
def test_impossible_inputs_name_input_row_value(kwargs, name, row, value) -> None:
    with pytest.raises(ScoreInputError) as exc:
        scores.meld(**kwargs)
    assert (exc.value.input_name, exc.value.row, exc.value.value) == (name, row, value)
    assert name in str(exc.value) and f"row {row}" in str(exc.value)
    coerced = scores.meld(**kwargs, errors="coerce")
    assert np.isnan(coerced[row]) and not np.isnan(coerced[0])


def test_unknown_category_and_variant() -> None:
    with pytest.raises(ScoreInputError, match=r"ascites: row 1: 'lots'"):
        scores.child_pugh([1, 1], [4, 4], ["none", "lots"], ["none", "none"], inr=[1, 1])
    with pytest.raises(ValueError, match="unknown MELD variant 'unos'"):
        scores.meld(1, 1, 1, variant="unos")  # type: ignore[arg-type]
    assert scores.child_pugh(1, 4, "None", "NONE", inr=1) == 5  # case-insensitive


def test_child_pugh_boundaries_belong_to_middle_band() -> None:
    pts = scores.child_pugh_bilirubin_points([1.99, 2.0, 3.0, 3.01])
    assert pts.tolist() == [1, 2, 2, 3]
    assert scores.child_pugh_coagulation_points(inr=[1.69, 1.7, 2.3, 2.31]).tolist() == [1, 2, 2, 3]
    alb = [scores.child_pugh(1, a, "none", "none", inr=1) - 4 for a in (3.51, 3.5, 2.8, 2.79)]
    assert alb == [1, 2, 2, 3]
    assert scores.child_pugh_bilirubin_points([3.9, 4.0, 10.0, 10.1], cholestatic="PBC").tolist() \
        == [1, 2, 2, 3]
    assert scores.child_pugh_class([5, 6, 7, 9, 10, 15, np.nan]).tolist() == \
        ["A", "A", "B", "B", "C", "C", ""]
    # SI converted first: 34.2 umol/L = 2.0 mg/dL
    assert scores.child_pugh_bilirubin_points([34.1, 34.2], units="si").tolist() == [1, 2]


def test_albi_grade_from_unrounded_score() -> None:
    s = scores.albi(32, 28)
    assert s == pytest.approx(-1.3866, abs=1e-4)
    assert scores.albi_grade(s) == 3
    assert scores.albi_grade([-2.60, -2.5999, -1.39, -1.3899]).tolist() == [1, 2, 2, 3]


def test_series_input_and_broadcasting() -> None:
    pd = pytest.importorskip("pandas")
    bili = pd.Series([1.0, 2.0, 3.0], index=[10, 20, 30])
    out = scores.meld(bili, 1.0, 1.2)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        scores.meld([1, 2], [1, 2, 3], 1)
