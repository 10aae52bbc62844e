"""Linear mixed models vs R nlme on survival::pbcseq (analysis-notes R3/R4, §2.5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hepatrial.analysis import AnalysisInputError, LMMResult, fit_lmm


@pytest.fixture(scope="module")
def pbcseq(pbcseq_csv: Path) -> pd.DataFrame:
    df = pd.read_csv(pbcseq_csv)
    df["year"] = df["day"] / 365.25
    return df


def r_pbcseq_bili_input() -> pd.DataFrame:
    from hepatrial import data

    df = pd.read_csv(data.path("pbcseq"))
    df["year"] = df["day"] / 365.25
    return df


@pytest.fixture(scope="module")
def bili_slope(pbcseq: pd.DataFrame) -> LMMResult:
    return fit_lmm(pbcseq, "id", "year", "bili", log=True, random="slope")


def test_r4_log_bili_random_slope_reml_estimates_and_gls_se(bili_slope: LMMResult) -> None:
    # R: lme(log(bili) ~ year, random = ~ year | id, data = pbcseq), year = day / 365.25
    r = bili_slope
    assert r.method == "REML" and r.converged
    assert r.n_obs == 1945 and r.n_groups == 312 and r.n_dropped == 0
    assert list(r.fixed_effects.index) == ["Intercept", "year"]
    assert r.params["Intercept"] == pytest.approx(0.4957237631, rel=1e-5)
    assert r.params["year"] == pytest.approx(0.1775048326, rel=1e-5)
    assert r.bse["Intercept"] == pytest.approx(0.0580742476, rel=1e-5)
    assert r.bse["year"] == pytest.approx(0.0124188218, rel=1e-5)
    assert r.loglik == pytest.approx(-1531.36038, abs=1e-5)


def test_r4_variance_components_and_ci(bili_slope: LMMResult) -> None:
    r = bili_slope
    # nlme / statsmodels (R4-Py): G = [0.998079, 0.07175; 0.07175, 0.029492], sigma^2 0.121773
    assert r.cov_re.loc["Intercept", "Intercept"] == pytest.approx(0.998079, rel=1e-4)
    assert r.cov_re.loc["year", "year"] == pytest.approx(0.029492, rel=1e-4)
    assert r.cov_re.loc["Intercept", "year"] == pytest.approx(0.07175, rel=1e-3)
    assert r.residual_variance == pytest.approx(0.121773, rel=1e-5)
    assert r.cor_re.loc["Intercept", "year"] == pytest.approx(0.418, abs=1e-3)
    fe = r.fixed_effects.loc["year"]
    assert fe["z"] == pytest.approx(fe["estimate"] / fe["se"], rel=1e-12)
    # default inference is Kenward-Roger: t(df) quantile on the adjusted SE
    assert r.ddf_method == "kenward-roger"
    q = stats.t.ppf(0.975, fe["df"])
    assert fe["ci_low"] == pytest.approx(fe["estimate"] - q * fe["se_adj"], rel=1e-12)
    wald = fit_lmm(r_pbcseq_bili_input(), "id", "year", "bili", log=True, random="slope",
                   ddf="wald").fixed_effects.loc["year"]
    assert wald["df"] == np.inf and wald["p"] == pytest.approx(wald["p_wald"], rel=1e-12)
    assert wald["ci_low"] == pytest.approx(wald["estimate"] - 1.959963985 * wald["se"],
                                           rel=1e-9)


def test_albumin_random_slope_where_statsmodels_default_fails(pbcseq: pd.DataFrame) -> None:
    # statsmodels' default (bfgs first) stops at llf -1117.27 here; the profiled deviance with
    # L-BFGS-B reaches R's optimum without any fallback
    r = fit_lmm(pbcseq, "id", "year", "albumin", random="slope")
    assert r.optimizer == "lbfgs" and list(r.optimizer_trials) == ["lbfgs"]
    assert r.converged and not r.singular
    assert r.loglik == pytest.approx(-966.0387, abs=1e-4)
    assert r.params["Intercept"] == pytest.approx(3.540545, abs=2e-6)
    assert r.params["year"] == pytest.approx(-0.088677, abs=2e-6)


def test_missing_outcomes_dropped_and_counted(pbcseq: pd.DataFrame) -> None:
    n_missing = int(pbcseq["chol"].isna().sum())
    assert n_missing > 0
    r = fit_lmm(pbcseq, "id", "year", "chol", log=True, random="intercept",
                optimizers=("lbfgs",), ddf="wald")
    assert r.n_dropped == n_missing
    assert r.dropped_reasons == {"missing_outcome": n_missing, "missing_time": 0}
    assert r.n_obs == len(pbcseq) - n_missing
    assert r.model == "log(chol) ~ year + (1 | id)"
    assert r.cov_re.shape == (1, 1)


def test_group_interaction_terms(pbcseq: pd.DataFrame) -> None:
    r = fit_lmm(pbcseq, "id", "year", "bili", log=True, group="trt", optimizers=("lbfgs",))
    assert list(r.fixed_effects.index) == ["Intercept", "year", "trt[1]", "year:trt[1]"]
    d = r.to_dict()
    assert set(d["fixed_effects"]["year:trt[1]"]) == {
        "estimate", "se", "se_adj", "df", "t", "p", "ci_low", "ci_high", "z", "p_wald",
        "method"}
    assert d["fixed_effects"]["year:trt[1]"]["method"] == "kenward-roger"
    assert d["method"] == "REML" and d["ddf_method"] == "kenward-roger"
    # one interaction term: the F test is the square of the t test, same df
    ft = d["f_tests"]["group:time"]
    t = d["fixed_effects"]["year:trt[1]"]
    assert ft["ndf"] == 1 and ft["ddf"] == pytest.approx(t["df"], rel=1e-10)
    assert ft["p"] == pytest.approx(t["p"], rel=1e-8)


def test_balanced_categorical_time_equals_anova() -> None:
    # Balanced complete data, random intercept, categorical time: REML = ANOVA estimators, so
    # beta_k = visit-mean difference and SE = sqrt(2 * MSE / n) (two-way ANOVA residual MS).
    rng = np.random.default_rng(20260101)
    n, visits = 8, [0, 4, 24]
    subj = rng.normal(0, 2.0, n)
    y = np.array([[10 + subj[i] + 0.5 * j + rng.normal(0, 1.0) for j in range(3)]
                  for i in range(n)])
    df = pd.DataFrame([{"sid": f"s{i}", "week": visits[j], "meld": y[i, j]}
                       for i in range(n) for j in range(3)])
    r = fit_lmm(df, "sid", "week", "meld", time_type="categorical")
    resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    mse = (resid**2).sum() / ((n - 1) * 2)
    means = y.mean(axis=0)
    assert list(r.fixed_effects.index) == ["Intercept", "week[4]", "week[24]"]
    assert r.params["week[4]"] == pytest.approx(means[1] - means[0], rel=1e-6)
    assert r.params["week[24]"] == pytest.approx(means[2] - means[0], rel=1e-6)
    assert r.residual_variance == pytest.approx(mse, rel=1e-5)
    assert r.bse["week[24]"] == pytest.approx(np.sqrt(2 * mse / n), rel=1e-5)


def test_bad_input(pbcseq: pd.DataFrame) -> None:
    with pytest.raises(AnalysisInputError, match="column 'bilirubin' not found"):
        fit_lmm(pbcseq, "id", "year", "bilirubin")
    bad = pbcseq.head(50).copy()
    bad.loc[7, "bili"] = 0.0
    with pytest.raises(AnalysisInputError, match=r"column 'bili', row 7: .* cannot be logged"):
        fit_lmm(bad, "id", "year", "bili", log=True)
    with pytest.raises(AnalysisInputError, match="random must be"):
        fit_lmm(pbcseq, "id", "year", "bili", random="quadratic")  # type: ignore[arg-type]
    with pytest.raises(AnalysisInputError, match="ddf must be one of"):
        fit_lmm(pbcseq, "id", "year", "bili", ddf="containment")  # type: ignore[arg-type]
    with pytest.raises(AnalysisInputError, match="Kenward-Roger needs a REML fit"):
        fit_lmm(pbcseq, "id", "year", "bili", reml=False)
    with pytest.raises(AnalysisInputError, match="unknown optimizer 'newton'"):
        fit_lmm(pbcseq, "id", "year", "bili", optimizers=("newton",))


@pytest.mark.parametrize("reml", [True, False])
def test_r3_pbc2_reml_and_ml(pbcseq: pd.DataFrame, reml: bool) -> None:
    # JM::pbc2 is pbcseq re-coded with year = day / 365.24 (analysis-notes §3); R3 / R3-ML.
    # nlme stops ~1e-5 (relative) short of the exact optimum, hence rel=2e-5 here.
    df = pbcseq.assign(year=pbcseq["day"] / 365.24)
    r = fit_lmm(df, "id", "year", "bili", log=True, random="slope", reml=reml,
                optimizers=("lbfgs", "powell"), ddf="kenward-roger" if reml else "satterthwaite")
    if reml:
        beta, se, ll = (0.4957237890, 0.1774999299), (0.0580742458, 0.0124184718), -1531.360408
        g, s2 = (0.9980502, 0.0294909), 0.1217735
        adj = 1.0
    else:
        beta, se, ll = (0.4957670639, 0.1774211497), (0.0580090886, 0.0123869529), -1525.928391
        g, s2 = (0.9946199, 0.0292770), 0.1218081
        # nlme summary(): adjustSigma=TRUE scales ML SEs by sqrt(N / (N - p)); vcov() does not
        adj = np.sqrt(1945 / (1945 - 2))
    assert r.method == ("REML" if reml else "ML")
    assert r.params.to_numpy() == pytest.approx(beta, rel=2e-5)
    assert (r.bse.to_numpy() * adj) == pytest.approx(se, rel=2e-5)
    assert r.loglik == pytest.approx(ll, abs=2e-6)
    assert np.diag(r.cov_re.to_numpy()) == pytest.approx(g, rel=5e-5)
    assert r.residual_variance == pytest.approx(s2, rel=2e-5)


def test_categorical_visits_chronological_with_reference() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(6):
        u = rng.normal()
        for v, day in [("SCR", -14), ("D0", 0), ("W4", 28), ("W24", 168)]:
            rows.append({"participant_id": f"P{i}", "visit": v, "nominal_day": day,
                         "value": 20 + u - day / 50 + rng.normal(0, 0.5)})
    df = pd.DataFrame(rows)
    r = fit_lmm(df, "participant_id", "visit", "value", time_type="categorical",
                time_reference="D0", optimizers=("lbfgs",))
    assert list(r.fixed_effects.index) == ["Intercept", "visit[SCR]", "visit[W4]", "visit[W24]"]
    means = df.groupby("visit")["value"].mean()
    assert r.params["visit[W24]"] == pytest.approx(means["W24"] - means["D0"], rel=1e-6)
    mixed = pd.concat([df.assign(analyte="inr"), df.assign(analyte="albumin")])
    with pytest.raises(AnalysisInputError, match="several analytes"):
        fit_lmm(mixed, "participant_id", "nominal_day", "value")


def test_large_offset_outcome_fits_as_the_centred_one(pbcseq: pd.DataFrame) -> None:
    """y'V^-1 y - c'beta cancels digits when the outcome sits far from 0 (sodium ~134 mmol/L
    stalled the optimizer at 5,000 participants): fitting the OLS residuals avoids it."""
    df = pbcseq.assign(shifted=pbcseq["albumin"] + 1e6)
    a = fit_lmm(df, "id", "year", "albumin", random="slope", ddf="wald")
    b = fit_lmm(df, "id", "year", "shifted", random="slope", ddf="wald")
    assert b.converged and b.max_grad < 1e-4
    assert b.loglik == pytest.approx(a.loglik, abs=1e-6)
    assert b.params["Intercept"] - 1e6 == pytest.approx(a.params["Intercept"], abs=1e-6)
    assert b.params["year"] == pytest.approx(a.params["year"], rel=1e-8)
    assert np.asarray(b.theta) == pytest.approx(np.asarray(a.theta), rel=1e-6, abs=1e-8)
