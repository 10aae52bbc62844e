"""Linear mixed models for repeated measures (Laird & Ware 1982, Biometrics 38:963).

:func:`fit_lmm` fits ``outcome ~ time [* group]`` with a random intercept, or a random
intercept and slope on time, per subject, by REML (default) or ML, the way R ``lme4::lmer``
does (Bates, Maechler, Bolker & Walker 2015, J Stat Softw 67(1)):

1. **Profiled deviance on the relative Cholesky factor.**  beta and sigma^2 are profiled out;
   the optimizer sees only theta, the entries of Lambda (G = sigma^2 Lambda Lambda'), bounded
   by diag(Lambda) >= 0, minimised by L-BFGS-B with the analytic gradient
   (:mod:`hepatrial.analysis._reml`).  Other optimizers (``optimizers``) are tried only when the
   gradient test fails at the returned point.
2. **Honest convergence.**  ``converged`` is the gradient test at the returned point (lme4
   ``checkConv``: scaled gradient, with a second-order check on the boundary), never an
   optimizer's flag.  ``singular`` is lme4's ``isSingular`` (a diagonal of Lambda < 1e-4: a
   variance at 0 or a correlation at +-1), reported, not hidden.
3. **GLS standard errors.**  ``se`` is sqrt(diag((X' V^-1 X)^-1)) at the estimated variance
   components, as R ``vcov`` (statsmodels' ``bse_fe`` inverts the observed Hessian over
   (beta, theta) and is 5-14 % too large on unbalanced data).
4. **Small-sample inference** (``ddf``, :mod:`hepatrial.analysis.ddf`): Kenward-Roger (default;
   adjusted covariance and ddf, as R ``pbkrtest`` and SAS ``ddfm=kr``), Satterthwaite (as R
   ``lmerTest``) or Wald z.  ``t``, ``df``, ``p`` and the CI of every fixed effect use the chosen
   method (KR: the adjusted SE ``se_adj``); ``z`` and ``p_wald`` keep the Wald z test beside
   them.  F tests for the time effect and the group x time interaction are in ``f_tests``;
   :meth:`LMMResult.f_test` and :meth:`LMMResult.contrast` test anything else.

With ML the SEs equal R ``vcov()`` (lme4 and nlme); nlme's ``summary()`` additionally
multiplies ML SEs by sqrt(N/(N-p)) (``adjustSigma=TRUE``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
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
from hepatrial.analysis._reml import CONV_TOL, LMMCore
from hepatrial.analysis.ddf import Inference, kenward_roger, varpar_cov

__all__ = ["DDF_METHODS", "DEFAULT_OPTIMIZERS", "LMMResult", "fit_lmm"]

#: the first is the primary optimizer; the others are fallbacks used only when the gradient
#: test fails (names: lbfgs = L-BFGS-B, nm = Nelder-Mead, powell, bfgs, cg)
DEFAULT_OPTIMIZERS: tuple[str, ...] = ("lbfgs", "nm", "powell")
DDF_METHODS: tuple[str, ...] = ("kenward-roger", "satterthwaite", "wald")
_DDF_LABEL = {"kenward-roger": "Kenward-Roger (pbkrtest; SAS ddfm=kr)",
              "satterthwaite": "Satterthwaite (lmerTest)",
              "wald": "Wald z (normal reference distribution)"}


@dataclass
class LMMResult:
    """Result of :func:`fit_lmm`.

    ``fixed_effects`` is indexed by term with columns estimate, se (GLS, R ``vcov``), se_adj
    (the SE the test uses: KR-adjusted under Kenward-Roger, else = se), df, t, p, ci_low,
    ci_high (all by ``ddf_method``), z and p_wald (Wald z).  ``cov_re`` is the random-effects
    covariance matrix G (outcome units squared), ``residual_variance`` sigma^2.  ``loglik``
    is the REML or ML log-likelihood (R ``logLik``).  ``theta`` is lme4's relative Cholesky
    factor; ``singular`` lme4's ``isSingular``; ``converged`` the gradient test at the
    returned point (``max_grad``, ``max_scaled_grad`` against ``grad_tol``).  ``f_tests``
    holds the omnibus F tests ("time" without a group, "group:time" with one).
    """

    fixed_effects: pd.DataFrame
    cov_re: pd.DataFrame
    residual_variance: float
    loglik: float
    method: str
    optimizer: str
    converged: bool
    n_obs: int
    n_groups: int
    n_dropped: int
    dropped_reasons: dict[str, int]
    model: str
    optimizer_trials: dict[str, dict[str, Any]] = field(default_factory=dict)
    se_method: str = "GLS (X'V^-1 X)^-1 at the estimated variance components"
    test: str = _DDF_LABEL["kenward-roger"]
    confidence: float = 0.95
    ddf_method: str = "kenward-roger"
    singular: bool = False
    theta: list[float] = field(default_factory=list)
    max_grad: float = math.nan
    max_scaled_grad: float = math.nan
    grad_tol: float = CONV_TOL
    f_tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    inference: Inference | None = field(default=None, repr=False)

    @property
    def params(self) -> pd.Series:
        """Fixed-effect estimates."""
        return self.fixed_effects["estimate"]

    @property
    def bse(self) -> pd.Series:
        """GLS standard errors of the fixed effects."""
        return self.fixed_effects["se"]

    @property
    def cor_re(self) -> pd.DataFrame:
        """Random-effects correlation matrix."""
        g = self.cov_re.to_numpy()
        sd = np.sqrt(np.diag(g))
        with np.errstate(invalid="ignore", divide="ignore"):
            c = g / np.outer(sd, sd)
        return pd.DataFrame(c, index=self.cov_re.index, columns=self.cov_re.columns)

    def _weights(self, weights: dict[str, float] | Sequence[str]) -> np.ndarray:
        names = list(self.fixed_effects.index)
        items = weights.items() if isinstance(weights, dict) else ((t, 1.0) for t in weights)
        vec = np.zeros(len(names))
        for term, w in items:
            if term not in names:
                raise AnalysisInputError(f"term {term!r} not in the model; terms: {names}")
            vec[names.index(term)] = float(w)
        return vec

    def contrast(self, weights: dict[str, float]) -> dict[str, float]:
        """t test and CI of sum_k w_k beta_k by ``ddf_method``, e.g. ``{"visit[W24]": 1,
        "visit[W8]": -1}``: estimate, se, df, statistic, p, ci_low, ci_high."""
        assert self.inference is not None
        return self.inference.contrast(self._weights(weights))

    def f_test(self, terms: Sequence[str]) -> dict[str, Any]:
        """F test that all ``terms`` are 0 by ``ddf_method`` (KR: scaled F, pbkrtest
        ``KRmodcomp``; Satterthwaite: lmerTest ``contestMD``; Wald: chi-square / q)."""
        assert self.inference is not None
        rows = [self._weights([t]) for t in terms]
        out = self.inference.ftest(np.vstack(rows))
        out["terms"] = list(terms)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and infinite df -> None)."""
        fe = {
            str(term): {**{k: float(v) for k, v in row.items()}, "method": self.ddf_method}
            for term, row in self.fixed_effects.iterrows()
        }
        cov = {str(r): {str(c): float(self.cov_re.loc[r, c]) for c in self.cov_re.columns}
               for r in self.cov_re.index}
        cor = self.cor_re
        corr = {str(r): {str(c): float(cor.loc[r, c]) for c in cor.columns} for r in cor.index}
        out = {
            "model": self.model,
            "fixed_effects": fe,
            "variance_components": {
                "random_effects_cov": cov,
                "random_effects_corr": corr,
                "residual_variance": self.residual_variance,
            },
            "loglik": self.loglik,
            "method": self.method,
            "ddf_method": self.ddf_method,
            "optimizer": self.optimizer,
            "converged": self.converged,
            "singular": self.singular,
            "theta": list(self.theta),
            "gradient": {"max_abs": self.max_grad, "max_scaled": self.max_scaled_grad,
                         "tolerance": self.grad_tol},
            "f_tests": self.f_tests,
            "n_obs": self.n_obs,
            "n_groups": self.n_groups,
            "n_dropped": self.n_dropped,
            "dropped_reasons": dict(self.dropped_reasons),
            "optimizer_trials": self.optimizer_trials,
            "se_method": self.se_method,
            "test": self.test,
            "confidence": self.confidence,
        }
        result: dict[str, Any] = _finite(nan_to_none(out))
        return result


def _finite(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and math.isinf(x):
        return None
    return x


def _levels(s: pd.Series) -> list[Any]:
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.dropna())
        return [v for v in s.cat.categories if v in present]
    vals = list(pd.unique(s.dropna()))
    if pd.api.types.is_numeric_dtype(s):
        return sorted(vals)
    return sorted(vals, key=str)


def _design(
    data: pd.DataFrame,
    time: str,
    time_num: pd.Series | None,
    group: str | None,
    time_type: str,
    random: str,
    time_levels: list[Any],
) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    n = len(data)
    cols: list[np.ndarray] = [np.ones(n)]
    names = ["Intercept"]
    time_cols: list[tuple[str, np.ndarray]] = []
    if time_type == "continuous":
        assert time_num is not None
        time_cols.append((time, time_num.to_numpy(dtype=float)))
    else:
        lv = time_levels
        if len(lv) < 2:
            raise AnalysisInputError(f"column {time!r}: categorical time needs >= 2 levels",
                                     column=time)
        for level in lv[1:]:
            time_cols.append((f"{time}[{level}]", (data[time] == level).to_numpy(dtype=float)))
    for nm, c in time_cols:
        names.append(nm)
        cols.append(c)
    if group is not None:
        glv = _levels(data[group])
        if len(glv) < 2:
            raise AnalysisInputError(f"column {group!r}: needs at least 2 groups", column=group)
        gcols = [(f"{group}[{g}]", (data[group] == g).to_numpy(dtype=float)) for g in glv[1:]]
        for nm, c in gcols:
            names.append(nm)
            cols.append(c)
        for tn, tc in time_cols:
            for gn, gc in gcols:
                names.append(f"{tn}:{gn}")
                cols.append(tc * gc)
    exog = np.column_stack(cols)
    if np.linalg.matrix_rank(exog) < exog.shape[1]:
        raise AnalysisInputError("fixed-effects design is rank deficient (check time/group)")
    re_names = ["Intercept"]
    re_cols = [np.ones(n)]
    if random == "slope":
        assert time_num is not None
        re_names.append(time)
        re_cols.append(time_num.to_numpy(dtype=float))
    return exog, names, np.column_stack(re_cols), re_names


def fit_lmm(
    df: pd.DataFrame,
    subject: str,
    time: str,
    outcome: str,
    *,
    log: bool = False,
    random: Literal["intercept", "slope"] = "intercept",
    time_type: Literal["continuous", "categorical"] = "continuous",
    group: str | None = None,
    reml: bool = True,
    time_reference: Any = None,
    time_order: Sequence[Any] | None = None,
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    polish: bool = True,
    gtol: float = 1e-9,
    confidence: float = 0.95,
    ddf: Literal["kenward-roger", "satterthwaite", "wald"] = "kenward-roger",
) -> LMMResult:
    """Fit a linear mixed model ``outcome ~ time (* group)`` with random effects by ``subject``.

    Parameters
    ----------
    df:
        Tidy data, one row per observation.
    subject, time, outcome:
        Column names.  ``time`` must be numeric unless ``time_type="categorical"`` (then the
        first level — numeric order or categorical order — is the reference), and numeric for
        ``random="slope"``.
    log:
        Model the natural log of the outcome (values must be > 0).
    random:
        ``"intercept"`` (``(1 | subject)``) or ``"slope"`` (``(1 + time | subject)``,
        unstructured 2x2 G).
    time_reference, time_order:
        Categorical time only: the reference level (default: the first visit in chronological
        order — pass the baseline visit, e.g. ``"D0"``, when there is a screening visit) and
        the level order (default: ``nominal_day``, numeric or first-appearance order).
    group:
        Arm column: adds group and group x time interaction terms (first level is reference).
    reml:
        REML (default, R's default) or ML.
    optimizers:
        The first is the primary optimizer of the profiled deviance (default L-BFGS-B); the
        others are tried, in turn, only while the gradient test fails.  The best deviance wins.
    polish, gtol:
        Polish a derivative-free fallback's result with L-BFGS-B; gradient tolerance of
        L-BFGS-B.
    ddf:
        ``"kenward-roger"`` (default; REML only), ``"satterthwaite"`` or ``"wald"``.

    Rows with a missing outcome or time are dropped and counted (``n_dropped``,
    ``dropped_reasons``); a missing subject, a non-numeric or (with ``log``) non-positive value
    raises :class:`AnalysisInputError` naming the column and row.
    """
    if random not in ("intercept", "slope"):
        raise AnalysisInputError(f"random must be 'intercept' or 'slope', got {random!r}")
    if time_type not in ("continuous", "categorical"):
        raise AnalysisInputError(
            f"time_type must be 'continuous' or 'categorical', got {time_type!r}"
        )
    if ddf not in DDF_METHODS:
        raise AnalysisInputError(f"ddf must be one of {', '.join(DDF_METHODS)}; got {ddf!r}")
    if ddf == "kenward-roger" and not reml:
        raise AnalysisInputError("Kenward-Roger needs a REML fit; use ddf='satterthwaite' or "
                                 "'wald' with ML")
    require_columns(df, [subject, time, outcome, group])
    check_by(df, None)  # one outcome at a time: refuse a frame mixing analytes
    check_no_missing_keys(df, [subject] + ([group] if group else []))
    y_all = numeric_column(df, outcome)
    need_numeric_time = time_type == "continuous" or random == "slope"
    t_all = numeric_column(df, time) if need_numeric_time else None
    miss_y = y_all.isna()
    miss_t = df[time].isna()
    keep = ~(miss_y | miss_t)
    reasons = {"missing_outcome": int(miss_y.sum()), "missing_time": int((miss_t & ~miss_y).sum())}
    data = df.loc[keep].copy()
    y = y_all.loc[keep]
    if log:
        nonpos = y <= 0
        if bool(nonpos.any()):
            row = nonpos[nonpos].index[0]
            raise AnalysisInputError(
                f"column {outcome!r}, row {row}: value {y.loc[row]!r} <= 0 cannot be logged",
                column=outcome, row=row)
        y = np.log(y)
    data["__y"] = y
    if t_all is not None:
        data["__t"] = t_all.loc[keep]
    order = np.lexsort((np.arange(len(data)), data[subject].astype(str).to_numpy()))
    data = data.iloc[order]
    if data[subject].nunique() < 2:
        raise AnalysisInputError(f"column {subject!r}: need at least 2 subjects", column=subject)
    time_num = data["__t"] if t_all is not None else None
    time_levels: list[Any] = []
    if time_type == "categorical":
        time_levels, _ = chronological_visits(data, time, time_order)
        time_levels = [v for v in time_levels if v in set(data[time])]
        if time_reference is not None:
            if time_reference not in time_levels:
                raise AnalysisInputError(
                    f"column {time!r}: reference level {time_reference!r} not found", column=time)
            time_levels = [time_reference] + [v for v in time_levels if v != time_reference]
    exog, names, exog_re, re_names = _design(data, time, time_num, group, time_type, random,
                                             time_levels)
    endog = data["__y"].to_numpy(dtype=float)
    codes = pd.factorize(data[subject].astype(str).to_numpy())[0]
    if exog.shape[0] <= exog.shape[1]:
        raise AnalysisInputError(
            f"{exog.shape[0]} observations cannot estimate {exog.shape[1]} fixed effects")
    with threadpool_limits(1, user_api="blas"):  # tiny products: threads only cost CPU
        core = LMMCore(endog, exog, exog_re, codes, reml=reml)
        try:
            fit = core.fit(optimizers=optimizers, gtol=gtol, polish=polish)
        except ValueError as exc:
            raise AnalysisInputError(str(exc)) from exc
        if not math.isfinite(fit.deviance):
            raise AnalysisInputError("the mixed model could not be fitted (deviance not finite)")
        phi = core.vcov(fit)
        inf = Inference(method=ddf, beta=fit.beta, phi=phi, names=names, confidence=confidence)
        if ddf == "kenward-roger":
            inf.kr = kenward_roger(core.kr_blocks(fit), phi)
        elif ddf == "satterthwaite":
            jac, hess = core.satterthwaite_pieces(fit)
            inf.jac, inf.a_cov = jac, varpar_cov(hess)
        rows = [inf.contrast(np.eye(len(names))[k]) for k in range(len(names))]
    se = np.sqrt(np.diag(phi))
    z = fit.beta / se
    fixed = pd.DataFrame(
        {"estimate": fit.beta, "se": se, "se_adj": [r["se"] for r in rows],
         "df": [r["df"] for r in rows], "t": [r["statistic"] for r in rows],
         "p": [r["p"] for r in rows], "ci_low": [r["ci_low"] for r in rows],
         "ci_high": [r["ci_high"] for r in rows], "z": z,
         "p_wald": 2.0 * stats.norm.sf(np.abs(z))},
        index=pd.Index(names, name="term"),
    )
    psi = fit.lam @ fit.lam.T
    cov_re = pd.DataFrame(psi * fit.sigma2, index=re_names, columns=re_names)
    lhs = f"log({outcome})" if log else outcome
    t_term = time if time_type == "continuous" else f"factor({time})"
    rhs = f"{t_term} * {group}" if group else t_term
    re_txt = f"(1 + {time} | {subject})" if random == "slope" else f"(1 | {subject})"
    trials = {k: {"llf": (-v["deviance"] / 2.0 if v["deviance"] is not None else None),
                  "converged": v["passed"], "max_grad": v["max_grad"],
                  "n_evaluations": v["n_evaluations"]}
              for k, v in fit.trials.items()}
    res = LMMResult(
        fixed_effects=fixed,
        cov_re=cov_re,
        residual_variance=float(fit.sigma2),
        loglik=-fit.deviance / 2.0,
        method="REML" if reml else "ML",
        optimizer=fit.optimizer,
        converged=fit.converged,
        n_obs=len(data),
        n_groups=core.n_groups,
        n_dropped=int((~keep).sum()),
        dropped_reasons=reasons,
        model=f"{lhs} ~ {rhs} + {re_txt}",
        optimizer_trials=trials,
        test=_DDF_LABEL[ddf],
        confidence=confidence,
        ddf_method=ddf,
        singular=fit.singular,
        theta=[float(t) for t in fit.theta],
        max_grad=fit.max_grad,
        max_scaled_grad=fit.max_scaled_grad,
        inference=inf,
    )
    time_terms = [n for n in names if n == time or n.startswith(f"{time}[")]
    time_terms = [n for n in time_terms if ":" not in n]
    with threadpool_limits(1, user_api="blas"):
        if group is None and time_terms:
            res.f_tests["time"] = res.f_test(time_terms)
        if group is not None:
            inter = [n for n in names if ":" in n]
            if inter:
                res.f_tests["group:time"] = res.f_test(inter)
    return res
