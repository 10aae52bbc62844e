"""Mixed model for repeated measures (MMRM): a marginal linear model with a covariance matrix
over visits, fitted by REML, with Kenward-Roger (default) or Satterthwaite inference.

The model (Mallinckrodt et al. 2008, Drug Inf J 42:303; the primary analysis regulators expect
for longitudinal continuous endpoints) is ``y_i = X_i beta + e_i, e_i ~ N(0, Sigma[v_i, v_i])``
with ``v_i`` the visits subject i attended (missing visits are missing at random), ``X_i`` visit
(x group) cell means plus optional covariates, and Sigma one of

* ``"unstructured"``: any positive-definite T x T matrix (R ``nlme::gls`` with
  ``corSymm() + varIdent(~1 | visit)``, SAS ``type=un``, R ``mmrm::us()``),
* ``"cs"``: compound symmetry, homogeneous (``corCompSymm``, SAS ``cs``),
* ``"ar1"``: sigma^2 rho^|j-k| over visit positions (``corAR1``, SAS ``ar(1)``),
* ``"toeplitz"``: one covariance per lag, homogeneous (``corARMA(p = T - 1)``, SAS ``toep``).

Estimation: the REML -2 log-likelihood with beta profiled out (Harville 1977, JASA 72:320)
is minimised by L-BFGS-B over an unconstrained parametrisation (log-Cholesky for UN; log
sigma^2 and a logistic / tanh correlation for CS and AR(1); log sigma^2 and partial
autocorrelations for Toeplitz) with the analytic gradient tr(D dSigma): subjects with the same
visit pattern share Sigma_p, so one evaluation costs O(patterns T^2 p^2).  ``converged`` is the
gradient test at the returned point (and a positive-definite Hessian), not the optimizer's flag.

Inference (:mod:`hepatrial.analysis.ddf`): Kenward-Roger with the covariance written in its
linear parametrisation (UN: the entries; CS: diagonal and off-diagonal; Toeplitz: one per lag),
which is SAS ``ddfm=kr`` and what pbkrtest computes; AR(1) is not linear in (sigma^2, rho) and
includes the second-derivative term (Kenward & Roger 2009).  Satterthwaite uses the observed
Hessian of the REML criterion in the same parameters.

Least-squares means (Searle, Speed & Milliken 1980, Am Stat 34:216) per visit (and group) are
the model's cell means with covariates at their means (R emmeans' rule); change from baseline
is each visit's LS mean minus the baseline visit's, within group; with a group, the
between-group difference of the changes by visit is the usual MMRM treatment effect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize
from threadpoolctl import threadpool_limits

from hepatrial.analysis._common import (
    AnalysisInputError,
    check_by,
    check_no_missing_keys,
    chronological_visits,
    nan_to_none,
    numeric_column,
    require_columns,
)
from hepatrial.analysis.ddf import Block, Inference, kenward_roger, varpar_cov

__all__ = ["COVARIANCES", "MMRMResult", "fit_mmrm"]

COVARIANCES: tuple[str, ...] = ("unstructured", "cs", "ar1", "toeplitz")
CONV_TOL = 1e-4
_DDF_LABEL = {"kenward-roger": "Kenward-Roger (SAS ddfm=kr; pbkrtest)",
              "satterthwaite": "Satterthwaite", "wald": "Wald z"}


# ---------------------------------------------------------------------- covariance structures
class _Structure:
    """theta (unconstrained, fitting) <-> Sigma; tau (inference parameters) <-> Sigma."""

    def __init__(self, kind: str, t: int) -> None:
        self.kind, self.t = kind, t
        lag = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
        self.lag = lag
        self.tri = [(i, j) for j in range(t) for i in range(j, t)]  # lower, column-major

    # fitting parametrisation
    def n_theta(self) -> int:
        return {"unstructured": len(self.tri), "cs": 2, "ar1": 2, "toeplitz": self.t}[self.kind]

    def start(self, s: np.ndarray) -> np.ndarray:
        """theta from a moment estimate ``s`` of Sigma."""
        t = self.t
        s = s + np.eye(t) * 1e-8 * max(float(np.trace(s)) / t, 1e-12)
        v = float(np.trace(s) / t)
        off = float((s.sum() - np.trace(s)) / max(t * (t - 1), 1))
        if self.kind == "unstructured":
            try:
                ch = np.linalg.cholesky(s)
            except np.linalg.LinAlgError:
                ch = np.linalg.cholesky(np.diag(np.diag(s)) + 1e-8 * v * np.eye(t))
            return np.array([math.log(ch[i, j]) if i == j else ch[i, j] for i, j in self.tri])
        rho = min(max(off / v, -0.9 / max(t - 1, 1)), 0.9)
        if self.kind == "cs":
            lo = -1.0 / max(t - 1, 1)
            u = (rho - lo) / (1 - lo)
            return np.array([math.log(v), math.log(u / (1 - u))])
        if self.kind == "ar1":
            return np.array([math.log(v), math.atanh(rho)])
        return np.r_[math.log(v), math.atanh(rho), np.zeros(t - 2)]

    def sigma(self, theta: np.ndarray) -> np.ndarray:
        t = self.t
        if self.kind == "unstructured":
            lm = self._chol(theta)
            out: np.ndarray = lm @ lm.T
            return out
        s2 = math.exp(theta[0])
        if self.kind == "cs":
            lo = -1.0 / max(t - 1, 1)
            rho = lo + (1 - lo) / (1 + math.exp(-theta[1]))
            return s2 * ((1 - rho) * np.eye(t) + rho * np.ones((t, t)))
        if self.kind == "ar1":
            out = s2 * np.tanh(theta[1]) ** self.lag
            return out
        r = self._toep_corr(np.tanh(theta[1:]))
        out = s2 * r[self.lag]
        return out

    def _chol(self, theta: np.ndarray) -> np.ndarray:
        lm = np.zeros((self.t, self.t))
        for v, (i, j) in zip(theta, self.tri, strict=True):
            lm[i, j] = math.exp(v) if i == j else v
        return lm

    @staticmethod
    def _toep_corr(pacf: np.ndarray) -> np.ndarray:
        """Autocorrelations r_0..r_{T-1} from partial autocorrelations (Durbin-Levinson):
        any pacf in (-1, 1)^(T-1) gives a positive-definite Toeplitz matrix."""
        r = [1.0]
        phi: list[float] = []
        for k, a in enumerate(pacf, start=1):
            new = [phi[j] - a * phi[k - 2 - j] for j in range(k - 1)] + [float(a)]
            phi = new
            r.append(sum(phi[j] * r[k - 1 - j] for j in range(k)))
        return np.array(r)

    def dsigma(self, theta: np.ndarray) -> list[np.ndarray]:
        """dSigma/dtheta_k."""
        if self.kind == "unstructured":
            lm = self._chol(theta)
            out = []
            for i, j in self.tri:
                e = np.zeros((self.t, self.t))
                e[i, j] = lm[i, j] if i == j else 1.0
                d = e @ lm.T
                out.append(d + d.T)
            return out
        # low-dimensional structures: central differences (T x T, a handful of parameters)
        res = []
        for k in range(len(theta)):
            h = 1e-6 * max(1.0, abs(theta[k]))
            step = np.zeros(len(theta))
            step[k] = h
            res.append((self.sigma(theta + step) - self.sigma(theta - step)) / (2 * h))
        return res

    # inference parametrisation
    def tau_basis(self, sig: np.ndarray) -> tuple[list[np.ndarray], dict[tuple[int, int],
                                                                           np.ndarray]]:
        """dSigma/dtau_k and the non-zero second derivatives at Sigma = ``sig``."""
        t = self.t
        if self.kind == "unstructured":
            g = []
            for i, j in self.tri:
                e = np.zeros((t, t))
                e[i, j] = e[j, i] = 1.0
                g.append(e)
            return g, {}
        if self.kind == "cs":
            return [np.eye(t), np.ones((t, t)) - np.eye(t)], {}
        if self.kind == "toeplitz":
            return [(self.lag == k).astype(float) for k in range(t)], {}
        s2 = float(sig[0, 0])
        rho = float(sig[0, 1] / sig[0, 0]) if t > 1 else 0.0
        lag = self.lag
        with np.errstate(divide="ignore", invalid="ignore"):
            d_rho = np.where(lag > 0, lag * np.power(rho, np.maximum(lag - 1, 0)), 0.0)
            d2_rho = np.where(lag > 1, lag * (lag - 1) * np.power(rho, np.maximum(lag - 2, 0)),
                              0.0)
        return ([rho ** lag, s2 * d_rho],
                {(0, 1): d_rho, (1, 1): s2 * d2_rho})

    def n_tau(self) -> int:
        return {"unstructured": len(self.tri), "cs": 2, "ar1": 2, "toeplitz": self.t}[self.kind]

    def tau_of(self, sig: np.ndarray) -> np.ndarray:
        t = self.t
        if self.kind == "unstructured":
            return np.array([sig[i, j] for i, j in self.tri])
        if self.kind == "cs":
            return np.array([sig[0, 0], sig[0, 1] if t > 1 else 0.0])
        if self.kind == "toeplitz":
            return np.array([sig[0, k] for k in range(t)])
        return np.array([sig[0, 0], sig[0, 1] / sig[0, 0] if t > 1 else 0.0])

    def sigma_tau(self, tau: np.ndarray) -> np.ndarray:
        if self.kind == "ar1":
            out: np.ndarray = tau[0] * tau[1] ** self.lag
            return out
        g, _ = self.tau_basis(np.eye(self.t))
        return sum((tk * gk for tk, gk in zip(tau, g, strict=True)), np.zeros((self.t, self.t)))


# ---------------------------------------------------------------------- the REML engine
class _Patterns:
    def __init__(self, x: np.ndarray, y: np.ndarray, vidx: np.ndarray, sid: np.ndarray,
                 reml: bool) -> None:
        self.p = x.shape[1]
        self.n = len(y)
        self.reml = reml
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        ends = np.r_[starts[1:], len(sid)]
        pats: dict[tuple[int, ...], list[int]] = {}
        for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
            pats.setdefault(tuple(int(v) for v in vidx[a:b]), []).append(k)
        self.blocks: list[dict[str, Any]] = []
        for key in sorted(pats, key=lambda k: (-len(k), k)):
            subj = pats[key]
            m = len(key)
            rows = np.concatenate([np.arange(starts[s], ends[s]) for s in subj])
            xb = x[rows].reshape(len(subj), m, self.p)
            yb = y[rows].reshape(len(subj), m)
            blk = Block(x=xb, sigma=np.eye(m), dsigma=[])
            self.blocks.append({
                "idx": np.array(key), "n": len(subj), "block": blk, "xx": blk.xx(),
                "xy": np.einsum("imp,in->mpn", xb, yb), "yy": yb.T @ yb})
        self.n_subjects = len(starts)

    def evaluate(self, sig: np.ndarray, grad: bool) -> dict[str, Any]:
        p = self.p
        a = np.zeros((p, p))
        c = np.zeros(p)
        ld = 0.0
        ysy = 0.0
        sis = []
        for b in self.blocks:
            idx = b["idx"]
            sp = sig[np.ix_(idx, idx)]
            ch = np.linalg.cholesky(sp)
            ld += 2.0 * b["n"] * float(np.log(np.diag(ch)).sum())
            si = np.linalg.inv(sp)
            si = (si + si.T) / 2.0
            sis.append(si)
            a += np.einsum("mpnq,mn->pq", b["xx"], si)
            c += np.einsum("mpn,mn->p", b["xy"], si)
            ysy += float(np.sum(b["yy"] * si))
        ca = np.linalg.cholesky(a)
        beta = np.linalg.solve(ca.T, np.linalg.solve(ca, c))
        quad = ysy - float(c @ beta)
        dev = ld + quad + (self.n - p if self.reml else self.n) * math.log(2 * math.pi)
        if self.reml:
            dev += 2.0 * float(np.log(np.diag(ca)).sum())
        out: dict[str, Any] = {"dev": dev, "beta": beta, "a": a}
        if not grad:
            return out
        ainv = np.linalg.inv(a)
        t = sig.shape[0]
        d = np.zeros((t, t))
        for b, si in zip(self.blocks, sis, strict=True):
            idx = b["idx"]
            xyb = np.einsum("mpn,p->mn", b["xy"], beta)
            r = b["yy"] - xyb - xyb.T + np.einsum("mpnq,p,q->mn", b["xx"], beta, beta)
            inner = r
            if self.reml:
                inner = inner + np.einsum("mpnq,pq->mn", b["xx"], ainv)
            dd = b["n"] * si - si @ inner @ si
            d[np.ix_(idx, idx)] += dd
        out["d"] = (d + d.T) / 2.0
        return out


@dataclass
class MMRMResult:
    """Result of :func:`fit_mmrm` (see the module docstring for the model).

    ``fixed_effects``: estimate, se (model-based), se_adj (KR-adjusted under Kenward-Roger),
    df, t, p, ci_low, ci_high.  ``covariance``/``correlation``: the estimated Sigma over
    visits.  ``lsmeans``: visit ([group]), estimate, se, df, ci_low, ci_high.
    ``change_from_baseline``: visit ([group]), estimate, se, df, t, p, ci_low, ci_high.
    ``group_differences`` (with a group): difference of each group's change from baseline from
    the reference group's, by visit.  ``f_tests``: "visit" (no group) or "group:visit".
    """

    model: str
    covariance_structure: str
    fixed_effects: pd.DataFrame
    covariance: pd.DataFrame
    loglik: float
    method: str
    ddf_method: str
    converged: bool
    max_grad: float
    n_obs: int
    n_subjects: int
    n_dropped: int
    n_patterns: int
    visits: list[Any]
    baseline: Any
    lsmeans: pd.DataFrame
    change_from_baseline: pd.DataFrame
    group_differences: pd.DataFrame | None = None
    f_tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    confidence: float = 0.95
    test: str = _DDF_LABEL["kenward-roger"]
    inference: Inference | None = field(default=None, repr=False)

    @property
    def correlation(self) -> pd.DataFrame:
        """The correlation matrix of Sigma."""
        s = self.covariance.to_numpy()
        sd = np.sqrt(np.diag(s))
        return pd.DataFrame(s / np.outer(sd, sd), index=self.covariance.index,
                            columns=self.covariance.columns)

    def f_test(self, terms: Sequence[str]) -> dict[str, Any]:
        """F test that all ``terms`` are 0 (KR scaled F / Satterthwaite / Wald)."""
        assert self.inference is not None
        names = list(self.fixed_effects.index)
        missing = [t for t in terms if t not in names]
        if missing:
            raise AnalysisInputError(f"terms {missing} not in the model; terms: {names}")
        lmat = np.zeros((len(terms), len(names)))
        for k, t in enumerate(terms):
            lmat[k, names.index(t)] = 1.0
        out = self.inference.ftest(lmat)
        out["terms"] = list(terms)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and infinite df -> None)."""
        def recs(frame: pd.DataFrame | None) -> list[dict[str, Any]] | None:
            if frame is None:
                return None
            return [{str(k): (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                    for r in frame.to_dict(orient="records")]

        out = {
            "model": self.model, "covariance_structure": self.covariance_structure,
            "method": self.method, "ddf_method": self.ddf_method, "test": self.test,
            "fixed_effects": {str(t): {**{k: float(v) for k, v in r.items()},
                                       "method": self.ddf_method}
                              for t, r in self.fixed_effects.iterrows()},
            "covariance": {str(r): {str(c): float(self.covariance.loc[r, c])
                                    for c in self.covariance.columns}
                           for r in self.covariance.index},
            "loglik": self.loglik, "converged": self.converged, "max_grad": self.max_grad,
            "n_obs": self.n_obs, "n_subjects": self.n_subjects, "n_dropped": self.n_dropped,
            "n_patterns": self.n_patterns, "visits": [str(v) for v in self.visits],
            "baseline": str(self.baseline), "lsmeans": recs(self.lsmeans),
            "change_from_baseline": recs(self.change_from_baseline),
            "group_differences": recs(self.group_differences), "f_tests": self.f_tests,
            "confidence": self.confidence,
        }
        from hepatrial.analysis.lmm import _finite

        result: dict[str, Any] = _finite(nan_to_none(out))
        return result


def _minimise(fun: Any, x0: np.ndarray, gtol: float) -> optimize.OptimizeResult:
    return optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                             options={"ftol": 1e-15, "gtol": gtol, "maxiter": 5000,
                                      "maxls": 50, "maxcor": 20})


def fit_mmrm(
    df: pd.DataFrame,
    subject: str,
    visit: str,
    outcome: str,
    *,
    covariance: Literal["unstructured", "cs", "ar1", "toeplitz"] = "unstructured",
    group: str | None = None,
    covariates: Sequence[str] = (),
    baseline: Any = None,
    visit_order: Sequence[Any] | None = None,
    reml: bool = True,
    ddf: Literal["kenward-roger", "satterthwaite", "wald"] = "kenward-roger",
    confidence: float = 0.95,
    gtol: float = 1e-9,
) -> MMRMResult:
    """Fit an MMRM ``outcome ~ visit [* group] [+ covariates]`` with ``covariance`` over
    visits within ``subject`` (REML, Kenward-Roger df by default).

    ``baseline`` is the reference visit of the visit effects and of change from baseline
    (default: the first visit in chronological order: ``nominal_day`` when the frame has it,
    else ``visit_order``, numeric or first-appearance order).  Rows with a missing outcome
    are dropped and counted (``n_dropped``); a subject with two rows for one visit, a missing
    subject, visit, group or covariate raise :class:`AnalysisInputError` naming the row.
    """
    if covariance not in COVARIANCES:
        raise AnalysisInputError(f"covariance must be one of {', '.join(COVARIANCES)}; got "
                                 f"{covariance!r}")
    if ddf not in _DDF_LABEL:
        raise AnalysisInputError(f"ddf must be one of {', '.join(_DDF_LABEL)}; got {ddf!r}")
    if ddf == "kenward-roger" and not reml:
        raise AnalysisInputError("Kenward-Roger needs a REML fit; use ddf='satterthwaite' or "
                                 "'wald' with ML")
    require_columns(df, [subject, visit, outcome, group, *covariates])
    check_by(df, None)
    check_no_missing_keys(df, [subject, visit] + ([group] if group else []) + list(covariates))
    y_all = numeric_column(df, outcome)
    covs = {c: numeric_column(df, c) for c in covariates}
    dup = df.duplicated([subject, visit], keep="first")
    if bool(dup.any()):
        pos = int(np.flatnonzero(dup.to_numpy())[0])
        row = df.index[pos]
        raise AnalysisInputError(f"row {row}: subject {df[subject].iloc[pos]!r} has more than "
                                 f"one row for visit {df[visit].iloc[pos]!r}", row=row)
    keep = ~y_all.isna()
    data = df.loc[keep].copy()
    data["__y"] = y_all.loc[keep]
    levels, _ = chronological_visits(data, visit, visit_order)
    levels = [v for v in levels if v in set(data[visit])]
    if baseline is not None:
        if baseline not in levels:
            raise AnalysisInputError(f"column {visit!r}: baseline visit {baseline!r} not found",
                                     column=visit)
    else:
        baseline = levels[0]
    if len(levels) < 2:
        raise AnalysisInputError(f"column {visit!r}: an MMRM needs at least 2 visits",
                                 column=visit)
    vpos = {v: k for k, v in enumerate(levels)}
    data["__v"] = data[visit].map(vpos).astype(int)
    order = np.lexsort((data["__v"].to_numpy(), data[subject].astype(str).to_numpy()))
    data = data.iloc[order]
    ref_levels = [baseline] + [v for v in levels if v != baseline]
    glv: list[Any] = []
    if group is not None:
        from hepatrial.analysis.lmm import _levels

        glv = _levels(data[group])
        if len(glv) < 2:
            raise AnalysisInputError(f"column {group!r}: needs at least 2 groups", column=group)
    cov_means = {c: float(covs[c].loc[data.index].mean()) for c in covariates}

    def design(vcol: pd.Series, gcol: pd.Series | None,
               cvals: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        n = len(vcol)
        cols, names = [np.ones(n)], ["Intercept"]
        vcols = [(f"{visit}[{lv}]", (vcol == lv).to_numpy(dtype=float)) for lv in ref_levels[1:]]
        for nm, c in vcols:
            cols.append(c)
            names.append(nm)
        if gcol is not None:
            gcols = [(f"{group}[{g}]", (gcol == g).to_numpy(dtype=float)) for g in glv[1:]]
            for nm, c in gcols:
                cols.append(c)
                names.append(nm)
            for vn, vc in vcols:
                for gn, gc in gcols:
                    cols.append(vc * gc)
                    names.append(f"{vn}:{gn}")
        for cname in covariates:
            cols.append(np.asarray(cvals[cname], dtype=float))
            names.append(cname)
        return np.column_stack(cols), names

    x, names = design(data[visit], data[group] if group else None,
                      {c: covs[c].loc[data.index].to_numpy() for c in covariates})
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise AnalysisInputError("fixed-effects design is rank deficient (a visit x group cell "
                                 "without data, or a constant covariate)")
    y = data["__y"].to_numpy(dtype=float)
    sid = pd.factorize(data[subject].astype(str).to_numpy())[0]
    vidx = data["__v"].to_numpy()
    t = len(levels)
    st = _Structure(covariance, t)
    if x.shape[0] - x.shape[1] < 1:
        raise AnalysisInputError("too few observations for the fixed effects")

    with threadpool_limits(1, user_api="blas"):
        # fit the OLS residuals: beta(y) = beta(y - X b0) + b0, the likelihood is unchanged and
        # y' Sigma^-1 y - c' beta loses no digits to cancellation
        beta0 = np.linalg.lstsq(x, y, rcond=None)[0]
        res = y - x @ beta0
        pats = _Patterns(x, res, vidx, sid, reml)
        # start: residual covariance of OLS, pairwise over visits
        wide = np.full((pats.n_subjects, t), np.nan)
        wide[sid, vidx] = res
        s0 = pd.DataFrame(wide).cov(min_periods=2).to_numpy()
        v0 = np.nanvar(res) if np.isfinite(np.nanvar(res)) else 1.0
        s0 = np.where(np.isfinite(s0), s0, 0.0)
        np.fill_diagonal(s0, np.where(np.diag(s0) > 0, np.diag(s0), v0))
        ev, vec = np.linalg.eigh(s0)
        s0 = (vec * np.maximum(ev, 1e-3 * max(float(ev.max()), 1e-12))) @ vec.T

        def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
            try:
                sig = st.sigma(theta)
                e = pats.evaluate(sig, grad=True)
            except np.linalg.LinAlgError:
                return math.inf, np.zeros(len(theta))
            g = np.array([float(np.sum(e["d"] * dk)) for dk in st.dsigma(theta)])
            return float(e["dev"]), g

        th = st.start(s0)
        best = None
        for _attempt in range(3):
            r = _minimise(fun, th, gtol)
            cand = np.asarray(r.x, dtype=float)
            fc = fun(cand)[0]
            if best is None or fc < best[1]:
                best = (cand, fc)
            g = fun(best[0])[1]
            if float(np.max(np.abs(g))) < CONV_TOL:
                break
            th = best[0] + 1e-3 * np.sign(g) * -1.0
        assert best is not None
        theta, dev = best
        if not math.isfinite(dev):
            raise AnalysisInputError("the MMRM could not be fitted (REML criterion not finite)")
        sig = st.sigma(theta)
        e = pats.evaluate(sig, grad=True)
        beta = e["beta"] + beta0
        phi = np.linalg.inv(e["a"])
        phi = (phi + phi.T) / 2.0
        # gradient test in the inference parameters tau (scale-free enough, and the
        # parameters the Hessian is needed in anyway)
        gbasis, d2 = st.tau_basis(sig)
        tau = st.tau_of(sig)
        gtau = np.array([float(np.sum(e["d"] * gk)) for gk in gbasis])

        def grad_tau(tv: np.ndarray) -> np.ndarray:
            s = st.sigma_tau(tv)
            gb, _ = st.tau_basis(s)
            ee = pats.evaluate(s, grad=True)
            return np.array([float(np.sum(ee["d"] * gk)) for gk in gb])

        # Hessian of the REML criterion in tau: central differences of the analytic
        # gradient with one Richardson step (the second-order part of the convergence test,
        # and the Satterthwaite covariance of the variance parameters)
        k = len(tau)
        hh = np.zeros((k, k))
        # steps far below Sigma's smallest eigenvalue keep every evaluation positive definite
        # and in the quadratic region (demo INR: lambda_min 3.8e-5 against entries ~0.1)
        lam_min = float(np.linalg.eigvalsh(sig)[0])
        for j in range(k):
            h = 1e-4 * min(max(abs(tau[j]), 1e-8), 10.0 * lam_min)
            ej = np.zeros(k)
            ej[j] = h
            try:
                g1 = (grad_tau(tau + ej) - grad_tau(tau - ej)) / (2 * h)
                g2 = (grad_tau(tau + ej / 2) - grad_tau(tau - ej / 2)) / h
                hh[:, j] = (4 * g2 - g1) / 3
            except np.linalg.LinAlgError:
                hh[:, j] = np.nan
        hess = (hh + hh.T) / 2.0
        scaled = math.inf
        pd_ok = False
        if np.all(np.isfinite(hess)):
            try:
                ch = np.linalg.cholesky(hess)
                scaled = float(np.max(np.minimum(np.abs(np.linalg.solve(ch, gtau)),
                                                 np.abs(gtau))))
                pd_ok = True
            except np.linalg.LinAlgError:
                pd_ok = False
        converged = pd_ok and scaled < CONV_TOL
        inf = Inference(method=ddf, beta=beta, phi=phi, names=names, confidence=confidence)
        blocks = []
        for b in pats.blocks:
            idx = b["idx"]
            blk: Block = b["block"]
            blocks.append(Block(x=blk.x, sigma=sig[np.ix_(idx, idx)],
                                dsigma=[gk[np.ix_(idx, idx)] for gk in gbasis],
                                d2sigma={kk: v[np.ix_(idx, idx)] for kk, v in d2.items()},
                                _xx=b["xx"]))
        if ddf == "kenward-roger":
            inf.kr = kenward_roger(blocks, phi)
        elif ddf == "satterthwaite":
            inf.jac = [-(phi @ kr_p @ phi) for kr_p in _p_list(blocks, phi)]
            inf.a_cov = varpar_cov(hess)
        rows = [inf.contrast(np.eye(len(names))[k]) for k in range(len(names))]
        se = np.sqrt(np.diag(phi))
        fixed = pd.DataFrame(
            {"estimate": beta, "se": se, "se_adj": [r["se"] for r in rows],
             "df": [r["df"] for r in rows], "t": [r["statistic"] for r in rows],
             "p": [r["p"] for r in rows], "ci_low": [r["ci_low"] for r in rows],
             "ci_high": [r["ci_high"] for r in rows]},
            index=pd.Index(names, name="term"))
        # least-squares means on the visit (x group) grid, covariates at their means
        grid_v = list(levels)
        grid_g: list[Any] = glv if group else [None]
        lrows: dict[tuple[Any, Any], np.ndarray] = {}
        for g in grid_g:
            for v in grid_v:
                vcol = pd.Series([v])
                gcol = pd.Series([g]) if group else None
                xr, _ = design(vcol, gcol, {c: np.array([cov_means[c]]) for c in covariates})
                lrows[(v, g)] = xr[0]
        ls, ch_rows, gd_rows = [], [], []
        for g in grid_g:
            for v in grid_v:
                c = inf.contrast(lrows[(v, g)])
                ls.append({"visit": v, **({"group": g} if group else {}),
                           "estimate": c["estimate"], "se": c["se"], "df": c["df"],
                           "ci_low": c["ci_low"], "ci_high": c["ci_high"]})
                if v == baseline:
                    continue
                lc = lrows[(v, g)] - lrows[(baseline, g)]
                c = inf.contrast(lc)
                ch_rows.append({"visit": v, **({"group": g} if group else {}),
                                "estimate": c["estimate"], "se": c["se"], "df": c["df"],
                                "t": c["statistic"], "p": c["p"], "ci_low": c["ci_low"],
                                "ci_high": c["ci_high"]})
                if group and g != glv[0]:
                    ref = lrows[(v, glv[0])] - lrows[(baseline, glv[0])]
                    c = inf.contrast(lc - ref)
                    gd_rows.append({"visit": v, "group": g, "reference": glv[0],
                                    "estimate": c["estimate"], "se": c["se"], "df": c["df"],
                                    "t": c["statistic"], "p": c["p"], "ci_low": c["ci_low"],
                                    "ci_high": c["ci_high"]})
        vis_terms = [n for n in names if n.startswith(f"{visit}[") and ":" not in n]
        inter = [n for n in names if ":" in n]
        res_obj = MMRMResult(
            model=(f"{outcome} ~ {visit}" + (f" * {group}" if group else "") +
                   "".join(f" + {c}" for c in covariates) + f", {covariance} covariance over "
                   f"{visit} within {subject}"),
            covariance_structure=covariance, fixed_effects=fixed,
            covariance=pd.DataFrame(sig, index=[str(v) for v in levels],
                                    columns=[str(v) for v in levels]),
            loglik=-dev / 2.0, method="REML" if reml else "ML", ddf_method=ddf,
            converged=bool(converged), max_grad=float(np.max(np.abs(gtau))),
            n_obs=len(data), n_subjects=pats.n_subjects, n_dropped=int((~keep).sum()),
            n_patterns=len(pats.blocks), visits=list(levels), baseline=baseline,
            lsmeans=pd.DataFrame(ls), change_from_baseline=pd.DataFrame(ch_rows),
            group_differences=pd.DataFrame(gd_rows) if group else None,
            confidence=confidence, test=_DDF_LABEL[ddf], inference=inf)
        if group is None:
            res_obj.f_tests["visit"] = res_obj.f_test(vis_terms)
        elif inter:
            res_obj.f_tests["group:visit"] = res_obj.f_test(inter)
    return res_obj


def _p_list(blocks: Sequence[Block], phi: np.ndarray) -> list[np.ndarray]:
    """P_k = -X' Sigma^-1 dSigma_k Sigma^-1 X (so dPhi/dtau_k = -Phi P_k Phi)."""
    k = len(blocks[0].dsigma)
    p = phi.shape[0]
    out = [np.zeros((p, p)) for _ in range(k)]
    for b in blocks:
        si = np.linalg.inv(b.sigma)
        for j in range(k):
            out[j] -= b.xmx(si @ b.dsigma[j] @ si)
    return out
