"""Linear mixed models for repeated measures (Laird & Ware 1982, Biometrics 38:963).

:func:`fit_lmm` fits ``outcome ~ time [* group]`` with a random intercept, or a random
intercept and slope on time, per subject, by REML (default) or ML on statsmodels ``MixedLM``,
and makes the result agree with R ``nlme::lme`` / ``lme4::lmer``:

1. **Several optimizers.**  statsmodels' default optimizer can stop at a wrong optimum
   (pbcseq ``albumin ~ year``, random slope: llf -1117.27 instead of -966.04).  The model is
   fitted with each of ``optimizers`` (default lbfgs, bfgs, cg, powell, nm); among the converged
   fits the one with the highest log-likelihood is kept.
2. **Polishing.**  From that fit the profiled (RE)ML criterion is maximised once more over the
   variance parameters with SciPy BFGS, the analytic gradient and a tight tolerance
   (``gtol``), so estimates do not depend on the optimizer's stopping rule (pbcseq: the
   optimizers' estimates differ from each other by up to 2e-5 relative before polishing).
3. **GLS standard errors.**  statsmodels' ``bse_fe`` inverts the observed Hessian over
   (beta, theta) and is 5-14 % too large on unbalanced data.  R (and SAS) report
   cov(beta) = (X' V^-1 X)^-1 with V_i = Z_i G Z_i' + sigma^2 I evaluated at the estimated
   variance components; that is what is reported here.

With ML the SEs equal R ``vcov()`` (lme4 and nlme); nlme's ``summary()`` additionally
multiplies ML SEs by sqrt(N/(N-p)) (``adjustSigma=TRUE``).

Tests are Wald z tests (p from the normal distribution, as statsmodels; R lme uses t with
containment df, lmerTest Satterthwaite df — with few subjects the z p-values are too small).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

from hepatrial.analysis._common import (
    AnalysisInputError,
    check_by,
    check_no_missing_keys,
    chronological_visits,
    nan_to_none,
    numeric_column,
    require_columns,
)

__all__ = ["DEFAULT_OPTIMIZERS", "LMMResult", "fit_lmm"]

DEFAULT_OPTIMIZERS: tuple[str, ...] = ("lbfgs", "bfgs", "cg", "powell", "nm")


@dataclass
class LMMResult:
    """Result of :func:`fit_lmm`.

    ``fixed_effects`` is indexed by term with columns estimate, se (GLS), z, p, ci_low,
    ci_high.  ``cov_re`` is the random-effects covariance matrix G (outcome units squared),
    ``residual_variance`` sigma^2.  ``loglik`` is the REML or ML log-likelihood (R
    ``logLik``).  ``optimizer`` names the optimizer whose fit was kept (``+polish`` when the
    final BFGS polish moved it); ``optimizer_trials`` has llf and convergence per optimizer.
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
    test: str = "Wald z (normal reference distribution)"
    confidence: float = 0.95

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        fe = {
            str(term): {k: float(v) for k, v in row.items()}
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
            "optimizer": self.optimizer,
            "converged": self.converged,
            "n_obs": self.n_obs,
            "n_groups": self.n_groups,
            "n_dropped": self.n_dropped,
            "dropped_reasons": dict(self.dropped_reasons),
            "optimizer_trials": self.optimizer_trials,
            "se_method": self.se_method,
            "test": self.test,
            "confidence": self.confidence,
        }
        result: dict[str, Any] = nan_to_none(out)
        return result


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


def _gls_cov(model: MixedLM, cov_re_rel: np.ndarray, scale: float) -> np.ndarray:
    k = model.k_fe
    info = np.zeros((k, k))
    for x, z in zip(model.exog_li, model.exog_re_li, strict=True):
        v = z @ cov_re_rel @ z.T + np.eye(x.shape[0])
        info += x.T @ np.linalg.solve(v, x)
    cov: np.ndarray = scale * np.linalg.inv(info)
    return cov


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
        statsmodels optimizers tried; the converged fit with the best llf is kept.
    polish, gtol:
        Final SciPy BFGS polish of the variance parameters with gradient tolerance ``gtol``.

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
    groups = data[subject].astype(str).to_numpy()
    model = MixedLM(endog, exog, groups=groups, exog_re=exog_re)

    trials: dict[str, dict[str, Any]] = {}
    best: Any = None
    best_key: tuple[bool, float] = (False, -math.inf)
    best_name = ""
    for opt in optimizers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = model.fit(reml=reml, method=opt)
            except Exception as exc:  # optimizer failures are recorded, not fatal
                trials[opt] = {"llf": None, "converged": False, "error": str(exc)}
                continue
        llf = float(res.llf)
        ok = bool(res.converged) and math.isfinite(llf)
        trials[opt] = {"llf": llf if math.isfinite(llf) else None, "converged": bool(res.converged)}
        key = (ok, llf if math.isfinite(llf) else -math.inf)
        if key > best_key:
            best, best_key, best_name = res, key, opt
    if best is None:
        raise AnalysisInputError("the mixed model could not be fitted with any optimizer")

    model.reml = reml
    pobj = best.params_object
    x0 = pobj.get_packed(use_sqrt=model.use_sqrt, has_fe=False)

    def unpack(x: np.ndarray) -> MixedLMParams:
        return MixedLMParams.from_packed(x, model.k_fe, model.k_re, model.use_sqrt, has_fe=False)

    def negll(x: np.ndarray) -> float:
        return -float(model.loglike(unpack(x), profile_fe=True))

    def neggrad(x: np.ndarray) -> np.ndarray:
        g: np.ndarray = -np.asarray(model.score(unpack(x), profile_fe=True), dtype=float)
        return g

    converged = bool(best_key[0])
    optimizer = best_name
    x_final = x0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f0 = negll(x0)
        if polish:
            opt_res = optimize.minimize(negll, x0, jac=neggrad, method="BFGS",
                                        options={"gtol": gtol, "maxiter": 1000})
            if np.all(np.isfinite(opt_res.x)) and float(opt_res.fun) <= f0:
                x_final = opt_res.x
                if not np.allclose(x_final, x0, rtol=0, atol=1e-12):
                    optimizer = f"{best_name}+polish"
                grad_ok = float(np.max(np.abs(neggrad(x_final)))) < 1e-4
                converged = converged or (bool(opt_res.success) and grad_ok)
        params = unpack(x_final)
        fe, _ = model.get_fe_params(params.cov_re, params.vcomp)
        scale = float(model.get_scale(fe, params.cov_re, params.vcomp))
        loglik = -negll(x_final)
    cov_rel = np.asarray(params.cov_re, dtype=float)
    cov_fe = _gls_cov(model, cov_rel, scale)
    se = np.sqrt(np.diag(cov_fe))
    z = fe / se
    p = 2.0 * stats.norm.sf(np.abs(z))
    q = stats.norm.ppf(0.5 + confidence / 2.0)
    fixed = pd.DataFrame(
        {"estimate": fe, "se": se, "z": z, "p": p, "ci_low": fe - q * se, "ci_high": fe + q * se},
        index=pd.Index(names, name="term"),
    )
    cov_re = pd.DataFrame(cov_rel * scale, index=re_names, columns=re_names)
    lhs = f"log({outcome})" if log else outcome
    t_term = time if time_type == "continuous" else f"factor({time})"
    rhs = f"{t_term} * {group}" if group else t_term
    re_txt = f"(1 + {time} | {subject})" if random == "slope" else f"(1 | {subject})"
    return LMMResult(
        fixed_effects=fixed,
        cov_re=cov_re,
        residual_variance=scale,
        loglik=float(loglik),
        method="REML" if reml else "ML",
        optimizer=optimizer,
        converged=converged,
        n_obs=len(data),
        n_groups=int(model.n_groups),
        n_dropped=int((~keep).sum()),
        dropped_reasons=reasons,
        model=f"{lhs} ~ {rhs} + {re_txt}",
        optimizer_trials=trials,
        confidence=confidence,
    )
