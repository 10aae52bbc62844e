"""Property tests of the exact Wilcoxon signed-rank test and the Hodges–Lehmann interval.

The exact p-value is checked against brute-force enumeration of all 2**n sign vectors (small
n, with ties and zeros) and against exact rational arithmetic (Python integers, n up to 60).
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from hepatrial.analysis.wilcoxon import (
    _asymptotic_root,
    exact_tail_probability,
    hodges_lehmann,
    psignrank,
    qsignrank,
    signif,
    wilcoxon_signed_rank,
)

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)

# small integers: many ties and zeros; halves: ties between +x and -x too
small_values = st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=12)
half_values = st.lists(st.integers(-8, 8).map(lambda k: k / 2.0), min_size=1, max_size=11)
zero_methods = st.sampled_from(["wilcoxon", "pratt"])


def midranks(values: np.ndarray) -> np.ndarray:
    """Mid-ranks written out from the definition: #smaller + (#equal + 1) / 2."""
    less = (values[None, :] < values[:, None]).sum(axis=1)
    equal = (values[None, :] == values[:, None]).sum(axis=1)
    return less + (equal + 1) / 2.0


def brute_force_p(d: np.ndarray, zero_method: str) -> float:
    nonzero = d != 0
    if zero_method == "pratt":
        ranks = midranks(np.abs(d))[nonzero]
    else:
        ranks = midranks(np.abs(d[nonzero]))
    v = ranks[d[nonzero] > 0].sum()
    centre = ranks.sum() / 2.0
    hits = 0
    for signs in itertools.product((0.0, 1.0), repeat=ranks.size):
        hits += abs(float(np.dot(signs, ranks)) - centre) >= abs(v - centre) - 1e-9
    return hits / 2**ranks.size


@SETTINGS
@given(values=st.one_of(small_values, half_values), zero_method=zero_methods)
def test_exact_p_equals_brute_force_enumeration(values: list[float], zero_method: str) -> None:
    d = np.array(values)
    res = wilcoxon_signed_rank(d, zero_method=zero_method, digits_rank=None)  # type: ignore[arg-type]
    if not (d != 0).any():
        assert np.isnan(res["p"]) and res["method"] is None
        return
    assert res["method_used"] == "exact"
    assert res["p"] == pytest.approx(brute_force_p(d, zero_method), rel=1e-12)


@SETTINGS
@given(values=st.one_of(small_values, half_values), zero_method=zero_methods,
       method=st.sampled_from(["exact", "asymptotic"]))
def test_p_in_unit_interval_and_symmetric_in_sign_flip(values: list[float], zero_method: str,
                                                       method: str) -> None:
    d = np.array(values)
    a = wilcoxon_signed_rank(d, zero_method=zero_method, method=method)  # type: ignore[arg-type]
    b = wilcoxon_signed_rank(-d, zero_method=zero_method, method=method)  # type: ignore[arg-type]
    if not (d != 0).any():
        return
    assert 0.0 < a["p"] <= 1.0
    assert a["p"] == b["p"]
    total = (a["n_used"] * (a["n_used"] + 1) / 2 if zero_method == "wilcoxon"
             else d.size * (d.size + 1) / 2 - a["n_zero"] * (a["n_zero"] + 1) / 2)
    assert a["V"] + b["V"] == pytest.approx(total)  # ranks of + and - add up to all ranks
    assert a["hl_estimate"] == pytest.approx(-b["hl_estimate"], abs=1e-12)
    assert a["hl_ci_low"] == pytest.approx(-b["hl_ci_high"], abs=1e-12)


def exact_rational_p(ranks2: list[int], v2: int) -> Fraction:
    """Two-sided p from the generating function prod(1 + x**a) in exact integer arithmetic."""
    counts = {0: 1}
    for a in ranks2:
        new = dict(counts)
        for s, c in counts.items():
            new[s + a] = new.get(s + a, 0) + c
        counts = new
    total = sum(ranks2)
    low = min(v2, total - v2)
    if 2 * low == total:
        return Fraction(1)
    tail = sum(c for s, c in counts.items() if s <= low)
    return min(Fraction(1), Fraction(2 * tail, 2 ** len(ranks2)))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(values=st.lists(st.integers(-12, 30).map(float), min_size=14, max_size=60))
def test_exact_p_equals_exact_rational_arithmetic_up_to_n60(values: list[float]) -> None:
    d = np.array(values)
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return
    r2 = (2 * midranks(np.abs(nonzero))).astype(int)
    v2 = int(r2[nonzero > 0].sum())
    want = exact_rational_p(r2.tolist(), v2)
    got = wilcoxon_signed_rank(d)["p"]
    assert got == pytest.approx(float(want), rel=1e-12)


@SETTINGS
@given(scores=st.lists(st.integers(1, 15), min_size=0, max_size=10), t=st.integers(-2, 160))
def test_tail_probability_equals_enumeration(scores: list[int], t: int) -> None:
    a = np.array(scores, dtype=np.int64)
    sums = [sum(s) for s in itertools.product(*[(0, x) for x in scores])] if scores else [0]
    want = sum(s <= t for s in sums) / len(sums)
    assert exact_tail_probability(a, t) == pytest.approx(want, rel=1e-13, abs=0.0)


@SETTINGS
@given(values=st.lists(st.integers(-40, 40), min_size=2, max_size=12, unique=True),
       conf=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_exact_ci_is_the_inversion_of_the_exact_test(values: list[int], conf: float) -> None:
    """Without ties, mu strictly between consecutive Walsh averages lies inside the interval
    iff the exact test of d - mu does not reject at the interval's achieved level."""
    d = np.array(values, dtype=float)
    hl = hodges_lehmann(d, conf_level=conf)
    i, j = np.triu_indices(d.size)
    u = np.unique((d[i] + d[j]) / 2.0)
    mids = (u[:-1] + u[1:]) / 2.0  # multiples of 1/4: d - mu is exact, never tied, never 0
    achieved_alpha = 1.0 - hl["ci_level"]
    for mu in mids:
        p = wilcoxon_signed_rank(d - mu, digits_rank=None)["p"]
        inside = hl["ci_low"] < mu < hl["ci_high"]
        assert inside == (p > achieved_alpha * (1 + 1e-12)), (mu, p, hl)
    assert hl["ci_low"] <= hl["estimate"] <= hl["ci_high"]


@SETTINGS
@given(values=st.lists(st.integers(-20, 20).map(float), min_size=1, max_size=25),
       shift=st.integers(-50, 50), method=st.sampled_from(["exact", "asymptotic"]))
def test_hodges_lehmann_is_shift_equivariant(values: list[float], shift: int,
                                             method: str) -> None:
    d = np.array(values)
    a = hodges_lehmann(d, method=method)  # type: ignore[arg-type]
    b = hodges_lehmann(d + shift, method=method)  # type: ignore[arg-type]
    for key in ("estimate", "ci_low", "ci_high"):
        assert b[key] == pytest.approx(a[key] + shift, abs=1e-12)
    if a["ci_level"] > 0:  # level 0: R's degenerate interval at the median of the data
        assert a["ci_low"] <= a["estimate"] <= a["ci_high"]
    i, j = np.triu_indices(d.size)
    walsh = set(((d[i] + d[j]) / 2.0).tolist())
    assert a["ci_low"] in walsh and a["ci_high"] in walsh


@SETTINGS
@given(values=st.lists(st.integers(-6, 9).map(float), min_size=1, max_size=40),
       conf=st.sampled_from([0.9, 0.95]))
def test_exact_ci_with_ties_is_the_walsh_order_statistics(values: list[float],
                                                          conf: float) -> None:
    """Tied data: the order statistics come from distinct values with counts; same numbers
    as sorting all n(n+1)/2 Walsh averages."""
    d = np.array(values)
    hl = hodges_lehmann(d, conf_level=conf)
    i, j = np.triu_indices(d.size)
    w = np.sort((d[i] + d[j]) / 2.0)
    k = qsignrank((1.0 - conf) / 2.0, d.size) or 1
    assert hl["estimate"] == float(np.median(w))
    assert (hl["ci_low"], hl["ci_high"]) == (w[k - 1], w[w.size - k])
    assert hl["ci_level"] == 1.0 - 2.0 * psignrank(k - 1, d.size)


@SETTINGS
@given(values=st.lists(st.floats(-100, 100, allow_nan=False).map(lambda v: round(v, 3)),
                       min_size=2, max_size=40, unique=True),
       correction=st.booleans())
def test_untied_asymptotic_limits_equal_the_step_function_search(values: list[float],
                                                                 correction: bool) -> None:
    """Without ties the asymptotic limits are order statistics found in closed form; the same
    as searching R's W(mu) over the pieces between Walsh averages."""
    d = np.array(values)
    if np.unique(signif(d, 9)).size < d.size:
        return
    hl = hodges_lehmann(d, method="asymptotic", correction=correction)
    i, j = np.triu_indices(d.size)
    u = np.unique((d[i] + d[j]) / 2.0)
    for zq, key in ((hl_z(hl["ci_level"]), "ci_low"), (-hl_z(hl["ci_level"]), "ci_high")):
        if hl["ci_level"] > 0:
            assert hl[key] == _asymptotic_root(d, u, zq, correction, 9)


def hl_z(level: float) -> float:
    return float(stats.norm.isf((1.0 - level) / 2.0))


@SETTINGS
@given(values=st.lists(st.integers(-300, 300), min_size=8, max_size=70, unique=True),
       repeats=st.lists(st.integers(0, 7), min_size=1, max_size=3),
       correction=st.booleans())
def test_tied_asymptotic_limits_equal_the_full_search(values: list[int], repeats: list[int],
                                                      correction: bool) -> None:
    """A few repeated values (the Walsh averages are then kept unsorted): the limits found in
    a window of ranks around the guess equal the search over all distinct Walsh averages."""
    base = np.array(values, dtype=float) / 10.0
    d = np.concatenate([base, base[np.array(repeats) % base.size]])
    hl = hodges_lehmann(d, method="asymptotic", correction=correction)
    if hl["ci_level"] <= 0:
        return
    i, j = np.triu_indices(d.size)
    u = np.unique((d[i] + d[j]) / 2.0)
    z = hl_z(hl["ci_level"])
    assert hl["ci_low"] == _asymptotic_root(d, u, z, correction, 9)
    assert hl["ci_high"] == _asymptotic_root(d, u, -z, correction, 9)
