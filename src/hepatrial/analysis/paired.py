"""Per-visit comparisons with baseline: paired t-test, Wilcoxon signed-rank, effect sizes.

Methods
-------
* Paired t-test (Student 1908) on the within-participant change d = visit - baseline, with the
  t-based confidence interval of the mean change; same numbers as R ``t.test(paired=TRUE)``.
* Wilcoxon signed-rank test (Wilcoxon 1945) with zero differences dropped (Wilcoxon's
  ``zero_method``; R does the same).  Two p-value methods:

  - ``"exact"`` (default) follows SciPy's rule for ``method='auto'``: the exact null
    distribution when there are neither ties nor zero differences; with ties or zeros and
    n <= 13 an exhaustive sign-flip permutation test (all 2**n sign vectors, deterministic,
    equal to ``coin::wilcoxsign_test(distribution="exact")``); with ties or zeros and n > 13 the
    normal approximation, continuity-corrected unless ``correction=False`` (as R; SciPy's own
    fallback is uncorrected) — ``wilcoxon_method`` then reports ``"asymptotic (fallback)"``.
  - ``"asymptotic"``: the normal approximation with continuity correction, as R's
    ``wilcox.test(paired=TRUE)`` does whenever there are ties or zeros (SciPy
    ``method='asymptotic', correction=True``).

  The statistic ``V`` is R's: the sum of the ranks of the positive differences.
* Standardised effect sizes for paired designs (Lakens 2013, Front Psychol 4:863,
  doi:10.3389/fpsyg.2013.00863): d_z = mean(d)/sd(d) and the small-sample corrected
  g_z = d_z * (1 - 3/(4(n-1) - 1)) (Hedges & Olkin 1985).  Not pingouin's paired ``cohen_d``,
  which is d_av.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

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

WilcoxonMethod = Literal["exact", "asymptotic"]

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


def wilcoxon_signed_rank(
    diff: Sequence[float] | np.ndarray,
    *,
    method: WilcoxonMethod = "exact",
    correction: bool = True,
) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired differences (Wilcoxon 1945).

    Zero differences are dropped (``n_zero`` reports how many).  ``method="exact"`` uses
    SciPy's exact/permutation rule (see module docstring); ``"asymptotic"`` the normal
    approximation, with continuity correction unless ``correction=False``.

    Returns ``V`` (R's statistic: sum of ranks of positive differences), ``p``, ``n_used``
    (non-zero differences), ``n_zero``, ``ties`` and ``method`` (the method actually used).
    """
    if method not in ("exact", "asymptotic"):
        raise AnalysisInputError(f"wilcoxon method must be 'exact' or 'asymptotic', got {method!r}")
    d = np.asarray(diff, dtype=float)
    nonzero = d[d != 0.0]
    n_zero = int(d.size - nonzero.size)
    out: dict[str, Any] = {"V": float("nan"), "p": float("nan"), "n_used": int(nonzero.size),
                           "n_zero": n_zero, "ties": False, "method": None}
    if nonzero.size == 0:
        return out
    ranks = stats.rankdata(np.abs(nonzero))
    out["V"] = float(ranks[nonzero > 0].sum())
    ties = bool(np.unique(np.abs(nonzero)).size < nonzero.size)
    out["ties"] = ties
    if method == "asymptotic":
        res = stats.wilcoxon(d, zero_method="wilcox", correction=correction, method="asymptotic")
        used = "asymptotic, continuity-corrected" if correction else "asymptotic"
    else:
        if not ties and n_zero == 0:
            res = stats.wilcoxon(d, zero_method="wilcox", method="exact")
            used = "exact"
        elif d.size <= 13:
            res = stats.wilcoxon(
                d, zero_method="wilcox", method=stats.PermutationMethod(n_resamples=np.inf)
            )
            used = "exact permutation"
        else:
            res = stats.wilcoxon(d, zero_method="wilcox", correction=correction,
                                 method="asymptotic")
            used = "asymptotic (fallback)"
    out["p"] = float(res.pvalue)
    out["method"] = used
    return out


def paired_test(
    baseline: Sequence[float] | np.ndarray,
    followup: Sequence[float] | np.ndarray,
    *,
    wilcoxon: WilcoxonMethod = "exact",
    correction: bool = True,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Paired comparison of two equal-length arrays; differences are ``followup - baseline``.

    Pairs with a missing value on either side are an error here (use
    :func:`paired_vs_baseline` for data with missing visits, which counts exclusions).

    Returns n_pairs, mean_baseline, mean_followup, mean_diff, sd_diff, ci_low, ci_high,
    t, df, p_t, wilcoxon_V, p_wilcoxon, wilcoxon_method, n_zero_diff, d_z, g_z and
    min_p_exact (the smallest two-sided p any exact sign-based test can reach with these pairs).
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
    w = wilcoxon_signed_rank(d, method=wilcoxon, correction=correction) if n else None
    res["wilcoxon_V"] = w["V"] if w else float("nan")
    res["p_wilcoxon"] = w["p"] if w else float("nan")
    res["wilcoxon_method"] = w["method"] if w else None
    res["n_zero_diff"] = w["n_zero"] if w else 0
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
    wilcoxon, correction:
        Wilcoxon p-value method; see :func:`wilcoxon_signed_rank`.

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
                              correction=correction, confidence=confidence)
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
