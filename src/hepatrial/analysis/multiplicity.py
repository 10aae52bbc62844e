"""Multiplicity control across visits and outcomes.

* :func:`holm` — Holm's step-down procedure (Holm 1979, Scand J Stat 6:65), via statsmodels
  ``multipletests(method="holm")``; *not* statsmodels' default ``"hs"`` (Holm–Šidák).
  Adjusted p equal R ``p.adjust(p, "holm")``.
* :func:`fixed_sequence` — hierarchical (fixed-sequence) testing (Maurer, Hothorn & Lehmacher
  1995; Westfall & Krishen 2001): test in the pre-specified order at full alpha and stop at the
  first non-rejection; later hypotheses are "not tested".  Controls the FWER strongly.  A
  hypothesis without data (p given as ``None``: an interim analysis before any week-24 pair)
  is "not tested: no data" and stops the sequence too — it cannot be rejected, so nothing after
  it may be tested (testing a later hypothesis at full alpha would break the FWER control).
* :func:`min_attainable_p` / :func:`exact_test_feasibility` — with n non-zero pairs an exact
  sign-based test (sign, Wilcoxon signed-rank, sign-flip permutation) cannot give a two-sided
  p below 2/2**n (n = 8: 0.0078125), so Holm/Bonferroni over m tests can never reject when
  2/2**n > alpha/m.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from hepatrial.analysis._common import AnalysisInputError

__all__ = ["NO_DATA", "exact_test_feasibility", "fixed_sequence", "holm", "min_attainable_p"]


def _as_series(pvalues: Mapping[Hashable, float] | Sequence[float] | pd.Series) -> pd.Series:
    if isinstance(pvalues, pd.Series):
        s = pvalues.astype(float)
    elif isinstance(pvalues, Mapping):
        s = pd.Series({k: float(v) for k, v in pvalues.items()}, dtype=float)
    else:
        s = pd.Series([float(p) for p in pvalues], dtype=float)
    bad = s.isna() | (s < 0) | (s > 1)
    if bool(bad.any()):
        key = bad[bad].index[0]
        raise AnalysisInputError(f"p-value for {key!r} is {s.loc[key]!r}, not in [0, 1]")
    return s


def holm(
    pvalues: Mapping[Hashable, float] | Sequence[float] | pd.Series, alpha: float = 0.05
) -> pd.DataFrame:
    """Holm (1979) step-down adjustment.

    Returns a DataFrame indexed like the input with ``p``, ``p_adjusted`` (R
    ``p.adjust(method="holm")``) and ``reject`` (``p_adjusted <= alpha``).
    """
    s = _as_series(pvalues)
    if s.empty:
        return pd.DataFrame({"p": [], "p_adjusted": [], "reject": []})
    reject, p_adj, _, _ = multipletests(s.to_numpy(), alpha=alpha, method="holm")
    return pd.DataFrame(
        {"p": s.to_numpy(), "p_adjusted": p_adj, "reject": reject.astype(bool)}, index=s.index
    )


NO_DATA = "not tested: no data"


def fixed_sequence(
    tests: Mapping[Hashable, float | None] | Sequence[tuple[Hashable, float | None]],
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Fixed-sequence (hierarchical) testing of hypotheses given in their pre-specified order.

    Each hypothesis is tested at the full ``alpha`` while all earlier ones were rejected; the
    first non-rejection stops the sequence and every later hypothesis is ``"not tested"``.
    A p-value of ``None`` means the hypothesis has no data (e.g. an interim analysis with no
    week-24 pair yet): it is ``"not tested: no data"`` wherever it stands, and the sequence
    stops there.  NaN is not "no data" — it signals a failed computation and raises, as does a
    p outside [0, 1].

    Returns one row per hypothesis: ``order`` (1-based), ``test``, ``p`` (NaN without data),
    ``status`` (``"rejected"``, ``"not rejected"``, ``"not tested"``,
    ``"not tested: no data"``) and ``reject`` (bool).
    """
    items = list(tests.items()) if isinstance(tests, Mapping) else list(tests)
    rows: list[dict[str, Any]] = []
    stopped = False
    for i, (name, raw) in enumerate(items, start=1):
        if raw is None:
            rows.append({"order": i, "test": name, "p": float("nan"), "status": NO_DATA,
                         "reject": False})
            stopped = True
            continue
        p = float(raw)
        if math.isnan(p) or not 0.0 <= p <= 1.0:
            raise AnalysisInputError(f"p-value for {name!r} is {p!r}, not in [0, 1]")
        if stopped:
            status = "not tested"
        elif p <= alpha:
            status = "rejected"
        else:
            status = "not rejected"
            stopped = True
        rows.append({"order": i, "test": name, "p": p, "status": status,
                     "reject": status == "rejected"})
    return pd.DataFrame(rows, columns=["order", "test", "p", "status", "reject"])


def min_attainable_p(n_pairs: int, *, two_sided: bool = True) -> float:
    """Smallest p-value an exact sign-based test can give with ``n_pairs`` non-zero pairs.

    All 2**n sign vectors are equally likely under H0, and the most extreme one (all signs
    equal) has probability 1/2**n; two-sided: 2/2**n (n = 8: 0.0078125, R ``wilcox.test(1:8)``).
    """
    if n_pairs < 0:
        raise AnalysisInputError(f"n_pairs must be >= 0, got {n_pairs}")
    # ldexp(1, -n) = 2**-n without overflow for large n (underflows to 0.0 past n = 1074)
    p = math.ldexp(2.0 if two_sided else 1.0, -n_pairs)
    return min(1.0, p)


def exact_test_feasibility(
    n_pairs: int | Iterable[int],
    m_tests: int | None = None,
    *,
    alpha: float = 0.05,
    two_sided: bool = True,
) -> dict[str, Any]:
    """Can a Holm (or Bonferroni) family of exact sign-based tests ever reject?

    Parameters
    ----------
    n_pairs:
        Number of non-zero pairs — one int for the whole family, or one per test (then
        ``m_tests`` defaults to their number).
    m_tests:
        Family size m.

    Returns
    -------
    dict with ``min_p`` (smallest attainable p among the tests), ``holm_threshold``
    (alpha/m, the first Holm step), ``can_reject`` (min_p <= alpha/m), ``max_tests``
    (largest m for which a rejection is still possible) and ``message`` (a sentence for the
    report).
    """
    ns = [int(n_pairs)] if isinstance(n_pairs, int | np.integer) else [int(n) for n in n_pairs]
    if not ns:
        raise AnalysisInputError("n_pairs is empty")
    m = int(m_tests) if m_tests is not None else (len(ns) if not isinstance(n_pairs, int) else 1)
    if m < 1:
        raise AnalysisInputError(f"m_tests must be >= 1, got {m}")
    min_p = min(min_attainable_p(n, two_sided=two_sided) for n in ns)
    threshold = alpha / m
    can = min_p <= threshold
    max_tests = math.floor(alpha / min_p + 1e-12) if min_p > 0 else m
    n_txt = str(ns[0]) if len(set(ns)) == 1 else f"{min(ns)}-{max(ns)}"
    if can:
        msg = (f"With {n_txt} pairs the smallest attainable exact p is {min_p:.6g} <= "
               f"alpha/m = {threshold:.6g} (m = {m}): Holm can reject.")
    else:
        msg = (f"With {n_txt} pairs the smallest attainable exact p is {min_p:.6g} > "
               f"alpha/m = {threshold:.6g} (m = {m}): Holm over {m} exact tests can never reject "
               f"(at most {max_tests} tests would allow a rejection); use fixed-sequence testing "
               "or parametric tests.")
    return {"min_p": min_p, "m_tests": m, "alpha": alpha, "holm_threshold": threshold,
            "can_reject": bool(can), "max_tests": max_tests, "message": msg}
