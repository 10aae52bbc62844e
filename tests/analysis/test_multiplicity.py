"""Holm (S8), fixed-sequence testing and the exact-test floor (S9 / analysis-notes §2.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hepatrial.analysis import (
    AnalysisInputError,
    exact_test_feasibility,
    fixed_sequence,
    holm,
    min_attainable_p,
)


def test_s8_holm_matches_r_p_adjust_not_holm_sidak() -> None:
    out = holm([0.01, 0.02, 0.03, 0.04, 0.05])
    assert list(out["p_adjusted"]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09], rel=1e-6)
    # statsmodels' default 'hs' would give 0.04901 for the first: make sure we are not it
    assert out["p_adjusted"].iloc[0] != pytest.approx(0.04901, rel=1e-3)
    assert list(out["reject"]) == [True, False, False, False, False]


def test_holm_keeps_labels() -> None:
    out = holm({"W24": 0.001, "W4": 0.04, "W1": 0.3})
    assert list(out.index) == ["W24", "W4", "W1"]
    assert out.loc["W4", "p_adjusted"] == pytest.approx(0.08)
    assert out.loc["W1", "p_adjusted"] == pytest.approx(0.3)


def test_fixed_sequence_stops_at_first_non_rejection() -> None:
    out = fixed_sequence([("MELD W24", 0.01), ("INR W24", 0.049), ("ALB W24", 0.2),
                          ("BILI W24", 0.001)], alpha=0.05)
    assert list(out["status"]) == ["rejected", "rejected", "not rejected", "not tested"]
    assert list(out["reject"]) == [True, True, False, False]
    assert list(out["order"]) == [1, 2, 3, 4]


def test_fixed_sequence_rejects_bad_p() -> None:
    with pytest.raises(AnalysisInputError, match="not in"):
        fixed_sequence({"a": 1.5})


def test_min_attainable_p() -> None:
    assert min_attainable_p(8) == pytest.approx(0.0078125, rel=1e-12)
    assert min_attainable_p(8, two_sided=False) == pytest.approx(0.00390625, rel=1e-12)
    assert min_attainable_p(0) == 1.0


def test_holm_over_25_exact_tests_with_8_pairs_can_never_reject() -> None:
    res = exact_test_feasibility(8, 25, alpha=0.05)
    assert res["min_p"] == pytest.approx(0.0078125)
    assert res["holm_threshold"] == pytest.approx(0.002)
    assert res["can_reject"] is False
    assert res["max_tests"] == 6
    assert "can never reject" in res["message"]
    ok = exact_test_feasibility([8] * 6, alpha=0.05)
    assert ok["m_tests"] == 6 and ok["can_reject"] is True


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=12))
def test_holm_equals_r_p_adjust_formula(ps: list[float]) -> None:
    # R p.adjust("holm"): sort p ascending, q_(i) = min(1, max_{j<=i} (m - j + 1) p_(j))
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    expected = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        expected[i] = running
    got = holm(ps)["p_adjusted"].tolist()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
