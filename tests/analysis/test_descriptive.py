"""describe() and the Friedman test (S7, R ?friedman.test RoundingTimes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hepatrial.analysis import describe, friedman
from tests.analysis._data import ROUNDING_METHODS, SLEEP_1, SLEEP_2, rounding_long, sleep_long


def test_s7_friedman_rounding_times() -> None:
    res = friedman(rounding_long(), visits=list(ROUNDING_METHODS))
    assert res["statistic"] == pytest.approx(11.142857, rel=1e-6)
    assert res["df"] == 2
    assert res["p"] == pytest.approx(0.003805041, rel=1e-6)
    assert res["n_blocks"] == 22 and res["n_dropped"] == 0


def test_friedman_reports_dropped_blocks() -> None:
    df = rounding_long()
    df = df[~((df["participant_id"] == "B03") & (df["visit"] == "Wide Angle"))]
    df.loc[df.index[0], "value"] = np.nan  # B01 Round Out missing
    res = friedman(df, visits=list(ROUNDING_METHODS))
    assert res["n_blocks"] == 20
    assert res["n_dropped"] == 2
    assert res["dropped_subjects"] == ["B01", "B03"]


def test_describe_sleep() -> None:
    out = describe(sleep_long(), baseline="G1")
    g1, g2 = out.iloc[0], out.iloc[1]
    assert g1["visit"] == "G1" and g2["visit"] == "G2"
    assert g1["n"] == 10
    assert g1["mean"] == pytest.approx(0.75, rel=1e-9)
    assert g1["sd"] == pytest.approx(np.std(SLEEP_1, ddof=1), rel=1e-12)
    assert g1["sd"] == pytest.approx(1.789010, rel=1e-6)  # R sd(sleep$extra[1:10])
    assert g2["mean"] == pytest.approx(2.33, rel=1e-9)
    assert g1["median"] == pytest.approx(0.35)
    # R quantile(type = 7): group 1 Q1 = -0.175, Q3 = 1.700
    assert g1["q1"] == pytest.approx(-0.175)
    assert g1["q3"] == pytest.approx(1.7)
    assert g1["min"] == -1.6 and g2["max"] == 5.5
    assert np.isnan(g1["mean_change"])
    assert g2["n_pairs"] == 10
    assert g2["mean_change"] == pytest.approx(1.58, rel=1e-9)
    # same interval as R t.test(paired) for y - x
    assert g2["change_ci_low"] == pytest.approx(0.7001142, rel=1e-6)
    assert g2["change_ci_high"] == pytest.approx(2.4598858, rel=1e-6)
    d = np.subtract(SLEEP_2, SLEEP_1)
    assert g2["sd_change"] == pytest.approx(np.std(d, ddof=1), rel=1e-12)


def test_describe_counts_missing_values() -> None:
    df = sleep_long()
    df.loc[0, "value"] = np.nan
    out = describe(df, baseline="G1")
    assert out.iloc[0]["n"] == 9 and out.iloc[0]["n_missing"] == 1
    assert out.iloc[1]["n_pairs"] == 9


def test_describe_by_analyte() -> None:
    df = pd.DataFrame({
        "participant_id": ["a", "a", "b", "b", "a", "b"],
        "visit": ["D0", "W1", "D0", "W1", "D0", "D0"],
        "analyte": ["inr", "inr", "inr", "inr", "albumin", "albumin"],
        "value": [1.0, 2.0, 3.0, 5.0, 30.0, 32.0],
    })
    out = describe(df, by="analyte", baseline="D0", visits=["D0", "W1"])
    assert list(zip(out["outcome"], out["visit"], strict=True)) == [
        ("albumin", "D0"), ("albumin", "W1"), ("inr", "D0"), ("inr", "W1")]
    assert out.iloc[1]["n"] == 0
    assert out.iloc[3]["mean_change"] == pytest.approx(1.5)


def test_describe_numeric_baseline_zero_and_screening() -> None:
    df = pd.DataFrame({"participant_id": ["a", "a", "a", "b", "b", "b"],
                       "visit": [-1, 0, 4, -1, 0, 4],
                       "value": [1.0, 2.0, 4.0, 2.0, 3.0, 4.0]})
    out = describe(df, baseline=0)
    assert list(out["visit"]) == [-1, 0, 4]
    assert np.isnan(out.iloc[0]["mean_change"])  # screening: no change from baseline
    assert out.iloc[2]["mean_change"] == pytest.approx(1.5)
