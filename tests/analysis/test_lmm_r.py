"""fit_lmm against R: lme4 (optimum, singular fits), lmerTest (Satterthwaite), pbkrtest (KR).

The numbers are in tests/data/analysis/r_lmm_reference.json, made by
tests/analysis/r/lmm_reference.R (R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2) on
datasets R ships (sleepstudy, Orthodont, BodyWeight, ChickWeight), survival::pbcseq, the demo
cohort and a simulated dataset with no slope variance.  lme4 was run with bobyqa and
rhoend = 1e-12 (its default stopping rule leaves BodyWeight 1.1e-4 log-likelihood units short);
``loglik_default`` is the default fit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hepatrial import data as hdata
from hepatrial.analysis import LMMResult, fit_lmm
from hepatrial.analysis._reml import LMMCore

DATA = Path(__file__).resolve().parents[1] / "data" / "analysis"
REF: dict[str, Any] = json.loads((DATA / "r_lmm_reference.json").read_text())
ANALYTES = ["meld_kamath2001", "inr", "creatinine", "albumin", "bilirubin"]


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name)


def _frames() -> dict[str, pd.DataFrame]:
    orth = _csv("orthodont.csv")
    orth["Sex"] = pd.Categorical(orth["Sex"], categories=["Male", "Female"])
    pbc = pd.read_csv(hdata.path("pbcseq"))
    pbc["year"] = pbc["day"] / 365.25
    return {"ss": _csv("sleepstudy.csv"), "orth": orth, "bw": _csv("bodyweight.csv"),
            "cw": _csv("chickweight.csv"), "sim": _csv("sim_zero_slope.csv"), "pbc": pbc,
            "demo": _csv("demo_kharaziha2009_synthetic.csv")}


FRAMES = _frames()
DEMO = FRAMES["demo"]

CASES: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {
    "sleepstudy_slope": (FRAMES["ss"], {"subject": "Subject", "time": "Days",
                                        "outcome": "Reaction", "random": "slope"}),
    "sleepstudy_days_factor": (FRAMES["ss"], {"subject": "Subject", "time": "Days",
                                              "outcome": "Reaction",
                                              "time_type": "categorical"}),
    "orthodont_slope_sex": (FRAMES["orth"], {"subject": "Subject", "time": "age",
                                             "outcome": "distance", "random": "slope",
                                             "group": "Sex"}),
    "orthodont_agefactor_sex": (FRAMES["orth"], {"subject": "Subject", "time": "age",
                                                 "outcome": "distance",
                                                 "time_type": "categorical", "group": "Sex"}),
    "bodyweight_slope_diet": (FRAMES["bw"], {"subject": "Rat", "time": "Time",
                                             "outcome": "weight", "random": "slope",
                                             "group": "Diet"}),
    "chickweight_slope_diet": (FRAMES["cw"], {"subject": "Chick", "time": "Time",
                                              "outcome": "weight", "random": "slope",
                                              "group": "Diet"}),
    "sim_zero_slope": (FRAMES["sim"], {"subject": "id", "time": "time", "outcome": "y",
                                       "random": "slope"}),
    "pbcseq_logbili_slope": (FRAMES["pbc"], {"subject": "id", "time": "year", "outcome": "bili",
                                             "log": True, "random": "slope"}),
    "pbcseq_albumin_slope": (FRAMES["pbc"], {"subject": "id", "time": "year",
                                             "outcome": "albumin", "random": "slope"}),
    "pbcseq_logbili_trt": (FRAMES["pbc"], {"subject": "id", "time": "year", "outcome": "bili",
                                           "log": True, "random": "slope", "group": "trt"}),
}
for _a in ANALYTES:
    CASES[f"demo_visit_{_a}"] = (DEMO[DEMO["analyte"] == _a], {
        "subject": "participant_id", "time": "visit", "outcome": "value",
        "time_type": "categorical", "time_reference": "D0"})
for _a in ("creatinine", "meld_kamath2001"):
    CASES[f"demo_week_slope_{_a}"] = (DEMO[DEMO["analyte"] == _a], {
        "subject": "participant_id", "time": "week", "outcome": "value", "random": "slope"})

_FITS: dict[tuple[str, str], LMMResult] = {}


def fitted(case: str, ddf: str) -> LMMResult:
    if (case, ddf) not in _FITS:
        df, kw = CASES[case]
        _FITS[(case, ddf)] = fit_lmm(df, **kw, ddf=ddf)
    return _FITS[(case, ddf)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_optimum_matches_lme4(case: str) -> None:
    ref = REF[case]
    r = fitted(case, "kenward-roger")
    assert r.converged and r.max_scaled_grad < 1e-4
    assert r.singular == ref["singular"]
    assert r.n_obs == ref["n_obs"]
    # the same optimum as lme4 run to rhoend 1e-12, never below lme4's default fit
    assert r.loglik == pytest.approx(ref["loglik"], abs=1e-6)
    assert r.loglik >= ref["loglik_default"] - 1e-9
    assert np.asarray(r.theta) == pytest.approx(ref["theta"], rel=2e-5, abs=2e-6)
    assert r.residual_variance == pytest.approx(ref["residual_variance"], rel=1e-5)
    g = np.atleast_2d(np.asarray(ref["cov_re"], dtype=float))
    assert r.cov_re.to_numpy() == pytest.approx(g, rel=5e-5, abs=1e-8 * float(np.max(g)))
    for term, fe in ref["fixed"].items():
        row = r.fixed_effects.loc[term]
        assert row["estimate"] == pytest.approx(fe["estimate"], rel=1e-6, abs=1e-9)
        assert row["se"] == pytest.approx(fe["se"], rel=1e-5)
    assert np.asarray(r.inference.phi if r.inference else []) == pytest.approx(
        np.atleast_2d(ref["vcov"]), rel=2e-5, abs=1e-12)


@pytest.mark.parametrize("ddf", ["kenward-roger", "satterthwaite"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_small_sample_t_tests_match_lmertest_and_pbkrtest(case: str, ddf: str) -> None:
    ref = REF[case]
    key = ddf.replace("-", "_")
    r = fitted(case, ddf)
    assert r.ddf_method == ddf
    for term, fe in ref["fixed"].items():
        row = r.fixed_effects.loc[term]
        want = fe[key]
        assert row["df"] == pytest.approx(want["df"], rel=1e-4), term
        assert row["se_adj"] == pytest.approx(want["se"], rel=1e-5), term
        assert row["t"] == pytest.approx(want["t"], rel=1e-5), term
        # p to 1e-4 relative (below 1e-6 the t statistic's last digits, set by how close R's
        # optimizer came to the optimum, decide the p-value's: compared on log10 there)
        if want["p"] > 1e-6:
            assert row["p"] == pytest.approx(want["p"], rel=1e-4), term
        else:
            assert math.log10(row["p"]) == pytest.approx(math.log10(want["p"]), abs=1e-3)
        q = row["df"]
        from scipy import stats

        crit = stats.t.ppf(0.975, q)
        assert row["ci_low"] == pytest.approx(row["estimate"] - crit * row["se_adj"], rel=1e-12)
        assert row["ci_high"] == pytest.approx(row["estimate"] + crit * row["se_adj"],
                                               rel=1e-12)
    if ddf == "kenward-roger":
        assert r.inference is not None and r.inference.kr is not None
        assert r.inference.kr.phi_adj == pytest.approx(np.atleast_2d(ref["vcov_kr"]),
                                                       rel=2e-5, abs=1e-12)


@pytest.mark.parametrize("ddf", ["kenward-roger", "satterthwaite"])
@pytest.mark.parametrize("case", sorted(c for c in CASES if REF[c]["f_tests"]))
def test_f_tests_match_r(case: str, ddf: str) -> None:
    key = ddf.replace("-", "_")
    r = fitted(case, ddf)
    for name, ft in REF[case]["f_tests"].items():
        mine = r.f_test(ft["terms"] if isinstance(ft["terms"], list) else [ft["terms"]])
        want = ft[key]
        assert mine["ndf"] == want["ndf"], name
        assert mine["F"] == pytest.approx(want["F"], rel=1e-5), name
        assert mine["ddf"] == pytest.approx(want["ddf"], rel=1e-4), name
        if want["p"] > 1e-6:
            assert mine["p"] == pytest.approx(want["p"], rel=1e-4), name
        else:
            assert math.log10(mine["p"]) == pytest.approx(math.log10(want["p"]), abs=1e-3)
        # the automatic omnibus test is the same test
        auto = r.f_tests.get("time") or r.f_tests.get("group:time")
        assert auto is not None and auto["F"] == pytest.approx(mine["F"], rel=1e-12)


def test_demo_creatinine_singular_fit_reaches_lme4() -> None:
    """The demo's creatinine random slope: a boundary optimum (correlation -1)."""
    ref = REF["demo_week_slope_creatinine"]
    r = fitted("demo_week_slope_creatinine", "kenward-roger")
    assert r.singular and r.converged
    assert r.theta[2] == 0.0  # the bound is reached, not approached
    assert r.cor_re.loc["Intercept", "week"] == pytest.approx(-1.0, abs=1e-12)
    # lme4's default stops at -188.871479 (issue 9: statsmodels stopped at -188.8778)
    assert ref["loglik_default"] == pytest.approx(-188.8715, abs=1e-4)
    assert r.loglik == pytest.approx(ref["loglik"], abs=1e-8)
    assert r.loglik > ref["loglik_default"]
    for term in ("Intercept", "week"):
        assert r.bse[term] == pytest.approx(ref["fixed"][term]["se"], rel=1e-6)
    d = r.to_dict()
    assert d["singular"] is True and d["converged"] is True
    assert d["gradient"]["max_scaled"] < d["gradient"]["tolerance"]


def test_simulated_zero_slope_variance_is_singular() -> None:
    ref = REF["sim_zero_slope"]
    r = fitted("sim_zero_slope", "satterthwaite")
    assert r.singular and r.converged
    # G has rank 1: Lambda_22 = 0, so the intercept and slope correlate perfectly
    assert r.theta[2] == 0.0
    assert abs(r.cor_re.loc["Intercept", "time"]) == pytest.approx(1.0, abs=1e-12)
    assert r.loglik == pytest.approx(ref["loglik"], abs=1e-8)
    # at the boundary lmerTest's Satterthwaite df for time is 109.6 while KR's is 29
    assert r.fixed_effects.loc["time", "df"] == pytest.approx(
        ref["fixed"]["time"]["satterthwaite"]["df"], rel=1e-4)
    assert fitted("sim_zero_slope", "kenward-roger").fixed_effects.loc["time", "df"] == (
        pytest.approx(29.0, rel=1e-6))


def test_meld_slope_df_is_seven_not_infinity() -> None:
    """Issue 9: MELD slope p 7.9e-5 by z but 0.0056 with Satterthwaite df 7."""
    r = fitted("demo_week_slope_meld_kamath2001", "satterthwaite")
    row = r.fixed_effects.loc["week"]
    assert row["df"] == pytest.approx(7.0, abs=0.01)
    assert row["p"] == pytest.approx(0.00555, abs=1e-5)
    assert row["p_wald"] == pytest.approx(7.9e-5, abs=1e-6)


def _albumin_core() -> LMMCore:
    pbc = FRAMES["pbc"].sort_values("id", kind="mergesort")
    x = np.column_stack([np.ones(len(pbc)), pbc["year"].to_numpy()])
    return LMMCore(pbc["albumin"].to_numpy(dtype=float), x, x.copy(),
                   pd.factorize(pbc["id"])[0])


def test_gradient_test_rejects_a_saddle_on_the_boundary() -> None:
    """pbcseq albumin: L-BFGS-B from Lambda = I can land on theta_22 = 0, where the gradient
    is exactly 0 (the deviance is even in theta_22) but the curvature is negative; logLik
    there is -995.45 against the optimum -966.04.  The second-order check catches it."""
    core = _albumin_core()
    saddle = np.array([0.89119632, 0.08295128, 0.0])
    dev, grad = core.deviance(saddle)
    assert -dev / 2 == pytest.approx(-995.4516507, abs=1e-4)
    assert abs(grad[2]) < 1e-12
    passed, _, _, _, direction = core.gradient_test(saddle)
    assert not passed and direction is not None
    fit = core.fit()
    assert fit.converged and -fit.deviance / 2 == pytest.approx(-966.038728632504, abs=1e-6)


def test_gradient_test_fails_away_from_the_optimum() -> None:
    core = _albumin_core()
    fit = core.fit()
    passed, _, gmax, _, _ = core.gradient_test(fit.theta * 1.01)
    assert not passed and gmax > 1e-2
    assert core.gradient_test(fit.theta)[0]


@pytest.mark.parametrize("optimizers", [("nm",), ("powell",), ("bfgs",), ("cg", "lbfgs")])
def test_every_optimizer_reaches_the_same_optimum(optimizers: tuple[str, ...]) -> None:
    df, kw = CASES["pbcseq_logbili_slope"]
    r = fit_lmm(df, **kw, optimizers=optimizers, ddf="wald")
    assert r.converged
    assert r.loglik == pytest.approx(REF["pbcseq_logbili_slope"]["loglik"], abs=1e-6)
