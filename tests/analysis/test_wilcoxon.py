"""Wilcoxon signed-rank options, labels, boundaries and errors; paired_test/paired_vs_baseline
keys.  (R references: test_wilcoxon_r.py; properties: test_wilcoxon_props.py.)"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hepatrial.analysis import AnalysisInputError, paired_test, paired_vs_baseline
from hepatrial.analysis.wilcoxon import (
    DIGITS_RANK_DEFAULT,
    EXACT_MAX_N,
    exact_tail_probability,
    hodges_lehmann,
    psignrank,
    qsignrank,
    signed_rank_scores,
    signif,
    wilcoxon_signed_rank,
)
from tests.analysis._data import SLEEP_1, SLEEP_2, sleep_long


def test_defaults_are_documented_values() -> None:
    assert DIGITS_RANK_DEFAULT == 9 and EXACT_MAX_N == 500
    r = wilcoxon_signed_rank([1.0, 2.0, -3.0])
    assert r["zero_method"] == "wilcoxon" and r["digits_rank"] == 9 and r["exact_max_n"] == 500


def test_recorded_decimal_ties_are_ties_at_the_default_digits() -> None:
    # INR 1.1 -> 1.2 and 1.2 -> 1.3: both +0.1 as recorded, not in binary floating point
    d = np.array([1.2 - 1.1, 1.3 - 1.2, 0.5 - 0.3, -(0.4 - 0.3), 0.3 - 0.0, (0.1 + 0.2) - 0.0])
    assert d[0] != d[1] and d[4] != d[5]
    ranks, positive, n_zero = signed_rank_scores(d)
    np.testing.assert_array_equal(ranks, [2.0, 2.0, 4.0, 2.0, 5.5, 5.5])
    raw, _, _ = signed_rank_scores(d, digits_rank=None)
    np.testing.assert_array_equal(raw, [1.0, 3.0, 4.0, 2.0, 5.0, 6.0])  # float noise order
    assert positive.tolist() == [True, True, True, False, True, True] and n_zero == 0
    assert wilcoxon_signed_rank(d)["ties"] is True
    assert wilcoxon_signed_rank(d, digits_rank=None)["ties"] is False
    assert wilcoxon_signed_rank(d, digits_rank=None)["method"] == "exact"


def test_pratt_ranks_zeros_then_drops_them() -> None:
    d = np.array([0.0, 0.0, 1.0, -2.0, 3.0])
    ranks, positive, n_zero = signed_rank_scores(d, zero_method="pratt")
    assert ranks.tolist() == [3.0, 4.0, 5.0] and n_zero == 2
    assert positive.tolist() == [True, False, True]
    ranks_w, _, _ = signed_rank_scores(d)
    assert ranks_w.tolist() == [1.0, 2.0, 3.0]
    r = wilcoxon_signed_rank(d, zero_method="pratt")
    assert r["V"] == 8.0 and r["method"] == "exact permutation" and r["n_used"] == 3
    # sign vectors of ranks (3, 4, 5): V in {0, 3, 4, 5, 7, 8, 9, 12}, |V - 6| >= 2 six times
    assert r["p"] == 6 / 8


def test_exact_max_n_switches_to_the_normal_approximation_and_says_so() -> None:
    d = np.arange(1.0, 9.0)
    capped = wilcoxon_signed_rank(d, exact_max_n=5)
    assert capped["method"] == "asymptotic, continuity-corrected (n = 8 > exact_max_n = 5)"
    assert capped["method_used"] == "asymptotic"
    assert capped["p"] == wilcoxon_signed_rank(d, method="asymptotic")["p"]
    assert capped["hl_ci_method"] == ("asymptotic (inverted normal approximation, "
                                      "continuity-corrected) (n = 8 > exact_max_n = 5)")
    at_cap = wilcoxon_signed_rank(d, exact_max_n=8)
    assert at_cap["method"] == "exact" and at_cap["p"] == 2 / 256
    unlimited = wilcoxon_signed_rank(np.arange(1.0, 601.0), exact_max_n=None)
    assert unlimited["method_used"] == "exact" and unlimited["p"] == 2.0 * 2.0**-600
    plain = wilcoxon_signed_rank(d, exact_max_n=5, correction=False)
    assert plain["method"] == "asymptotic (n = 8 > exact_max_n = 5)"


def test_extreme_tails_keep_relative_precision() -> None:
    # all 1000 differences positive: p = 2 / 2**1000, far below double epsilon
    r = wilcoxon_signed_rank(np.arange(1.0, 1001.0), exact_max_n=None)
    assert r["p"] == 2.0**-999
    # one negative difference of rank 1: V = N - 1, P(V >= N - 1) = 2 / 2**n
    d = np.arange(1.0, 41.0)
    d[0] = -1.0
    assert wilcoxon_signed_rank(d)["p"] == pytest.approx(4.0 * 2.0**-40, rel=1e-14)


def test_centre_statistic_gives_p_one() -> None:
    r = wilcoxon_signed_rank([1.0, -1.0, 2.0, -2.0])
    assert r["p"] == 1.0 and r["V"] == 5.0


def test_all_zero_differences() -> None:
    r = wilcoxon_signed_rank(np.zeros(5))
    assert math.isnan(r["p"]) and math.isnan(r["V"]) and r["method"] is None
    assert r["n_used"] == 0 and r["n_zero"] == 5 and math.isnan(r["hl_estimate"])
    pratt = wilcoxon_signed_rank(np.zeros(5), zero_method="pratt")
    assert math.isnan(pratt["p"]) and pratt["hl_estimate"] == 0.0  # all differences are 0
    assert pratt["hl_ci_low"] == pratt["hl_ci_high"] == 0.0


def test_hodges_lehmann_small_n_level_not_achievable() -> None:
    # n = 4: the widest interval [min, max] has level 1 - 2/16 = 0.875 < 0.95
    hl = hodges_lehmann([1.0, 2.0, 4.0, 8.0])
    assert (hl["ci_low"], hl["ci_high"]) == (1.0, 8.0)
    assert hl["ci_level"] == 0.875
    assert hl["estimate"] == 3.5  # Walsh averages 1 1.5 2 2.5 3 4 4.5 5 6 8


def test_hodges_lehmann_r_exact_example_sleep_group2() -> None:
    # R: wilcox.test(sleep$extra[11:20], conf.int = TRUE) -> exact, no ties:
    # estimate 2.3, CI (0.80, 4.05) at 95.1 % -- computed from the definition here
    x = np.array(SLEEP_2)
    i, j = np.triu_indices(10)
    w = np.sort((x[i] + x[j]) / 2)
    hl = hodges_lehmann(x)
    k = qsignrank(0.025, 10)
    assert k == 9
    assert hl["ci_low"] == w[k - 1] and hl["ci_high"] == w[55 - k]
    assert hl["ci_level"] == pytest.approx(1 - 2 * psignrank(8, 10), rel=1e-15)
    assert hl["estimate"] == float(np.median(w))


def test_tail_probability_edges() -> None:
    a = np.array([1, 2, 3])
    assert exact_tail_probability(a, -1) == 0.0
    assert exact_tail_probability(a, 6) == 1.0
    assert exact_tail_probability(a, 0) == 1 / 8
    assert exact_tail_probability(a, 3) == 5 / 8  # sums 0, 1, 2, 3, 1 + 2
    assert exact_tail_probability(np.array([], dtype=np.int64), 0) == 1.0
    with pytest.raises(AnalysisInputError, match="positive integers"):
        exact_tail_probability(np.array([0, 1]), 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "permutation"}, "method must be 'exact' or 'asymptotic'"),
        ({"zero_method": "zsplit"}, "zero_method must be 'wilcoxon' or 'pratt'"),
        ({"digits_rank": 0}, "digits_rank must be a positive integer or None"),
        ({"digits_rank": 2.5}, "digits_rank must be a positive integer or None"),
        ({"digits_rank": True}, "digits_rank must be a positive integer or None"),
        ({"exact_max_n": -1}, "exact_max_n must be a non-negative integer or None"),
        ({"conf_level": 1.0}, r"conf_level must be in \(0, 1\)"),
    ],
)
def test_bad_options_are_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(AnalysisInputError, match=match):
        wilcoxon_signed_rank([1.0, 2.0], **kwargs)


def test_missing_or_infinite_differences_are_errors() -> None:
    with pytest.raises(AnalysisInputError, match="missing values"):
        wilcoxon_signed_rank([1.0, float("nan")])
    with pytest.raises(AnalysisInputError, match="infinite"):
        wilcoxon_signed_rank([1.0, float("inf")])


def test_signif_basics() -> None:
    np.testing.assert_array_equal(signif([0.0, -0.0, 123.456, -0.0012345], 3),
                                  [0.0, -0.0, 123.0, -0.00123])
    assert signif([1.0 / 3.0], 23)[0] == 1.0 / 3.0
    assert np.isnan(signif([float("nan")], 3)[0])


def test_paired_test_adds_keys_and_passes_options() -> None:
    r = paired_test(SLEEP_1, SLEEP_2)
    for key in ("wilcoxon_V", "p_wilcoxon", "wilcoxon_method", "n_zero_diff", "min_p_exact"):
        assert key in r
    assert r["wilcoxon_method_used"] == "exact" and r["wilcoxon_ties"] is True
    assert r["wilcoxon_zero_method"] == "wilcoxon" and r["wilcoxon_digits_rank"] == 9
    assert (r["hl_estimate"], r["hl_ci_low"], r["hl_ci_high"]) == pytest.approx(
        (1.4, 1.05, 2.95), rel=1e-14)
    assert r["hl_ci_level"] == 1 - 2 * 10 / 512
    assert "conservative" in r["hl_ci_method"]
    pratt = paired_test(SLEEP_1, SLEEP_2, zero_method="pratt", confidence=0.9,
                        digits_rank=None)
    assert pratt["wilcoxon_zero_method"] == "pratt" and pratt["wilcoxon_digits_rank"] is None
    assert pratt["hl_estimate"] == 1.3  # the zero difference is kept in the estimate
    assert pratt["hl_ci_level"] >= 0.9
    capped = paired_test(SLEEP_1, SLEEP_2, exact_max_n=3)
    assert capped["wilcoxon_method_used"] == "asymptotic"
    assert capped["p_wilcoxon"] == pytest.approx(0.009090698, rel=1e-6)  # analysis-notes S2


def test_paired_test_without_pairs_has_the_keys() -> None:
    r = paired_test([], [])
    assert r["n_pairs"] == 0 and r["wilcoxon_method_used"] is None
    assert math.isnan(r["hl_estimate"]) and r["hl_ci_method"] is None


def test_paired_vs_baseline_passes_options_and_keeps_old_columns() -> None:
    out = paired_vs_baseline(sleep_long(), baseline="G1", zero_method="pratt",
                             digits_rank=None, exact_max_n=None)
    row = out.iloc[0]
    assert row["wilcoxon_zero_method"] == "pratt" and row["wilcoxon_digits_rank"] is None
    assert row["p_wilcoxon"] == pytest.approx(0.00390625, rel=1e-12)
    assert row["hl_estimate"] == pytest.approx(1.3, rel=1e-14)
    old = ["outcome", "visit", "n_subjects", "n_excluded", "excluded_missing_baseline",
           "excluded_missing_visit", "excluded_missing_both", "n_pairs", "mean_baseline",
           "mean_followup", "mean_diff", "sd_diff", "ci_low", "ci_high", "t", "df", "p_t",
           "wilcoxon_V", "p_wilcoxon", "wilcoxon_method", "n_zero_diff", "d_z", "g_z",
           "min_p_exact"]
    assert set(old) <= set(out.columns)
    default = paired_vs_baseline(sleep_long(), baseline="G1")
    assert default.iloc[0]["hl_estimate"] == pytest.approx(1.4, rel=1e-14)


def test_paired_vs_baseline_interim_visit_without_pairs() -> None:
    df = pd.DataFrame({"participant_id": ["a", "b", "a"], "visit": ["D0", "D0", "W1"],
                       "value": [1.0, 2.0, np.nan]})
    out = paired_vs_baseline(df, baseline="D0")
    row = out.iloc[0]
    assert row["n_pairs"] == 0 and math.isnan(row["p_wilcoxon"])
    assert row["wilcoxon_method_used"] is None and math.isnan(row["hl_estimate"])


def test_window_search_reports_when_the_jump_is_outside() -> None:
    from hepatrial.analysis.wilcoxon import _asymptotic_root, _window_root

    d = np.array([1.0, 2.0, 2.0, 3.5, 4.0, 7.0, 8.5, 9.0, 12.0, 15.0])
    i, j = np.triu_indices(d.size)
    u = np.unique((d[i] + d[j]) / 2.0)
    root = _asymptotic_root(d, u, 1.96, True, 9)
    inside = u[(u > root - 2) & (u < root + 2)]
    assert _window_root(d, inside, 1.96, True, 9) == root
    assert _window_root(d, u[u > root + 1], 1.96, True, 9) is None  # no sign change there
    assert _window_root(d, u[:2], 1.96, True, 9) is None
