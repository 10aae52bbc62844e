"""Time to event: Kaplan–Meier estimate with R's confidence intervals and median, and the
Aalen–Johansen cumulative incidence under competing risks.

* **Kaplan–Meier** (Kaplan EL, Meier P. Nonparametric estimation from incomplete
  observations. J Am Stat Assoc 1958;53:457-481), computed by statsmodels
  (``statsmodels.duration.survfunc.SurvfuncRight``: the product-limit estimate, the numbers
  at risk and of events, and Greenwood's standard error, Greenwood M. Reports on Public Health
  and Medical Subjects 1926;33). An event and a censoring at the same time: the censored
  participant is at risk at that time (the usual convention, R ``survival``'s too).
* **Confidence intervals** as R ``survival::survfit`` by default (``conf.type = "log"``):
  ``exp(log S ± z · se(log S))`` with ``se(log S) = se(S) / S`` (Greenwood), the upper limit
  truncated at 1; none where S = 0.
* **Median and its CI** exactly as R ``survival:::quantile.survfit`` (Therneau, survival
  3.5): the first time the curve is at or below 0.5 (within √ε); when the curve is exactly
  0.5 over an interval, the midpoint of that interval; the CI from the same rule applied to
  the confidence-limit curves; ``NaN`` when not reached.
* **Aalen–Johansen** cumulative incidence of each cause (Aalen OO, Johansen S. Scand J Stat
  1978;5:141-150), computed by statsmodels (``CumIncidenceRight``): with a competing event
  (death), ``1 − KM`` of the event of interest with deaths censored over-estimates its
  incidence; the Aalen–Johansen estimate does not.

Tested against R ``survival::survfit`` on ``aml``, ``lung`` and ``pbc``
(``tests/report/r/survival_reference.R``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from hepatrial.analysis._common import AnalysisInputError

__all__ = ["KaplanMeier", "cumulative_incidence", "kaplan_meier"]

_TOL = math.sqrt(np.finfo(float).eps)  # R: sqrt(.Machine$double.eps)
KM_COLUMNS = ("time", "n_risk", "n_event", "surv", "std_err", "lower", "upper")


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan–Meier estimate.

    ``table``: one row per distinct event time (R ``summary(survfit(...))``): ``time``,
    ``n_risk``, ``n_event``, ``surv``, ``std_err`` (Greenwood SE of S), ``lower``, ``upper``
    (log-type CI at ``conf_level``). ``n``: participants; ``events``; ``censored``;
    ``censor_times``: the times of the censored observations, sorted; ``median``,
    ``median_lower``, ``median_upper``: NaN when not reached; ``max_time``: the last time
    observed (event or censoring), NaN when ``n`` is 0.
    """

    table: pd.DataFrame
    n: int
    events: int
    censored: int
    censor_times: tuple[float, ...]
    median: float
    median_lower: float
    median_upper: float
    max_time: float
    conf_level: float = 0.95

    def surv_at(self, t: float) -> float:
        """S(t): the estimate at time ``t`` (right-continuous step function; 1 before the
        first event)."""
        tab = self.table
        k = int(np.searchsorted(tab["time"].to_numpy(dtype=float), float(t), side="right"))
        return 1.0 if k == 0 else float(tab["surv"].iloc[k - 1])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        def f(x: Any) -> Any:
            x = float(x)
            return None if math.isnan(x) else x

        return {"n": self.n, "events": self.events, "censored": self.censored,
                "censor_times": [float(t) for t in self.censor_times],
                "median": f(self.median), "median_lower": f(self.median_lower),
                "median_upper": f(self.median_upper), "max_time": f(self.max_time),
                "conf_level": self.conf_level,
                "table": [{k: (f(v) if k not in ("n_risk", "n_event") else int(v))
                           for k, v in r.items()} for r in self.table.to_dict("records")]}


def _arrays(time: Any, event: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(pd.to_numeric(pd.Series(time), errors="coerce"), dtype=float)
    e = pd.Series(event)
    if len(t) != len(e):
        raise AnalysisInputError(f"{what}: time has {len(t)} values, status {len(e)}")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise AnalysisInputError(f"{what}: row {int(bad[0])}: time {pd.Series(time).iloc[bad[0]]!r}"
                                 " is not a finite number", column="time", row=int(bad[0]))
    neg = np.flatnonzero(t < 0)
    if neg.size:
        raise AnalysisInputError(f"{what}: row {int(neg[0])}: time {t[neg[0]]:g} is negative",
                                 column="time", row=int(neg[0]))
    return t, e.to_numpy()


def _show(v: Any) -> Any:
    return v.item() if hasattr(v, "item") and not isinstance(v, str) else v


def _findq(x: np.ndarray, y: np.ndarray, p: float) -> float:
    """R survival:::findq for one probability: ``x`` times (0 prepended), ``y`` the
    cumulative curve 1 − S (0 prepended; NaN where undefined)."""
    if y.size == 0 or np.all(np.isnan(y)) or np.nanmax(y) < p:
        return float("nan")
    xmax = float(x[-1])
    keep = ~pd.Series(y).duplicated().to_numpy()
    x, y = x[keep], y[keep]
    idx = np.arange(y.size)
    ok = ~np.isnan(y)

    def lookup(shift: float) -> int | None:
        # approx(y + shift, 1:n, p, method = "constant", f = 1): the index of the smallest knot
        # >= p (knots sorted by value), NA outside the knots' range
        knots, ids = y[ok] + shift, idx[ok]
        order = np.argsort(knots, kind="stable")
        knots, ids = knots[order], ids[order]
        if p < knots[0] or p > knots[-1]:
            return None
        return int(ids[int(np.searchsorted(knots, p, side="left"))])

    i1, i2 = lookup(_TOL), lookup(-_TOL)
    q = float("nan") if i1 is None or i2 is None else (float(x[i1]) + float(x[i2])) / 2
    if not np.isnan(y[-1]) and abs(p - y[-1]) < _TOL and i1 is not None:
        q = (float(x[i1]) + xmax) / 2
    return q


def kaplan_meier(time: Sequence[float] | np.ndarray | pd.Series,
                 event: Sequence[Any] | np.ndarray | pd.Series, *,
                 conf_level: float = 0.95) -> KaplanMeier:
    """Kaplan–Meier estimate of the time to an event (see the module docstring).

    ``time``: non-negative follow-up times; ``event``: 1/True for an event, 0/False for a
    censored observation. No participants or no events are valid input (an empty table,
    S = 1, the median not reached).
    """
    from statsmodels.duration.survfunc import SurvfuncRight

    if not 0 < conf_level < 1:
        raise AnalysisInputError(f"conf_level {conf_level!r} is not between 0 and 1")
    t, e_raw = _arrays(time, event, "Kaplan–Meier")
    mapping = {True: 1, False: 0}
    e = np.array([mapping.get(v, -1) if not isinstance(v, str) else -1 for v in e_raw],
                 dtype=int)
    bad = np.flatnonzero(e < 0)
    if bad.size:
        row = int(bad[0])
        raise AnalysisInputError(f"Kaplan–Meier: row {row}: status {_show(e_raw[row])!r} is "
                                 "not 0/1 or false/true", column="status", row=row)
    n = int(t.size)
    events = int(e.sum())
    cens = tuple(float(v) for v in np.sort(t[e == 0]))
    empty = pd.DataFrame({c: pd.Series(dtype="int64" if c in ("n_risk", "n_event") else float)
                          for c in KM_COLUMNS})
    if n == 0 or events == 0:
        nan = float("nan")
        return KaplanMeier(empty, n, events, n - events, cens, nan, nan, nan,
                           float(t.max()) if n else nan, conf_level)
    sf = SurvfuncRight(t, e)
    surv = np.asarray(sf.surv_prob, dtype=float)
    se = np.asarray(sf.surv_prob_se, dtype=float)
    se = np.where(surv > 0, se, np.nan)
    z = float(norm.ppf(1 - (1 - conf_level) / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        se_log = se / surv
        lower = np.where(surv > 0, np.exp(np.log(surv) - z * se_log), np.nan)
        upper = np.where(surv > 0, np.minimum(1.0, np.exp(np.log(surv) + z * se_log)), np.nan)
    table = pd.DataFrame({
        "time": np.asarray(sf.surv_times, dtype=float),
        "n_risk": np.asarray(sf.n_risk, dtype=float).round().astype("int64"),
        "n_event": np.asarray(sf.n_events, dtype=float).round().astype("int64"),
        "surv": surv, "std_err": se, "lower": lower, "upper": upper})
    # the curves at every observed time (as R's survfit object) for the median rule
    all_t = np.unique(t)
    pos = np.searchsorted(table["time"].to_numpy(), all_t, side="right") - 1

    def at_all(col: np.ndarray) -> np.ndarray:
        return np.where(pos >= 0, col[np.maximum(pos, 0)], 1.0)

    x = np.concatenate([[0.0], all_t])
    med = _findq(x, np.concatenate([[0.0], 1 - at_all(surv)]), 0.5)
    lo = _findq(x, np.concatenate([[0.0], 1 - at_all(lower)]), 0.5)
    hi = _findq(x, np.concatenate([[0.0], 1 - at_all(upper)]), 0.5)
    return KaplanMeier(table, n, events, n - events, cens, med, lo, hi, float(t.max()),
                       conf_level)


def cumulative_incidence(time: Sequence[float] | np.ndarray | pd.Series,
                         status: Sequence[int] | np.ndarray | pd.Series,
                         causes: Sequence[str]) -> pd.DataFrame:
    """Aalen–Johansen cumulative incidence under competing risks.

    ``status``: 0 censored, ``k`` = 1..len(causes) an event of cause ``causes[k - 1]``.
    Returns one row per time with at least one event of any cause: ``time``, ``n_risk``
    and one column per cause (its cumulative incidence at that time); empty (same columns)
    when there is no event.
    """
    from statsmodels.duration.survfunc import CumIncidenceRight

    t, s_raw = _arrays(time, status, "cumulative incidence")
    s = pd.to_numeric(pd.Series(s_raw), errors="coerce").to_numpy(dtype=float)
    ok = np.isin(s, np.arange(len(causes) + 1))
    bad = np.flatnonzero(~ok)
    if bad.size:
        row = int(bad[0])
        raise AnalysisInputError(f"cumulative incidence: row {row}: status "
                                 f"{_show(s_raw[row])!r} is not 0..{len(causes)}",
                                 column="status", row=row)
    s = s.astype(int)
    cols = ["time", "n_risk", *causes]
    if not (s > 0).any():
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
    with np.errstate(divide="ignore", invalid="ignore"):  # its SE at the last time (unused)
        ci = CumIncidenceRight(t, s)
    times = np.asarray(ci.times, dtype=float)
    has_event = np.isin(times, np.unique(t[s > 0]))
    out = pd.DataFrame({"time": times[has_event],
                        "n_risk": [int((t >= v).sum()) for v in times[has_event]]})
    for k, name in enumerate(causes, start=1):  # ci.cinc[k - 1]: cause k, k = 1..max(status)
        out[name] = (np.asarray(ci.cinc[k - 1], dtype=float)[has_event]
                     if k <= len(ci.cinc) else 0.0)
    return out[cols]
