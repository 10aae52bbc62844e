"""Paired comparisons vs R on datasets::sleep (analysis-notes S1-S4, S6, S9)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hepatrial.analysis import (
    AnalysisInputError,
    effect_sizes,
    paired_test,
    paired_vs_baseline,
    wilcoxon_signed_rank,
)
from tests.analysis._data import SLEEP_1, SLEEP_2, sleep_long

REL = 1e-6


def test_s1_paired_t_x_minus_y() -> None:
    # R: t.test(extra ~ group, data = sleep, paired = TRUE) -> x - y
    r = paired_test(SLEEP_2, SLEEP_1)  # followup - baseline = group1 - group2
    assert r["n_pairs"] == 10
    assert r["t"] == pytest.approx(-4.0621277, rel=REL)
    assert r["df"] == 9
    assert r["p_t"] == pytest.approx(0.00283289, rel=1e-5)  # R prints 6 significant digits
    assert r["mean_diff"] == pytest.approx(-1.58, rel=REL)
    assert r["ci_low"] == pytest.approx(-2.4598858, rel=REL)
    assert r["ci_high"] == pytest.approx(-0.7001142, rel=REL)


def test_s2_wilcoxon_r_default_asymptotic_corrected() -> None:
    r = paired_test(SLEEP_2, SLEEP_1, wilcoxon="asymptotic")
    assert r["wilcoxon_V"] == 0.0
    assert r["p_wilcoxon"] == pytest.approx(0.009090698, rel=REL)
    assert r["wilcoxon_method"] == "asymptotic, continuity-corrected"
    assert r["n_zero_diff"] == 1


def test_s3_wilcoxon_exact_permutation() -> None:
    r = paired_test(SLEEP_2, SLEEP_1)
    assert r["p_wilcoxon"] == pytest.approx(0.00390625, rel=REL)
    assert r["wilcoxon_method"] == "exact permutation"  # ties and a zero difference
    # direction does not change the two-sided p; V is R's sum of positive ranks
    r2 = paired_test(SLEEP_1, SLEEP_2)
    assert r2["p_wilcoxon"] == pytest.approx(0.00390625, rel=REL)
    assert r2["wilcoxon_V"] == 45.0


def test_s4_wilcoxon_without_continuity_correction() -> None:
    d = np.subtract(SLEEP_1, SLEEP_2)
    r = wilcoxon_signed_rank(d, method="asymptotic", correction=False)
    assert r["p"] == pytest.approx(0.007632442, rel=REL)
    assert r["n_used"] == 9 and r["n_zero"] == 1 and r["ties"] is True


def test_s6_effect_sizes_dz_gz() -> None:
    d = np.subtract(SLEEP_2, SLEEP_1)
    es = effect_sizes(d)
    assert es["d_z"] == pytest.approx(1.2845576, rel=REL)
    assert es["g_z"] == pytest.approx(1.1744526, rel=REL)
    r = paired_test(SLEEP_1, SLEEP_2)
    assert r["d_z"] == pytest.approx(1.2845576, rel=REL)
    assert r["g_z"] == pytest.approx(1.1744526, rel=REL)


def test_s9_all_positive_n8_exact() -> None:
    r = wilcoxon_signed_rank(np.arange(1.0, 9.0))
    assert r["p"] == pytest.approx(0.0078125, rel=REL)
    assert r["method"] == "exact"
    assert r["V"] == 36.0
    res = paired_test(np.zeros(8), np.arange(1.0, 9.0))
    assert res["min_p_exact"] == pytest.approx(0.0078125, rel=REL)


def test_paired_vs_baseline_on_tidy_sleep_matches_arrays() -> None:
    out = paired_vs_baseline(sleep_long(), baseline="G2")
    assert list(out["visit"]) == ["G1"]
    row = out.iloc[0]
    assert row["t"] == pytest.approx(-4.0621277, rel=REL)
    assert row["p_wilcoxon"] == pytest.approx(0.00390625, rel=REL)
    assert row["n_pairs"] == 10 and row["n_excluded"] == 0 and row["n_subjects"] == 10


def test_missing_visits_are_counted_not_dropped_silently() -> None:
    df = sleep_long()
    df = df[~((df["participant_id"] == "P01") & (df["visit"] == "G1"))]  # P01 lacks baseline
    df.loc[(df["participant_id"] == "P02") & (df["visit"] == "G2"), "value"] = np.nan
    df = pd.concat([df, pd.DataFrame([{"participant_id": "P11", "visit": "G1", "value": 1.0}])])
    out = paired_vs_baseline(df.reset_index(drop=True), baseline="G1")
    row = out.iloc[0]
    assert row["n_subjects"] == 11
    assert row["n_pairs"] == 8
    assert row["excluded_missing_baseline"] == 1  # P01
    assert row["excluded_missing_visit"] == 2  # P02 (NaN), P11 (no G2 row)
    assert row["excluded_missing_both"] == 0
    assert row["n_excluded"] == 3


def test_visit_order_is_chronological_not_alphabetical() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for s in range(6):
        for v, day in [("D0", 0), ("W4", 28), ("W24", 168), ("W1", 7)]:
            rows.append({"participant_id": f"S{s}", "visit": v, "nominal_day": day,
                         "analyte": "albumin", "value": 30 + rng.normal()})
            rows.append({"participant_id": f"S{s}", "visit": v, "nominal_day": day,
                         "analyte": "bilirubin", "value": 40 + rng.normal()})
    out = paired_vs_baseline(pd.DataFrame(rows), baseline="D0", by="analyte")
    assert list(out["outcome"]) == ["albumin"] * 3 + ["bilirubin"] * 3
    assert list(out["visit"]) == ["W1", "W4", "W24"] * 2


def test_mixed_analytes_without_by_is_an_error() -> None:
    df = pd.DataFrame({"participant_id": ["a", "a"], "visit": ["D0", "D0"],
                       "analyte": ["albumin", "inr"], "value": [30.0, 1.2]})
    with pytest.raises(AnalysisInputError, match="by='analyte'"):
        paired_vs_baseline(df, baseline="D0")


def test_bad_input_names_column_and_row() -> None:
    df = sleep_long().astype({"value": object})
    df.loc[5, "value"] = "abc"
    with pytest.raises(AnalysisInputError, match=r"column 'value', row 5: value 'abc'"):
        paired_vs_baseline(df, baseline="G1")
    with pytest.raises(AnalysisInputError, match="column 'visit_code' not found"):
        paired_vs_baseline(sleep_long(), baseline="G1", visit="visit_code")
    dup = pd.concat([sleep_long(), sleep_long().iloc[[3]]], ignore_index=True)
    with pytest.raises(AnalysisInputError, match="row 20: duplicate record"):
        paired_vs_baseline(dup, baseline="G1")
    with pytest.raises(AnalysisInputError, match="baseline level 'D0' not found"):
        paired_vs_baseline(sleep_long(), baseline="D0")


def test_exact_with_ties_and_n_over_13_is_exact_not_a_fallback() -> None:
    # issue 9: this used to fall back silently to the normal approximation (n > 13 with ties)
    d = np.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, -1, -2, 7, 8.0])
    r = wilcoxon_signed_rank(d)
    assert r["method"] == "exact permutation" and r["method_used"] == "exact"
    # all 2**15 sign vectors of the mid-ranks, enumerated
    # |d| = 1 three times (mid-rank 2), 2 three times (5), 3, 4, 5 twice (7.5, 9.5, 11.5)
    ranks = np.array([2, 2, 5, 5, 7.5, 7.5, 9.5, 9.5, 11.5, 11.5, 13, 2, 5, 14, 15])
    signs = (np.arange(2**15)[:, None] >> np.arange(15)) & 1
    v_all = signs @ ranks
    v_obs = ranks[d > 0].sum()
    assert r["V"] == v_obs == 113.0
    centre = ranks.sum() / 2
    p_enum = np.mean(np.abs(v_all - centre) >= abs(v_obs - centre) - 1e-9)
    assert r["p"] == pytest.approx(p_enum, rel=1e-12)
    assert r["p"] != pytest.approx(wilcoxon_signed_rank(d, method="asymptotic")["p"], rel=1e-3)


def test_screening_visit_before_baseline_is_not_compared() -> None:
    rows = []
    for s in range(5):
        for v, day, val in [("SCR", -14, 10.0 + s), ("D0", 0, 11.0 + s),
                            ("W4", 28, 13.0 + s * 1.1)]:
            rows.append({"participant_id": f"S{s}", "visit": v, "nominal_day": day, "value": val})
    out = paired_vs_baseline(pd.DataFrame(rows), baseline="D0")
    assert list(out["visit"]) == ["W4"]
