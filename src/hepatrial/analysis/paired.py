"""Per-visit comparisons with baseline: paired t-test, Wilcoxon signed-rank, effect sizes.

Methods
-------
* Paired t-test (Student 1908) on the within-participant change d = visit - baseline, with the
  t-based confidence interval of the mean change; same numbers as R ``t.test(paired=TRUE)``.
* Wilcoxon signed-rank test (Wilcoxon 1945) and the Hodges–Lehmann estimate with its
  confidence interval: :mod:`hepatrial.analysis.wilcoxon` (exact conditional distribution with
  ties and zeros at any n, as ``coin::wilcoxsign_test(distribution = "exact")``; R's normal
  approximation; ``zero_method`` "wilcoxon" (zeros dropped, as R) or "pratt"; ranking at
  ``digits_rank`` significant digits).  Every result names the method actually used
  (``wilcoxon_method`` in words, ``wilcoxon_method_used`` "exact" or "asymptotic").
* Standardised effect sizes for paired designs (Lakens 2013, Front Psychol 4:863,
  doi:10.3389/fpsyg.2013.00863): d_z = mean(d)/sd(d) and the small-sample corrected
  g_z = d_z * (1 - 3/(4(n-1) - 1)) (Hedges & Olkin 1985).  Not pingouin's paired ``cohen_d``,
  which is d_av.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

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
from hepatrial.analysis.multiplicity import min_attainable_p
from hepatrial.analysis.wilcoxon import (
    DIGITS_RANK_DEFAULT,
    EXACT_MAX_N,
    WilcoxonMethod,
    ZeroMethod,
    wilcoxon_signed_rank,
)

__all__ = ["effect_sizes", "paired_test", "paired_vs_baseline", "wilcoxon_signed_rank"]


def effect_sizes(diff: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Cohen's d_z and Hedges' g_z for paired differences (Lakens 2013, eqs. 6 and 4).

    d_z = mean(d) / sd(d) (sd with n-1); g_z = d_z * (1 - 3 / (4 (n - 1) - 1)).
    NaN when n < 2 or sd = 0 (g_z also needs n >= 3).
    """
    d = np.asarray(diff, dtype=float)
    n = d.size
    if n < 2:
        return {"d_z": float("nan"), "g_z": float("nan")}
    sd = float(np.std(d, ddof=1))
    if sd == 0.0:
        return {"d_z": float("nan"), "g_z": float("nan")}
    d_z = float(np.mean(d)) / sd
    denom = 4.0 * (n - 1) - 1.0
    g_z = d_z * (1.0 - 3.0 / denom) if n >= 3 else float("nan")
    return {"d_z": d_z, "g_z": g_z}


def paired_test(
    baseline: Sequence[float] | np.ndarray,
    followup: Sequence[float] | np.ndarray,
    *,
    wilcoxon: WilcoxonMethod = "exact",
    correction: bool = True,
    confidence: float = 0.95,
    zero_method: ZeroMethod = "wilcoxon",
    digits_rank: int | None = DIGITS_RANK_DEFAULT,
    exact_max_n: int | None = EXACT_MAX_N,
) -> dict[str, Any]:
    """Paired comparison of two equal-length arrays; differences are ``followup - baseline``.

    Pairs with a missing value on either side are an error here (use
    :func:`paired_vs_baseline` for data with missing visits, which counts exclusions).
    ``wilcoxon``, ``correction``, ``zero_method``, ``digits_rank``, ``exact_max_n``: see
    :func:`hepatrial.analysis.wilcoxon.wilcoxon_signed_rank`; ``confidence`` is the level of
    both the t interval and the Hodges–Lehmann interval.

    Returns n_pairs, mean_baseline, mean_followup, mean_diff, sd_diff, ci_low, ci_high,
    t, df, p_t, wilcoxon_V, p_wilcoxon, wilcoxon_method (in words), wilcoxon_method_used
    ("exact" or "asymptotic"), wilcoxon_zero_method, wilcoxon_digits_rank, wilcoxon_ties,
    n_zero_diff, hl_estimate, hl_ci_low, hl_ci_high, hl_ci_level (achieved level),
    hl_ci_method, d_z, g_z and min_p_exact (the smallest two-sided p any exact sign-based test
    can reach with these pairs).
    """
    x = np.asarray(baseline, dtype=float)
    y = np.asarray(followup, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise AnalysisInputError("baseline and followup must be 1-D arrays of the same length")
    if np.isnan(x).any() or np.isnan(y).any():
        raise AnalysisInputError("paired_test: missing values in the pairs; drop pairs explicitly")
    d = y - x
    n = int(d.size)
    res: dict[str, Any] = {
        "n_pairs": n,
        "mean_baseline": float(np.mean(x)) if n else float("nan"),
        "mean_followup": float(np.mean(y)) if n else float("nan"),
        "mean_diff": float(np.mean(d)) if n else float("nan"),
        "sd_diff": float(np.std(d, ddof=1)) if n > 1 else float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "t": float("nan"),
        "df": float(n - 1) if n > 1 else float("nan"),
        "p_t": float("nan"),
    }
    if n > 1 and res["sd_diff"] > 0:
        tt = stats.ttest_1samp(d, 0.0)
        ci = tt.confidence_interval(confidence_level=confidence)
        res.update(t=float(tt.statistic), p_t=float(tt.pvalue),
                   ci_low=float(ci.low), ci_high=float(ci.high))
    w = (wilcoxon_signed_rank(d, method=wilcoxon, correction=correction,
                              zero_method=zero_method, digits_rank=digits_rank,
                              exact_max_n=exact_max_n, conf_level=confidence)
         if n else None)
    nan = float("nan")
    res["wilcoxon_V"] = w["V"] if w else nan
    res["p_wilcoxon"] = w["p"] if w else nan
    res["wilcoxon_method"] = w["method"] if w else None
    res["wilcoxon_method_used"] = w["method_used"] if w else None
    res["wilcoxon_zero_method"] = zero_method
    res["wilcoxon_digits_rank"] = digits_rank
    res["wilcoxon_ties"] = w["ties"] if w else False
    res["n_zero_diff"] = w["n_zero"] if w else 0
    for key in ("estimate", "ci_low", "ci_high", "ci_level"):
        res[f"hl_{key}"] = w[f"hl_{key}"] if w else nan
    res["hl_ci_method"] = w["hl_ci_method"] if w else None
    res.update(effect_sizes(d))
    res["min_p_exact"] = min_attainable_p(w["n_used"]) if w and w["n_used"] else float("nan")
    return res


def paired_vs_baseline(
    df: pd.DataFrame,
    *,
    baseline: Any,
    subject: str = "participant_id",
    visit: str = "visit",
    outcome: str = "value",
    by: str | None = None,
    visits: Sequence[Any] | None = None,
    wilcoxon: WilcoxonMethod = "exact",
    correction: bool = True,
    confidence: float = 0.95,
    zero_method: ZeroMethod = "wilcoxon",
    digits_rank: int | None = DIGITS_RANK_DEFAULT,
    exact_max_n: int | None = EXACT_MAX_N,
) -> pd.DataFrame:
    """Compare every post-baseline visit with baseline, per outcome.

    Parameters
    ----------
    df:
        Tidy data, one row per subject x visit (x ``by`` level), e.g. the analysis dataset
        (docs/contracts.md §1) with ``by="analyte"``.
    baseline:
        The baseline visit level (``"D0"`` in kharaziha2009).
    visits:
        Chronological visit order (default: see :func:`hepatrial.analysis._common.visit_order`).
    wilcoxon, correction, zero_method, digits_rank, exact_max_n:
        Wilcoxon signed-rank options; see
        :func:`hepatrial.analysis.wilcoxon.wilcoxon_signed_rank`.

    Returns
    -------
    One row per outcome x post-baseline visit with the columns of :func:`paired_test` plus
    ``outcome``, ``visit``, ``n_subjects`` (participants in ``df``), ``n_excluded``,
    ``excluded_missing_baseline``, ``excluded_missing_visit``, ``excluded_missing_both``
    (n_subjects = n_pairs + n_excluded; nothing is dropped silently).
    """
    require_columns(df, [subject, visit, outcome, by])
    check_no_missing_keys(df, [subject, visit])
    values = numeric_column(df, outcome)
    data = df.assign(**{outcome: values})
    keys = [subject, visit] + ([by] if by else [])
    check_by(data, by)
    check_unique(data, keys)
    levels = visit_order(data, visit, baseline=baseline, order=visits)
    all_subjects = sorted(pd.unique(data[subject]), key=str)
    rows: list[dict[str, Any]] = []
    for label, g in split_by(data, by, default_label=outcome):
        wide = g.pivot(index=subject, columns=visit, values=outcome).reindex(all_subjects)
        base = wide[baseline] if baseline in wide.columns else pd.Series(np.nan, index=wide.index)
        for v in levels[1:]:
            fu = wide[v] if v in wide.columns else pd.Series(np.nan, index=wide.index)
            ok = base.notna() & fu.notna()
            res = paired_test(base[ok].to_numpy(), fu[ok].to_numpy(), wilcoxon=wilcoxon,
                              correction=correction, confidence=confidence,
                              zero_method=zero_method, digits_rank=digits_rank,
                              exact_max_n=exact_max_n)
            miss_b = base.isna() & fu.notna()
            miss_v = base.notna() & fu.isna()
            miss_both = base.isna() & fu.isna()
            row: dict[str, Any] = {
                "outcome": label,
                "visit": v,
                "n_subjects": len(all_subjects),
                "n_excluded": int((~ok).sum()),
                "excluded_missing_baseline": int(miss_b.sum()),
                "excluded_missing_visit": int(miss_v.sum()),
                "excluded_missing_both": int(miss_both.sum()),
            }
            row.update(res)
            rows.append(row)
    return pd.DataFrame(rows)
