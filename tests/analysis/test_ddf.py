"""hepatrial.analysis.ddf: properties of the Kenward-Roger and Satterthwaite machinery that
hold exactly (R agreement is in test_lmm_r.py and test_mmrm.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hepatrial.analysis import fit_lmm
from hepatrial.analysis.ddf import Block, Inference, kenward_roger, kr_ftest


def _balanced(seed: int = 11, n: int = 8, visits: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 2.0, n)
    return pd.DataFrame([{"sid": f"s{i}", "visit": j, "y": 20 + u[i] - 0.4 * j +
                          rng.normal(0, 1.0)} for i in range(n) for j in range(visits)])


def test_balanced_random_intercept_kr_equals_satterthwaite_equals_anova_df() -> None:
    # balanced, complete, random intercept: within-subject contrasts are exact t tests with
    # the two-way ANOVA residual df (n - 1)(T - 1), and KR leaves Phi unadjusted for them
    df = _balanced()
    kr = fit_lmm(df, "sid", "visit", "y", time_type="categorical")
    sat = fit_lmm(df, "sid", "visit", "y", time_type="categorical", ddf="satterthwaite")
    within = [t for t in kr.fixed_effects.index if t != "Intercept"]
    for t in within:
        assert kr.fixed_effects.loc[t, "df"] == pytest.approx(35.0, rel=1e-9)
        assert sat.fixed_effects.loc[t, "df"] == pytest.approx(35.0, rel=1e-6)
        assert kr.fixed_effects.loc[t, "se_adj"] == pytest.approx(kr.fixed_effects.loc[t, "se"],
                                                                  rel=1e-10)
    ft = kr.f_tests["time"]
    assert ft["ndf"] == 5 and ft["ddf"] == pytest.approx(35.0, rel=1e-9)
    assert ft["F_scaling"] == pytest.approx(1.0, rel=1e-9)


def test_one_row_f_test_is_the_squared_t_test() -> None:
    df = _balanced(seed=3)
    for method in ("kenward-roger", "satterthwaite", "wald"):
        r = fit_lmm(df, "sid", "visit", "y", random="slope", ddf=method)  # type: ignore[arg-type]
        row = r.fixed_effects.loc["visit"]
        ft = r.f_test(["visit"])
        assert ft["F"] == pytest.approx(row["t"] ** 2, rel=1e-9)
        assert ft["p"] == pytest.approx(row["p"], rel=1e-7)
        assert ft["method"] == method
    wald = r.f_test(["Intercept", "visit"])
    chi2 = float(r.params.to_numpy() @ np.linalg.solve(r.inference.phi, r.params.to_numpy())) \
        if r.inference else 0.0
    assert wald["F"] == pytest.approx(chi2 / 2, rel=1e-10)
    assert wald["p"] == pytest.approx(stats.chi2.sf(chi2, 2), rel=1e-10)


def test_contrast_of_two_visits() -> None:
    df = _balanced(seed=5)
    r = fit_lmm(df, "sid", "visit", "y", time_type="categorical")
    c = r.contrast({"visit[5]": 1.0, "visit[2]": -1.0})
    means = df.groupby("visit")["y"].mean()
    assert c["estimate"] == pytest.approx(means[5] - means[2], rel=1e-9)
    assert c["df"] == pytest.approx(35.0, rel=1e-9)
    with pytest.raises(Exception, match="term 'visit\\[9\\]' not in the model"):
        r.contrast({"visit[9]": 1.0})


def test_shared_and_per_subject_blocks_agree() -> None:
    rng = np.random.default_rng(1)
    n, m, p = 12, 4, 3
    x = rng.normal(size=(n, m, p))
    a = rng.normal(size=(m, m))
    sigma = a @ a.T + m * np.eye(m)
    g = [np.eye(m), np.ones((m, m))]
    shared = Block(x=x, sigma=sigma, dsigma=g)
    per = Block(x=x, sigma=np.broadcast_to(sigma, (n, m, m)).copy(),
                dsigma=[np.broadcast_to(gk, (n, m, m)).copy() for gk in g])
    si = np.linalg.inv(sigma)
    phi = np.linalg.inv(np.einsum("imp,mn,inq->pq", x, si, x))
    k1, k2 = kenward_roger([shared], phi), kenward_roger([per], phi)
    assert k1.phi_adj == pytest.approx(k2.phi_adj, rel=1e-12)
    assert k1.w == pytest.approx(k2.w, rel=1e-12)
    beta = rng.normal(size=p)
    f1 = kr_ftest(np.eye(p)[:2], beta, k1)
    assert f1["ddf"] == pytest.approx(kr_ftest(np.eye(p)[:2], beta, k2)["ddf"], rel=1e-12)
    inf = Inference(method="kenward-roger", beta=beta, phi=phi, names=["a", "b", "c"], kr=k1)
    assert inf.vcov() is k1.phi_adj
