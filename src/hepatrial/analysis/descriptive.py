"""Descriptive statistics per outcome x visit, change from baseline, Friedman omnibus test."""

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

__all__ = ["describe", "friedman"]


def _summary(x: np.ndarray) -> dict[str, float]:
    n = x.size
    nan = float("nan")
    if n == 0:
        return {"n": 0, "mean": nan, "sd": nan, "median": nan, "q1": nan, "q3": nan,
                "min": nan, "max": nan}
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])  # R type 7
    return {"n": int(n), "mean": float(np.mean(x)),
            "sd": float(np.std(x, ddof=1)) if n > 1 else nan,
            "median": float(med), "q1": float(q1), "q3": float(q3),
            "min": float(np.min(x)), "max": float(np.max(x))}


def describe(
    df: pd.DataFrame,
    *,
    subject: str = "participant_id",
    visit: str = "visit",
    outcome: str = "value",
    by: str | None = None,
    baseline: Any = None,
    visits: Sequence[Any] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Summary statistics per outcome x visit, with change from baseline.

    Per visit: ``n`` (non-missing values), ``n_missing`` (rows with a missing value), ``mean``,
    ``sd`` (n-1), ``median``, ``q1``, ``q3`` (R quantile type 7), ``min``, ``max``.
    Visits are listed chronologically (screening before baseline when the order is known).
    With ``baseline`` given, per post-baseline visit also ``n_pairs`` (participants with both
    values), ``mean_change``, ``sd_change`` and the t-based ``change_ci_low``/``change_ci_high``
    (``confidence`` level) of the mean change (visit - baseline).
    """
    require_columns(df, [subject, visit, outcome, by])
    check_no_missing_keys(df, [subject, visit])
    data = df.assign(**{outcome: numeric_column(df, outcome)})
    check_by(data, by)
    check_unique(data, [subject, visit] + ([by] if by else []))
    levels = visit_order(data, visit, order=visits)
    post = (set(visit_order(data, visit, baseline=baseline, order=visits)[1:])
            if baseline is not None else set())
    rows: list[dict[str, Any]] = []
    for label, g in split_by(data, by, default_label=outcome):
        wide = g.pivot(index=subject, columns=visit, values=outcome)
        for v in levels:
            sub = g[g[visit] == v][outcome]
            row: dict[str, Any] = {"outcome": label, "visit": v}
            row.update(_summary(sub.dropna().to_numpy()))
            row["n_missing"] = int(sub.isna().sum())
            if baseline is not None:
                nan = float("nan")
                ch: dict[str, Any] = {"n_pairs": 0, "mean_change": nan, "sd_change": nan,
                                      "change_ci_low": nan, "change_ci_high": nan}
                if v in post and v in wide.columns and baseline in wide.columns:
                    d = (wide[v] - wide[baseline]).dropna().to_numpy()
                    ch["n_pairs"] = int(d.size)
                    if d.size:
                        ch["mean_change"] = float(np.mean(d))
                    if d.size > 1:
                        sd = float(np.std(d, ddof=1))
                        ch["sd_change"] = sd
                        half = stats.t.ppf(0.5 + confidence / 2, d.size - 1) * sd / np.sqrt(d.size)
                        ch["change_ci_low"] = float(np.mean(d) - half)
                        ch["change_ci_high"] = float(np.mean(d) + half)
                row.update(ch)
            rows.append(row)
    cols = ["outcome", "visit", "n", "n_missing", "mean", "sd", "median", "q1", "q3", "min", "max"]
    if baseline is not None:
        cols += ["n_pairs", "mean_change", "sd_change", "change_ci_low", "change_ci_high"]
    return pd.DataFrame(rows, columns=cols)


def friedman(
    df: pd.DataFrame,
    *,
    subject: str = "participant_id",
    visit: str = "visit",
    outcome: str = "value",
    visits: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Friedman rank test across visits (Friedman 1937), ``scipy.stats.friedmanchisquare``.

    Needs complete blocks: a participant missing any of the visits is dropped listwise; the
    result says how many and who (``n_dropped``, ``dropped_subjects``) — same as R
    ``friedman.test`` on the complete cases.

    Returns ``statistic`` (chi-squared, tie-corrected), ``df``, ``p``, ``n_blocks``,
    ``n_dropped``, ``dropped_subjects`` and ``visits``.
    """
    require_columns(df, [subject, visit, outcome])
    check_no_missing_keys(df, [subject, visit])
    data = df.assign(**{outcome: numeric_column(df, outcome)})
    split_by(data, None, default_label=outcome)  # refuse mixed analytes
    check_unique(data, [subject, visit])
    levels = list(visits) if visits is not None else visit_order(data, visit)
    if len(levels) < 3:
        raise AnalysisInputError(f"Friedman test needs at least 3 visits, got {len(levels)}",
                                 column=visit)
    wide = data.pivot(index=subject, columns=visit, values=outcome).reindex(columns=levels)
    complete = wide.dropna()
    dropped = sorted(str(s) for s in wide.index.difference(complete.index))
    if len(complete) < 2:
        raise AnalysisInputError(
            f"Friedman test: only {len(complete)} complete block(s) after dropping {len(dropped)}"
        )
    res = stats.friedmanchisquare(*(complete[v].to_numpy() for v in levels))
    return {"statistic": float(res.statistic), "df": len(levels) - 1, "p": float(res.pvalue),
            "n_blocks": len(complete), "n_dropped": len(dropped), "dropped_subjects": dropped,
            "visits": levels}
