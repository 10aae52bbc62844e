"""Wilcoxon signed-rank test with ties and zeros, and the Hodges–Lehmann estimate with its CI.

Methods
-------
* **Scores.**  Differences are ranked by absolute value with mid-ranks for ties (Wilcoxon 1945).
  Zero differences are handled by ``zero_method``:

  - ``"wilcoxon"`` (default; R ``wilcox.test``, SciPy ``zero_method="wilcox"``,
    ``coin::wilcoxsign_test(zero.method = "Wilcoxon")``): zeros are dropped before ranking;
  - ``"pratt"`` (Pratt 1959, JASA 54:655–667; coin's default ``zero.method = "Pratt"``): all
    absolute differences are ranked, zeros included, then the zeros' ranks are dropped.

  The statistic ``V`` is R's: the sum of the ranks of the positive differences.
* **Exact p-value at any n, with ties and zeros.**  The conditional permutation distribution
  of ``V`` given the observed mid-ranks (each non-zero difference carries its rank with a + or
  - sign with probability 1/2 under H0), as ``coin::wilcoxsign_test(distribution = "exact")``
  computes it with the Streitberg–Röhmel shift algorithm (Streitberg & Röhmel 1986,
  Statistical Software Newsletter 12:10–17; Hothorn, Hornik, van de Wiel & Zeileis 2006,
  Am Stat 60:257–263).  Mid-ranks are multiples of 1/2, so doubled mid-ranks ``a_i`` are
  integers and ``P(sum a_i B_i <= t)`` (``B_i`` iid Bernoulli(1/2)) is a dynamic programme
  over integer sums.  Here it is vectorised with numpy, one array shift-and-add per
  observation, and it keeps only the sums that can still decide the tail: sums above ``t`` are
  dropped, sums that stay ``<= t`` whatever the remaining signs are absorbed into one number.
  Only non-negative probabilities are added (no cancellation), so tiny p-values keep their
  relative precision.  Two-sided ``p = min(1, 2 P(V <= min(v, N - v)))`` where ``N`` is the sum
  of the ranks (the distribution is symmetric about ``N/2``); this is coin's two-sided p-value.
  Cost ``O(n^3)`` in the worst case; see ``benchmarks/bench_wilcoxon.py`` (n = 50: well under a
  millisecond).  Above ``exact_max_n`` non-zero differences the normal approximation is used and
  the result says so (``method_used = "asymptotic"`` and the reason in ``method``).
* **Normal approximation.**  ``z = (V - E - c) / s`` with the conditional mean
  ``E = sum(r)/2`` and variance ``s^2 = sum(r^2)/4`` of the (mid-)ranks ``r`` (for
  ``zero_method="wilcoxon"`` this is R's tie-corrected ``n(n+1)(2n+1)/24 - sum(t^3 - t)/48``),
  ``c = 0.5 sign(V - E)`` with continuity correction; two-sided ``p = 2 P(Z >= |z|)``, as R's
  ``wilcox.test(exact = FALSE)``.
* **Ranking at recorded precision** (``digits_rank``, R >= 4.0 ``wilcox.test(digits.rank =)``):
  the absolute differences are rounded to ``digits_rank`` significant digits (R's ``signif``)
  *for ranking only*; the statistic and the Hodges–Lehmann estimate use the unrounded values.
  Which differences are zero is decided on the unrounded values, as in R.  Default
  :data:`DIGITS_RANK_DEFAULT` = 9, not R's ``Inf``: differences of values recorded with a few
  decimals are not exact in binary floating point (``1.2 - 1.1 = 0.09999999999999987`` but
  ``1.3 - 1.2 = 0.10000000000000009``), and without rounding such recorded ties are broken by
  rounding noise, which changes the ranks and the exact p-value.  The error of a difference of
  two recorded values of magnitude ``M`` and resolution ``q`` is below ``3.4e-16 M / q``
  relative, i.e. below ``3.4e-10`` for a dynamic range ``M/q`` up to ``10**6`` (any laboratory
  value), well under the half unit ``5e-9`` of the 9th significant digit; two genuinely
  different recorded differences agree to 9 significant digits only if they carry 10 or more,
  which no clinical measurement does.  ``digits_rank=None`` ranks the raw differences (R's
  default ``digits.rank = Inf``, and what coin does).
* **Hodges–Lehmann estimate** (Hodges & Lehmann 1963, Ann Math Stat 34:598–611): the median
  of the ``n(n+1)/2`` Walsh averages ``(d_i + d_j)/2, i <= j`` of the differences the test
  uses: the non-zero ones with ``zero_method="wilcoxon"`` (R's ``wilcox.test(conf.int = TRUE)``
  drops zero differences before it estimates, and so does this), all of them with
  ``"pratt"`` (the estimator as Hodges and Lehmann define it).  This is R's exact-branch
  ``(pseudo)median``; R's asymptotic branch returns a ``uniroot`` point of the flat piece of
  the statistic around the same median (within its ``tol = 1e-4`` when that piece is short).
* **Its confidence interval.**  ``"exact"``: the Walsh-average order statistics
  ``[w_(k), w_(M - k + 1)]`` (``M = n(n+1)/2``) with ``k = qsignrank(alpha/2, n)``
  (``k >= 1``), the inversion of the exact signed-rank test (Bauer 1972, JASA 67:687–690;
  Hollander, Wolfe & Chicken 2014, Nonparametric Statistical Methods, 3rd ed., §3.2) — R's
  ``wilcox.test(conf.int = TRUE, exact = TRUE)`` interval, here at any n up to
  ``exact_max_n``.  Its coverage is
  ``1 - 2 P(V <= k - 1)`` (``ci_level``, which can exceed the requested level because the
  distribution is discrete).  With tied or zero differences the same closed interval is kept:
  it still covers with probability >= ``ci_level`` (break the ties by an infinitesimal
  symmetric perturbation: the perturbed interval has that coverage and shrinks onto the
  closed unperturbed one), so it is conservative, and ``ci_method`` says so.  (With
  ``zero_method="wilcoxon"`` the interval is that of the non-zero differences, as R computes
  it; ``"pratt"`` gives the interval of all differences.)  R has no exact interval with ties
  and coin none for the signed-rank test.  ``"asymptotic"``: R's
  interval with ties — the inversion of the tie-corrected normal approximation (with the
  continuity correction when ``correction``), R's ``uniroot`` replaced by an exact search over
  the Walsh averages, so the limits are the Walsh averages where the statistic crosses the
  normal quantile (R's ``uniroot(tol = 1e-4)`` lands within 1e-4 of them).  Order statistics
  are selected (``numpy.partition``) or, with repeated values, read from the distinct values
  and their counts; without ties the asymptotic limits are order statistics in closed form, so
  n = 2,500 takes about 50 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from scipy import stats

from hepatrial.analysis._common import AnalysisInputError

WilcoxonMethod = Literal["exact", "asymptotic"]
ZeroMethod = Literal["wilcoxon", "pratt"]

#: Significant digits at which absolute differences are ranked (see the module docstring).
DIGITS_RANK_DEFAULT = 9
#: Largest number of non-zero differences for which ``method="exact"`` computes the exact
#: distribution (about 20 ms at n = 500 with ties; cost grows as n**3).  ``None``: no limit.
EXACT_MAX_N = 500

__all__ = [
    "DIGITS_RANK_DEFAULT",
    "EXACT_MAX_N",
    "WilcoxonMethod",
    "ZeroMethod",
    "exact_tail_probability",
    "hodges_lehmann",
    "psignrank",
    "qsignrank",
    "signed_rank_scores",
    "signif",
    "wilcoxon_signed_rank",
]


# --------------------------------------------------------------------------- helpers


_MAX10E = 308  # (int)(DBL_MAX_EXP * M_LOG10_2)


def _r_pow_di(x: float, n: int) -> float:
    """R's ``R_pow_di`` (``src/nmath/mlutils.c``): x**n by repeated squaring, which is what
    ``signif`` uses (it differs from ``10.0**n`` in the last bits for n > 22)."""
    xn = 1.0
    if n != 0:
        neg = n < 0
        if neg:
            n = -n
        while True:
            if n & 1:
                xn *= x
            n >>= 1
            if n:
                x *= x
            else:
                break
        if neg:
            xn = 1.0 / xn
    return xn


def _fprec(x: float, dig: int) -> float:
    """R's ``fprec`` (``src/nmath/fprec.c``), the C code of ``signif``, for one finite x != 0."""
    sgn = 1.0
    if x < 0.0:
        sgn, x = -1.0, -x
    l10 = math.log10(x)
    e10 = int(dig - 1 - math.floor(l10))
    if abs(l10) < _MAX10E - 2:
        p10 = 1.0
        if e10 > _MAX10E:
            p10 = _r_pow_di(10.0, e10 - _MAX10E)
            e10 = _MAX10E
        if e10 > 0:
            pow10 = _r_pow_di(10.0, e10)
            return sgn * (float(np.rint((x * pow10) * p10)) / pow10) / p10
        pow10 = _r_pow_di(10.0, -e10)
        return sgn * (float(np.rint(x / pow10)) * pow10)
    do_round = _MAX10E - l10 >= _r_pow_di(10.0, -dig)
    e2 = dig + (1 if e10 > 0 else -1) * 22
    p10 = _r_pow_di(10.0, e2)
    x *= p10
    big_p10 = _r_pow_di(10.0, e10 - e2)
    x *= big_p10
    if do_round:
        x += 0.5
    x = math.floor(x) / p10
    return sgn * x / big_p10


_POW10_OFFSET = 400
_POW10 = np.array([_r_pow_di(10.0, e) for e in range(-_POW10_OFFSET, _POW10_OFFSET + 1)])


def signif(x: Sequence[float] | np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits exactly as R's ``signif`` (R's C code ``fprec``,
    ``src/nmath/fprec.c``, with its ``R_pow_di`` powers of ten and ``nearbyint``).

    Zeros, NaN and infinities are returned unchanged; ``digits > 22`` returns ``x`` (R's
    ``MAX_DIGITS``).  Vectorised for the usual range; values within 100 orders of magnitude of
    the double range take R's scalar branch.
    """
    _check_digits(digits)
    v = np.asarray(x, dtype=float)
    out = v.copy()
    if digits > 22:
        return out
    flat_in = v.reshape(-1)
    flat = out.reshape(-1)
    idx = np.flatnonzero(np.isfinite(flat_in) & (flat_in != 0.0))
    if idx.size == 0:
        return out
    a = np.abs(flat_in[idx])
    sgn = np.where(flat_in[idx] < 0.0, -1.0, 1.0)
    l10 = np.log10(a)
    near = np.abs(l10 - np.rint(l10)) < 1e-9  # floor(l10) must be C's: recompute near powers
    if near.any():
        l10[near] = [math.log10(t) for t in a[near].tolist()]
    e10 = (digits - 1 - np.floor(l10)).astype(np.int64)
    main = np.abs(l10) < _MAX10E - 2
    res = np.empty_like(a)
    e = e10[main]
    p10 = np.where(e > _MAX10E, _POW10[np.minimum(e - _MAX10E, _POW10_OFFSET) + _POW10_OFFSET],
                   1.0)
    e = np.minimum(e, _MAX10E)
    am = a[main]
    pos = e > 0
    rm = np.empty_like(am)
    pow_pos = _POW10[e[pos] + _POW10_OFFSET]
    rm[pos] = (np.rint((am[pos] * pow_pos) * p10[pos]) / pow_pos) / p10[pos]
    pow_neg = _POW10[-e[~pos] + _POW10_OFFSET]
    rm[~pos] = np.rint(am[~pos] / pow_neg) * pow_neg
    res[main] = rm
    for k in np.flatnonzero(~main).tolist():  # LARGE or small: R's scalar branch
        res[k] = abs(_fprec(float(a[k]), int(digits)))
    flat[idx] = sgn * res
    return out


def _check_digits(digits_rank: int | None) -> None:
    if digits_rank is None:
        return
    if (not isinstance(digits_rank, int | np.integer) or isinstance(digits_rank, bool)
            or digits_rank < 1):
        raise AnalysisInputError(
            f"digits_rank must be a positive integer or None, got {digits_rank!r}")


def _ranking_values(d: np.ndarray, digits_rank: int | None) -> np.ndarray:
    return np.abs(d) if digits_rank is None else np.abs(signif(d, digits_rank))


def signed_rank_scores(
    diff: Sequence[float] | np.ndarray,
    *,
    zero_method: ZeroMethod = "wilcoxon",
    digits_rank: int | None = DIGITS_RANK_DEFAULT,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Mid-ranks of the non-zero differences and their signs.

    Returns ``(ranks, positive, n_zero)``: ``ranks`` are the (mid-)ranks of the absolute
    non-zero differences (``zero_method="pratt"``: ranked together with the zeros), in input
    order; ``positive`` marks the positive differences; ``n_zero`` counts exact zeros.
    """
    if zero_method not in ("wilcoxon", "pratt"):
        raise AnalysisInputError(
            f"zero_method must be 'wilcoxon' or 'pratt', got {zero_method!r}")
    _check_digits(digits_rank)
    d = np.asarray(diff, dtype=float)
    if d.ndim != 1:
        raise AnalysisInputError("differences must be a 1-D array")
    if np.isnan(d).any():
        raise AnalysisInputError("differences contain missing values (NaN); drop pairs explicitly")
    if np.isinf(d).any():
        raise AnalysisInputError("differences contain infinite values")
    nonzero = d != 0.0
    n_zero = int(d.size - nonzero.sum())
    if zero_method == "pratt":
        ranks = stats.rankdata(_ranking_values(d, digits_rank))[nonzero]
    else:
        ranks = stats.rankdata(_ranking_values(d[nonzero], digits_rank))
    return np.asarray(ranks, dtype=float), d[nonzero] > 0.0, n_zero


# --------------------------------------------------------------------------- exact distribution


def exact_tail_probability(scores: Sequence[int] | np.ndarray, t: int) -> float:
    """``P(sum_i a_i B_i <= t)`` for positive integer scores ``a_i`` and iid ``B_i`` ~
    Bernoulli(1/2): the lower tail of the permutation distribution of a signed-rank statistic
    (Streitberg & Röhmel 1986 shift algorithm, vectorised).

    Scores are processed in increasing order; after each one, partial sums above ``t`` are
    dropped and partial sums that cannot exceed ``t`` any more (``s + remaining <= t``) are
    absorbed into the result, so the working array never spans more than ``t + 1`` sums.
    """
    a = np.sort(np.asarray(scores, dtype=np.int64))
    if a.size and a[0] <= 0:
        raise AnalysisInputError("exact_tail_probability: scores must be positive integers")
    total = int(a.sum())
    if t < 0:
        return 0.0
    if t >= total:
        return 1.0
    buf = (np.zeros(t + 1), np.zeros(t + 1))
    cur = 0
    f = buf[0][:1]
    f[0] = 1.0
    rem = total
    lo = 0  # f[k] = P(partial sum = lo + k)
    absorbed = 0.0
    for ai in a.tolist():
        rem -= ai
        size = f.size
        top = min(lo + size - 1 + ai, t)
        new_lo = max(lo, t - rem + 1)
        i0 = min(max(new_lo - lo, 0), size)  # sign -: f[:i0] can no longer exceed t
        j0 = min(max(new_lo - ai - lo, 0), size)  # sign +: f[:j0] + ai neither
        j1 = min(size, top - ai - lo + 1)  # sign +: f[j1:] + ai exceeds t (dropped)
        if i0:
            absorbed += 0.5 * float(f[:i0].sum())
        if j0:
            absorbed += 0.5 * float(f[:j0].sum())
        length = top - new_lo + 1
        if length <= 0:
            f = buf[cur][:0]
            lo = new_lo
            continue
        g = buf[1 - cur][:length]
        g[:] = 0.0
        s0 = lo + i0 - new_lo
        g[s0:s0 + size - i0] = f[i0:]
        if j1 > j0:
            g[lo + j0 + ai - new_lo:lo + j1 + ai - new_lo] += f[j0:j1]
        g *= 0.5
        f = g
        cur = 1 - cur
        lo = new_lo
    return min(1.0, absorbed + float(f.sum()))


def _exact_two_sided(ranks: np.ndarray, positive: np.ndarray) -> float:
    """coin's exact two-sided p: ``P(|V - N/2| >= |v - N/2|)`` under the sign-flip law."""
    a = np.rint(2.0 * ranks).astype(np.int64)  # mid-ranks are multiples of 1/2
    if not np.array_equal(a.astype(float), 2.0 * ranks):
        raise AssertionError("mid-ranks are not multiples of 1/2")  # pragma: no cover
    g = int(np.gcd.reduce(a))
    a //= g
    total = int(a.sum())
    v = int(a[positive].sum())
    low = min(v, total - v)
    if 2 * low == total:
        return 1.0
    return min(1.0, 2.0 * exact_tail_probability(a, low))


@lru_cache(maxsize=64)
def _signrank_cdf(n: int) -> np.ndarray:
    """``P(V <= q)`` for q = 0 .. floor(n(n+1)/4) of the untied signed-rank statistic."""
    half = n * (n + 1) // 4
    pmf = np.zeros(half + 1)
    pmf[0] = 1.0
    top = 0
    for k in range(1, n + 1):
        new_top = min(top + k, half)
        if new_top >= k:
            pmf[k:new_top + 1] += pmf[:new_top + 1 - k].copy()
        pmf[:new_top + 1] *= 0.5
        top = new_top
    cdf = np.cumsum(pmf)
    cdf.setflags(write=False)
    return cdf


def psignrank(q: int, n: int) -> float:
    """``P(V <= q)`` for the signed-rank statistic of ``n`` untied observations (R
    ``psignrank(q, n)``)."""
    big = n * (n + 1) // 2
    if q < 0:
        return 0.0
    if q >= big:
        return 1.0
    if 2 * q <= big:
        return float(_signrank_cdf(n)[min(q, len(_signrank_cdf(n)) - 1)])
    return 1.0 - float(_signrank_cdf(n)[big - q - 1])


def qsignrank(p: float, n: int) -> int:
    """Smallest ``q`` with ``P(V <= q) >= p - 10 eps`` for ``p <= 1/2`` (R ``qsignrank``,
    ``src/nmath/signrank.c``, including its ``10 * DBL_EPSILON`` fuzz)."""
    if not 0.0 <= p <= 0.5:
        raise AnalysisInputError(f"qsignrank: p must be in [0, 0.5], got {p}")
    cdf = _signrank_cdf(n)
    target = p - 10 * np.finfo(float).eps
    idx = int(np.searchsorted(cdf, target, side="left"))
    return min(idx, n * (n + 1) // 2)


# --------------------------------------------------------------------------- Hodges-Lehmann


def _walsh_averages(x: np.ndarray) -> np.ndarray:
    """All ``(x_i + x_j) / 2, i <= j`` (R: ``outer(x, x, "+")[upper] / 2``), row by row."""
    n = x.size
    out = np.empty(n * (n + 1) // 2)
    pos = 0
    for i in range(n):
        np.add(x[i], x[i:], out=out[pos:pos + n - i])
        pos += n - i
    out /= 2.0
    return out


class _Walsh:
    """Order statistics of the Walsh averages.  With many repeated values they are built from
    the distinct values and their counts (K(K+1)/2 sorted weighted averages instead of
    n(n+1)/2); otherwise all are kept unsorted and selected with ``numpy.partition``."""

    def __init__(self, x: np.ndarray) -> None:
        vals, counts = np.unique(x, return_counts=True)
        self.n = int(x.size)
        self.size = self.n * (self.n + 1) // 2
        k = int(vals.size)
        if 8 * (k * (k + 1) // 2) > self.size:  # few repeats: grouping would not pay
            self.values = _walsh_averages(x)
            self.cum: np.ndarray | None = None
        else:
            i, j = np.triu_indices(vals.size)
            w = (vals[i] + vals[j]) / 2.0
            weight = np.where(i == j, counts[i] * (counts[i] + 1) // 2, counts[i] * counts[j])
            order = np.argsort(w, kind="stable")
            self.values = w[order]
            self.cum = np.cumsum(weight[order])

    def order_stats(self, ks: Sequence[int]) -> list[float]:
        """The k-th smallest Walsh averages (1-based, with multiplicity)."""
        return self.select(ks, [])[0]

    def select(self, ks: Sequence[int], windows: Sequence[tuple[int, int]]
               ) -> tuple[list[float], list[np.ndarray]]:
        """Order statistics ``ks`` and, for each ``(lo, hi)``, the sorted order statistics of
        ranks lo..hi (1-based), from one selection pass."""
        if self.cum is None:
            kth = sorted({k - 1 for k in ks} | {e - 1 for w in windows for e in w})
            part = np.partition(self.values, kth)
            return ([float(part[k - 1]) for k in ks],
                    [np.sort(part[lo - 1:hi]) for lo, hi in windows])
        pos = np.searchsorted(self.cum, np.asarray(ks, dtype=np.int64), side="left")
        wins = [self.values[np.searchsorted(self.cum, np.arange(lo, hi + 1), side="left")]
                for lo, hi in windows]
        return [float(self.values[p]) for p in pos.tolist()], wins

    def median_ks(self) -> list[int]:
        big = self.size
        return [(big + 1) // 2] if big % 2 else [big // 2, big // 2 + 1]

    @staticmethod
    def median_of(stats_: list[float]) -> float:
        return stats_[0] if len(stats_) == 1 else float(np.mean(stats_))  # as np.median

    def distinct(self) -> np.ndarray:
        return np.unique(self.values)


def _asymptotic_sd(x: np.ndarray, mu: float, digits_rank: int | None) -> float:
    """The tie-corrected null standard deviation of V for ``x - mu`` (zeros dropped)."""
    xd = x - mu
    xd = xd[xd != 0.0]
    nx = xd.size
    if nx == 0:
        return float("nan")
    r = stats.rankdata(_ranking_values(xd, digits_rank))
    _, counts = np.unique(r, return_counts=True)
    var = nx * (nx + 1) * (2 * nx + 1) / 24.0 - float(np.sum(counts**3 - counts)) / 48.0
    return math.sqrt(var) if var > 0 else float("nan")


def _asymptotic_w(x: np.ndarray, mu: float, correction: bool, digits_rank: int | None) -> float:
    """R's ``W(d)`` in ``wilcox.test``: the standardised signed-rank statistic of ``x - mu``."""
    xd = x - mu
    xd = xd[xd != 0.0]
    nx = xd.size
    if nx == 0:
        return 0.0
    r = stats.rankdata(_ranking_values(xd, digits_rank))
    zd = float(r[xd > 0].sum()) - nx * (nx + 1) / 4.0
    _, counts = np.unique(r, return_counts=True)
    sigma2 = nx * (nx + 1) * (2 * nx + 1) / 24.0 - float(np.sum(counts**3 - counts)) / 48.0
    if sigma2 <= 0.0:
        return float("nan")
    cc = 0.5 * float(np.sign(zd)) if correction else 0.0
    return (zd - cc) / math.sqrt(sigma2)


def _asymptotic_root(x: np.ndarray, u: np.ndarray, zq: float, correction: bool,
                     digits_rank: int | None) -> float:
    """Where ``W(mu) - zq`` changes sign on ``[min, max]`` (R: ``uniroot``): bisection over
    the end points and the open intervals between the distinct Walsh averages ``u`` (where the
    statistic is constant; R's ``uniroot`` practically never lands exactly on a Walsh
    average), returning the Walsh average at the jump."""
    k = u.size

    def rep(pos: int) -> float:  # 0: u[0]; 1..k-1: interval (u[pos-1], u[pos]); k: u[k-1]
        if pos == 0:
            return float(u[0])
        if pos == k:
            return float(u[-1])
        return float((u[pos - 1] + u[pos]) / 2.0)

    def h(pos: int) -> float:
        return _asymptotic_w(x, rep(pos), correction, digits_rank) - zq

    lo, hi = 0, k
    h_lo, h_hi = h(lo), h(hi)
    if h_lo == 0.0:
        return rep(lo)
    if h_hi == 0.0:
        return rep(hi)
    if math.isnan(h_lo) or math.isnan(h_hi) or np.sign(h_lo) == np.sign(h_hi):
        return float("nan")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        h_mid = h(mid)
        if h_mid == 0.0:
            return rep(mid)
        if np.sign(h_mid) == np.sign(h_lo):
            lo = mid
        else:
            hi = mid
    return float(u[lo])  # the boundary between positions lo and lo + 1


def _window_root(x: np.ndarray, u: np.ndarray, zq: float, correction: bool,
                 digits_rank: int | None) -> float | None:
    """:func:`_asymptotic_root` restricted to the distinct Walsh averages ``u`` of a window of
    ranks around the guessed limit; ``None`` when the sign change is not inside the window."""
    if u.size < 3:
        return None

    def h(i: int) -> float:  # on the open interval (u[i], u[i + 1])
        return _asymptotic_w(x, float((u[i] + u[i + 1]) / 2.0), correction, digits_rank) - zq

    lo, hi = 0, u.size - 2
    h_lo, h_hi = h(lo), h(hi)
    if not (h_lo > 0.0 > h_hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        h_mid = h(mid)
        if h_mid == 0.0:
            return None
        if h_mid > 0.0:
            lo = mid
        else:
            hi = mid
    return float(u[lo + 1])


def _guess_rank(big: int, sd: float, zq: float, correction: bool) -> int:
    """Smallest k in 1..big with ``(big/2 - k - c)/sd < zq`` (``c = 0.5 sign(big/2 - k)``)."""

    def f(k: int) -> float:
        dev = big / 2.0 - k
        cc = 0.5 * float(np.sign(dev)) if correction else 0.0
        return (dev - cc) / sd - zq

    k = min(max(math.floor(big / 2.0 - zq * sd - 1.0), 1), big)
    while k > 1 and f(k - 1) < 0.0:  # the guess is within a step or two; walk to the jump
        k -= 1
    while k < big and f(k) >= 0.0:
        k += 1
    return k


def _untied_root(walsh: _Walsh, zq: float, correction: bool) -> int:
    """R's asymptotic CI limit without tied differences: between Walsh averages the statistic
    is ``V = N - k`` (``k`` = Walsh averages below mu) with the untied variance, so the jump
    across ``zq`` is at the order statistic ``w_(k)`` with the smallest ``k`` (1 <= k <= N)
    for which ``(N/2 - k - c)/s < zq`` (``c = 0.5 sign(N/2 - k)`` with correction)."""
    n = walsh.n
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
    return _guess_rank(walsh.size, sd, zq, correction)  # the k-th smallest Walsh average


def hodges_lehmann(
    diff: Sequence[float] | np.ndarray,
    *,
    conf_level: float = 0.95,
    method: WilcoxonMethod = "exact",
    correction: bool = True,
    digits_rank: int | None = DIGITS_RANK_DEFAULT,
    exact_max_n: int | None = EXACT_MAX_N,
) -> dict[str, Any]:
    """Hodges–Lehmann estimate (median of the Walsh averages of all differences) and its
    two-sided confidence interval; see the module docstring for the methods and sources.

    Returns ``estimate``, ``ci_low``, ``ci_high``, ``ci_level`` (the achieved confidence level:
    exact coverage without ties; a lower bound with ties), ``ci_method`` (a sentence naming
    the method actually used) and ``n`` (differences used).  ``method="exact"`` with more than
    ``exact_max_n`` differences uses the asymptotic interval and says so.
    """
    if method not in ("exact", "asymptotic"):
        raise AnalysisInputError(f"method must be 'exact' or 'asymptotic', got {method!r}")
    if not 0.0 < conf_level < 1.0:
        raise AnalysisInputError(f"conf_level must be in (0, 1), got {conf_level!r}")
    _check_digits(digits_rank)
    x = np.asarray(diff, dtype=float)
    if x.ndim != 1 or np.isnan(x).any() or np.isinf(x).any():
        raise AnalysisInputError("hodges_lehmann: differences must be a 1-D array of finite "
                                 "numbers (drop missing pairs explicitly)")
    n = int(x.size)
    out: dict[str, Any] = {"estimate": float("nan"), "ci_low": float("nan"),
                           "ci_high": float("nan"), "ci_level": float("nan"),
                           "ci_method": None, "n": n}
    if n == 0:
        return out
    walsh = _Walsh(x)
    big = walsh.size
    med_ks = walsh.median_ks()
    alpha = 1.0 - conf_level  # R: alpha <- 1 - conf.level
    capped = exact_max_n is not None and n > exact_max_n
    rank_x = x if digits_rank is None else signif(x, digits_rank)
    tied = np.unique(rank_x).size < n
    if method == "exact" and not capped:
        qu = qsignrank(alpha / 2.0, n)
        if qu == 0:
            qu = 1
        ql = big - qu
        achieved = 2.0 * psignrank(qu - 1, n)
        *med, low_, high_ = walsh.order_stats([*med_ks, qu, ql + 1])
        out.update(estimate=walsh.median_of(med), ci_low=low_, ci_high=high_,
                   ci_level=1.0 - achieved)
        out["ci_method"] = ("exact (Walsh-average order statistics; conservative with tied "
                            "differences)" if tied else "exact (Walsh-average order statistics)")
        return out
    mumin, mumax = float(np.min(x)), float(np.max(x))
    w_min = _asymptotic_w(x, mumin, correction, digits_rank)
    w_max = _asymptotic_w(x, mumax, correction, digits_rank)
    a = alpha
    for _ in range(64):  # R: double alpha until the limits are inside the data range
        if a / 2.0 >= 1.0:
            break
        if (w_min - stats.norm.isf(a / 2.0) < 0.0) or (w_max - stats.norm.ppf(a / 2.0) > 0.0):
            a *= 2.0
        else:
            break
    level = conf_level if not (a >= 1.0 or 1.0 - conf_level < a * 0.75) else 1.0 - min(1.0, a)
    zs = (float(stats.norm.isf(a / 2.0)), float(stats.norm.ppf(a / 2.0)))
    if a < 1.0 and not tied:
        k_low, k_high = (_untied_root(walsh, zq, correction) for zq in zs)
        *med, low, high = walsh.order_stats([*med_ks, k_low, k_high])
    elif a < 1.0:
        # ties: the variance changes with mu.  Guess each limit's rank with the variance at
        # the median, search a window of ranks around it, else all distinct Walsh averages.
        sd0 = _asymptotic_sd(x, float(np.median(x)), digits_rank)
        half = 64
        if math.isfinite(sd0):
            guesses = [_guess_rank(big, sd0, zq, correction) for zq in zs]
            windows = [(max(1, k - half), min(big, k + half)) for k in guesses]
            med, wins = walsh.select(med_ks, windows)
        else:
            med, wins = walsh.order_stats(med_ks), [np.empty(0), np.empty(0)]
        limits: list[float] = []
        for zq, win in zip(zs, wins, strict=True):
            root = _window_root(x, np.unique(win), zq, correction, digits_rank)
            if root is None:
                root = _asymptotic_root(x, walsh.distinct(), zq, correction, digits_rank)
            limits.append(root)
        low, high = limits
    else:
        med = walsh.order_stats(med_ks)
        low = high = float(np.median(x))
    out["estimate"] = walsh.median_of(med)
    why = f" (n = {n} > exact_max_n = {exact_max_n})" if method == "exact" else ""
    out.update(ci_low=low, ci_high=high, ci_level=level,
               ci_method=("asymptotic (inverted normal approximation"
                          + (", continuity-corrected" if correction else "") + ")" + why))
    return out


# --------------------------------------------------------------------------- the test


def wilcoxon_signed_rank(
    diff: Sequence[float] | np.ndarray,
    *,
    method: WilcoxonMethod = "exact",
    correction: bool = True,
    zero_method: ZeroMethod = "wilcoxon",
    digits_rank: int | None = DIGITS_RANK_DEFAULT,
    exact_max_n: int | None = EXACT_MAX_N,
    conf_level: float = 0.95,
) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired differences with the Hodges–Lehmann
    estimate and confidence interval (methods and sources: module docstring).

    ``method="exact"``: the exact (conditional, with ties or zeros) permutation distribution
    whenever the number of non-zero differences is at most ``exact_max_n`` (``None``: always);
    above it the normal approximation (continuity-corrected unless ``correction=False``).
    ``method="asymptotic"``: the normal approximation, as R's ``wilcox.test`` with ties.

    Returns ``V`` (sum of the ranks of the positive differences), ``p``, ``n_used`` (non-zero
    differences), ``n_zero``, ``ties`` (tied non-zero absolute differences at
    ``digits_rank``), ``method`` (the method actually used, in words: ``"exact"``,
    ``"exact permutation"`` with ties or zeros, ``"asymptotic, continuity-corrected"``, ...),
    ``method_used`` (``"exact"`` or ``"asymptotic"``), ``zero_method``, ``digits_rank``,
    ``exact_max_n`` and ``hl_estimate``, ``hl_ci_low``, ``hl_ci_high``, ``hl_ci_level``,
    ``hl_ci_method`` (:func:`hodges_lehmann` of the differences the test uses: the non-zero
    ones with ``zero_method="wilcoxon"``, as R, all with ``"pratt"``).
    """
    if method not in ("exact", "asymptotic"):
        raise AnalysisInputError(f"wilcoxon method must be 'exact' or 'asymptotic', got {method!r}")
    if exact_max_n is not None and (not isinstance(exact_max_n, int) or exact_max_n < 0):
        raise AnalysisInputError(f"exact_max_n must be a non-negative integer or None, "
                                 f"got {exact_max_n!r}")
    ranks, positive, n_zero = signed_rank_scores(diff, zero_method=zero_method,
                                                 digits_rank=digits_rank)
    n_used = int(ranks.size)
    out: dict[str, Any] = {"V": float("nan"), "p": float("nan"), "n_used": n_used,
                           "n_zero": n_zero, "ties": False, "method": None, "method_used": None,
                           "zero_method": zero_method, "digits_rank": digits_rank,
                           "exact_max_n": exact_max_n}
    d = np.asarray(diff, dtype=float)
    hl = hodges_lehmann(d if zero_method == "pratt" else d[d != 0.0], conf_level=conf_level,
                        method=method, correction=correction, digits_rank=digits_rank,
                        exact_max_n=exact_max_n)
    out.update(hl_estimate=hl["estimate"], hl_ci_low=hl["ci_low"], hl_ci_high=hl["ci_high"],
               hl_ci_level=hl["ci_level"], hl_ci_method=hl["ci_method"])
    if n_used == 0:
        return out
    out["V"] = float(ranks[positive].sum())
    ties = bool(np.unique(ranks).size < n_used)
    out["ties"] = ties
    capped = exact_max_n is not None and n_used > exact_max_n
    if method == "exact" and not capped:
        out["p"] = _exact_two_sided(ranks, positive)
        out["method"] = "exact" if not ties and n_zero == 0 else "exact permutation"
        out["method_used"] = "exact"
        return out
    expect = float(ranks.sum()) / 2.0
    sd = math.sqrt(float(np.sum(ranks**2)) / 4.0)
    dev = out["V"] - expect
    cc = 0.5 * float(np.sign(dev)) if correction else 0.0
    z = (dev - cc) / sd
    out["p"] = float(min(1.0, 2.0 * stats.norm.sf(abs(z))))
    used = "asymptotic, continuity-corrected" if correction else "asymptotic"
    if method == "exact":
        used += f" (n = {n_used} > exact_max_n = {exact_max_n})"
    out["method"] = used
    out["method_used"] = "asymptotic"
    return out
