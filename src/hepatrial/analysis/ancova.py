"""ANCOVA of each post-baseline visit for randomised protocols.

At every visit: ``response ~ arm + baseline`` by ordinary least squares (statsmodels OLS),
with response the change from baseline (default) or the value itself — the arm difference is
the same either way (Senn 2006, Stat Med 25:4334; Vickers & Altman 2001, BMJ 323:1123).
EMA Guideline on adjustment for baseline covariates (2015) recommends this analysis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm

from hepatrial.analysis._common import (
    AnalysisInputError,
    check_by,
    check_no_missing_keys,
    check_unique,
    numeric_column,
    require_columns,
    split_by,
    visit_order,
)

__all__ = ["ancova_by_visit"]


def ancova_by_visit(
    df: pd.DataFrame,
    *,
    baseline: Any,
    arm: str = "arm",
    subject: str = "participant_id",
    visit: str = "visit",
    outcome: str = "value",
    by: str | None = None,
    visits: Sequence[Any] | None = None,
    reference_arm: Any = None,
    response: Literal["change", "value"] = "change",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per outcome x post-baseline visit x non-reference arm: adjusted arm difference.

    Returns columns outcome, visit, arm, reference_arm, estimate (arm - reference, adjusted
    for baseline), se, t, df (residual), p, ci_low, ci_high, baseline_coef, n_used,
    n_excluded (participants without both values), n_arm, n_reference.
    ``reference_arm`` defaults to the first arm in sorted order.
    """
    if response not in ("change", "value"):
        raise AnalysisInputError(f"response must be 'change' or 'value', got {response!r}")
    require_columns(df, [subject, visit, outcome, arm, by])
    check_no_missing_keys(df, [subject, visit, arm])
    data = df.assign(**{outcome: numeric_column(df, outcome)})
    check_by(data, by)
    check_unique(data, [subject, visit] + ([by] if by else []))
    arms_per_subject = data.groupby(subject)[arm].nunique()
    if bool((arms_per_subject > 1).any()):
        s = arms_per_subject[arms_per_subject > 1].index[0]
        raise AnalysisInputError(f"column {arm!r}: participant {s!r} has more than one arm",
                                 column=arm)
    subj_arm = data.groupby(subject)[arm].first()
    arms = sorted(pd.unique(subj_arm), key=str)
    if len(arms) < 2:
        raise AnalysisInputError(f"column {arm!r}: ANCOVA needs at least 2 arms", column=arm)
    ref = arms[0] if reference_arm is None else reference_arm
    if ref not in arms:
        raise AnalysisInputError(f"reference arm {ref!r} not in column {arm!r}", column=arm)
    others = [a for a in arms if a != ref]
    levels = visit_order(data, visit, baseline=baseline, order=visits)
    rows: list[dict[str, Any]] = []
    for label, g in split_by(data, by, default_label=outcome):
        wide = g.pivot(index=subject, columns=visit, values=outcome).reindex(subj_arm.index)
        base = wide[baseline] if baseline in wide.columns else pd.Series(np.nan, index=wide.index)
        for v in levels[1:]:
            fu = wide[v] if v in wide.columns else pd.Series(np.nan, index=wide.index)
            ok = (base.notna() & fu.notna()).to_numpy()
            b = base.to_numpy()[ok]
            y = fu.to_numpy()[ok] - (b if response == "change" else 0.0)
            a = subj_arm.to_numpy()[ok]
            cols = [np.ones(ok.sum())] + [(a == o).astype(float) for o in others] + [b]
            x = np.column_stack(cols)
            base_row = {"outcome": label, "visit": v, "reference_arm": ref,
                        "n_used": int(ok.sum()), "n_excluded": int((~ok).sum()),
                        "n_reference": int((a == ref).sum())}
            fit = None
            if ok.sum() > x.shape[1] and np.linalg.matrix_rank(x) == x.shape[1]:
                fit = sm.OLS(y, x).fit()
            for j, o in enumerate(others, start=1):
                row = dict(base_row, arm=o, n_arm=int((a == o).sum()))
                if fit is None:
                    row.update(estimate=np.nan, se=np.nan, t=np.nan, df=np.nan, p=np.nan,
                               ci_low=np.nan, ci_high=np.nan, baseline_coef=np.nan)
                else:
                    ci = fit.conf_int(alpha=1 - confidence)
                    row.update(estimate=float(fit.params[j]), se=float(fit.bse[j]),
                               t=float(fit.tvalues[j]), df=float(fit.df_resid),
                               p=float(fit.pvalues[j]), ci_low=float(ci[j, 0]),
                               ci_high=float(ci[j, 1]), baseline_coef=float(fit.params[-1]))
                rows.append(row)
    cols_out = ["outcome", "visit", "arm", "reference_arm", "estimate", "se", "t", "df", "p",
                "ci_low", "ci_high", "baseline_coef", "n_used", "n_excluded", "n_arm",
                "n_reference"]
    return pd.DataFrame(rows, columns=cols_out)
