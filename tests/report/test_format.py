"""Number formats of the report: the journal p-value rule and its α boundary, true minus
signs, confidence limits near 0, gtsummary percentages, units and visit labels."""

from __future__ import annotations

import pytest

from hepatrial.report.format import (
    MINUS,
    fmt_bound,
    fmt_ci,
    fmt_mean_sd,
    fmt_n_pct,
    fmt_num,
    fmt_p,
    fmt_pct,
    outcome_label,
    p_text,
    unit_label,
    visit_label,
    visit_word,
)


@pytest.mark.parametrize(("p", "text"), [
    # journal rule: <0.001, >0.99, two significant digits otherwise (decimal half up)
    (0.0004, "<0.001"), (0.000999, "<0.001"), (0.001, "0.0010"), (0.00123, "0.0012"),
    (0.0123, "0.012"), (0.0125, "0.013"), (0.045, "0.045"), (0.0996, "0.10"), (0.1, "0.10"),
    (0.256, "0.26"), (0.5, "0.50"), (0.99, "0.99"), (0.9949, ">0.99"), (0.995, ">0.99"),
    (1.0, ">0.99"),
    # the α boundary: the printed value is on the same side of 0.05 as the exact value
    (0.0499, "0.0499"), (0.04951, "0.0495"), (0.04999, "0.04999"), (0.05, "0.050"),
    (0.05004, "0.05004"), (0.0504, "0.0504"), (0.0505, "0.051"), (0.0500001, "0.0500001"),
    (0.0494, "0.049"),
    (None, "—"), (float("nan"), "—")])
def test_fmt_p_journal_rule_and_alpha_boundary(p: float | None, text: str) -> None:
    assert fmt_p(p) == text


def test_fmt_p_boundary_follows_alpha() -> None:
    assert fmt_p(0.0099, alpha=0.01) == "0.0099"
    assert fmt_p(0.00996, alpha=0.01) == "0.00996"  # two digits would print 0.010 = α
    assert fmt_p(0.00996) == "0.010"  # but at α = 0.05 0.010 is on the right side
    assert fmt_p(0.0102, alpha=0.01) == "0.0102"


def test_p_text() -> None:
    assert p_text(0.0004) == "P < 0.001"
    assert p_text(0.999) == "P > 0.99"
    assert p_text(0.0499) == "P = 0.0499"
    assert p_text(None) == "P not estimable"


def test_true_minus_sign_and_rounding() -> None:
    assert fmt_num(-7.05, 1) == f"{MINUS}7.1"  # half away from zero
    assert fmt_num(7.05, 1) == "7.1"
    assert fmt_num(-0.04, 1) == "0.0"  # no signed zero
    assert fmt_num(None, 1) == "—"
    assert "-" not in fmt_num(-3.2, 1)
    assert fmt_mean_sd(17.85, 5.65, 1) == "17.9 ± 5.7"
    assert fmt_mean_sd(-1.0, 2.0, 0) == f"{MINUS}1 ± 2"
    assert fmt_mean_sd(22.5, None, 1) == "22.5"


def test_confidence_limit_never_rounds_to_zero() -> None:
    # creatinine W2 of the demo: upper limit -0.0053 must not print as 0.0 (P = 0.0499)
    assert fmt_bound(-0.0053, 1) == f"{MINUS}0.0053"
    assert fmt_bound(0.004, 1) == "0.0040"
    assert fmt_bound(0.0, 1) == "0.0"
    assert fmt_bound(-14.04, 1) == f"{MINUS}14.0"
    assert fmt_ci(-14.04, -0.0053, 1) == f"{MINUS}14.0, {MINUS}0.0053"


@pytest.mark.parametrize(("k", "n", "text"), [
    (1, 8, "13"), (4, 8, "50"), (1, 20, "5.0"), (1, 1000, "0.1"), (1, 2000, "<0.1"),
    (0, 8, "0"), (8, 8, "100"), (1, 0, "—")])
def test_fmt_pct_as_gtsummary_style_percent(k: int, n: int, text: str) -> None:
    assert fmt_pct(k, n) == text


def test_fmt_n_pct() -> None:
    assert fmt_n_pct(1, 8) == "1 (13%)"
    assert fmt_n_pct(0, 8) == "0 (0%)"


def test_units_and_labels() -> None:
    assert unit_label("umol/L") == "µmol/L"
    assert unit_label("10^9/L") == "×10⁹/L"
    assert unit_label("1") == "" and unit_label("points") == ""
    assert outcome_label({"label": "INR", "reported_unit": "1"}) == "INR"
    assert outcome_label({"label": "Creatinine", "reported_unit": "umol/L"}) == \
        "Creatinine, µmol/L"
    labels = {"W24": "Week 24 (end of follow-up)", "D0": "Day 0 (baseline, cell infusion)"}
    assert visit_label("W24", labels) == "Week 24"
    assert visit_label("D0", labels, baseline="D0") == "Baseline"
    assert visit_label("W8") == "Week 8" and visit_label("M6") == "Month 6"
    assert visit_word("W24", labels) == "week 24"
    assert visit_word("D0", labels, baseline="D0") == "baseline"
