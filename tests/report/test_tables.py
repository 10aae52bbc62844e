"""Values in the report's tables (demo cohort, toy randomised trial): each cell recomputed
from the data here, not only "it renders"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hepatrial.report import analyze
from hepatrial.report.format import MINUS, fmt_ci, fmt_mean_sd, fmt_num, fmt_p
from hepatrial.report.tables import (
    ae_overview_table,
    ae_table,
    confirmatory_table,
    lmm_table,
    outcomes_table,
    report_tables,
    shift_table,
    table1,
)
from tests.report.conftest import toy_bundle


def _wide(td, analyte: str) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    ds = td.dataset[td.dataset["analyte"] == analyte]
    return ds.pivot(index="participant_id", columns="visit", values="value")


def test_table1_one_row_per_variable_gtsummary(demo_bundle, demo_results) -> None:  # type: ignore[no-untyped-def]
    t = table1(demo_bundle, demo_results)
    assert t.columns == ["Overall, N = 8¹"]
    assert t.notes[0] == "¹ Mean ± SD; n (%)"
    age = demo_bundle.participants["age"]
    assert t.cell("Age, years", "Overall, N = 8¹") == fmt_mean_sd(age.mean(), age.std(), 1)
    assert t.cell("Age, years", "Overall, N = 8¹") == "55.6 ± 10.5"
    labels = [r.label for r in t.rows]
    for bad in ("mean ± SD", "median [IQR]", "range", "n"):
        assert bad not in labels  # one row per continuous variable
    assert t.cell("Female", "Overall, N = 8¹", within="Sex") == "4 (50%)"
    assert t.cell("HCV", "Overall, N = 8¹", within="Aetiology of cirrhosis") == "1 (13%)"
    assert t.cell("Portal vein", "Overall, N = 8¹", within="Route of infusion") == "6 (75%)"
    cells = demo_bundle.participants["cells_total"] / 1e6
    assert t.cell("Cells infused, ×10⁶", "Overall, N = 8¹") == fmt_mean_sd(cells.mean(),
                                                                            cells.std(), 1)
    inr = _wide(demo_bundle, "inr")["D0"]
    assert t.cell("INR", "Overall, N = 8¹") == fmt_mean_sd(inr.mean(), inr.std(), 2)
    assert "Creatinine, µmol/L" in labels and "Bilirubin, total, µmol/L" in labels
    assert "Unknown" not in labels  # gtsummary missing = "ifany": nothing missing here


def test_table1_unknown_rows_and_arms() -> None:
    td = toy_bundle()
    ppl = td.participants.copy()
    ppl.loc[0, "age"] = np.nan
    ppl.loc[1, "sex"] = None
    td.participants = ppl
    res = analyze(td, mixed_model=False)
    t = table1(td, res)
    assert t.columns == ["cells, N = 4¹", "control, N = 4¹", "Overall, N = 8¹"]
    # P01 (cells) has no age, P02 (control) no sex: an Unknown row under each variable
    assert t.cell("Unknown", "cells, N = 4¹", within="Age, years") == "1"
    assert t.cell("Unknown", "Overall, N = 8¹", within="Age, years") == "1"
    assert t.cell("Unknown", "control, N = 4¹", within="Sex") == "1"
    known = ppl[~ppl["status"].isin(["screen_failed"])]
    k = int((known["sex"] == "F").sum())
    assert t.cell("Female", "Overall, N = 8¹", within="Sex") == \
        f"{k} ({fmt_num(100 * k / 7, 0)}%)"  # percent of the 7 with a known sex
    ages = known["age"].dropna()
    assert t.cell("Age, years", "Overall, N = 8¹") == fmt_mean_sd(ages.mean(), ages.std(), 1)


def test_outcomes_table_values_and_the_0_05_boundary(demo_bundle, demo_results) -> None:  # type: ignore[no-untyped-def]
    t = outcomes_table(demo_results)
    assert t.columns[:2] == ["N", "Mean ± SD"]
    change, p, sens = t.columns[2], t.columns[3], t.columns[4]
    assert change.startswith("Change from baseline (95% CI)") and p.startswith("p-value")
    assert sens.startswith("Sensitivity p-value")
    w = _wide(demo_bundle, "creatinine")
    d = w["W2"] - w["D0"]
    tt = stats.ttest_1samp(d, 0.0)
    ci = tt.confidence_interval()
    assert tt.pvalue == pytest.approx(0.0499, abs=5e-5) and tt.pvalue < 0.05
    assert ci.high < 0 and round(ci.high, 1) == 0.0  # rounding would hide the side of 0
    cell = t.cell("Week 2", change, within="Creatinine, µmol/L")
    assert cell == f"{fmt_num(d.mean(), 1)} ({fmt_ci(ci.low, ci.high, 1)})"
    assert cell == f"{MINUS}7.0 ({MINUS}14.0, {MINUS}0.0053)"
    assert t.cell("Week 2", p, within="Creatinine, µmol/L") == "0.0499"
    wil = stats.wilcoxon(d, method=stats.PermutationMethod(n_resamples=np.inf))
    assert t.cell("Week 2", sens, within="Creatinine, µmol/L") == fmt_p(wil.pvalue)
    m = _wide(demo_bundle, "meld_kamath2001")
    assert t.cell("Week 24", "Mean ± SD", within="MELD (Kamath 2001, continuous)") == \
        fmt_mean_sd(m["W24"].mean(), m["W24"].std(), 1) == "10.7 ± 6.3"
    assert t.cell("Baseline", "N", within="INR") == "8"
    assert t.cell("Baseline", change, within="INR") == ""
    labels = [r.label for r in t.rows if r.indent]
    assert labels[:6] == ["Baseline", "Week 1", "Week 2", "Week 4", "Week 8", "Week 24"]
    assert not any("W24" in r.label or "D0" in r.label for r in t.rows)
    assert any(n.startswith("² Paired t test") and "primary" in n for n in t.notes)
    assert any("sensitivity analysis, not part of the confirmatory family" in n
               for n in t.notes)


def test_pairs_shown_when_fewer_than_n() -> None:
    td = toy_bundle()
    ds = td.dataset
    # P01 loses its baseline INR: at W12 N = 3 in arm cells (P07 withdrew) but 2 pairs
    td.dataset = ds[~((ds["participant_id"] == "P01") & (ds["visit"] == "D0")
                      & (ds["analyte"] == "inr"))].reset_index(drop=True)
    res = analyze(td, mixed_model=False)
    t = outcomes_table(res)
    cell = t.cell("Week 12", t.columns[2], within="INR: cells")
    assert cell.endswith(" [2]")
    assert t.cell("Week 12", "N", within="INR: cells") == "3"


def test_confirmatory_table_primary_test_only(demo_bundle, demo_results) -> None:  # type: ignore[no-untyped-def]
    mult = demo_results["multiplicity"]
    assert mult["confirmatory"]["test"] == "t"
    assert [h["status"] for h in mult["confirmatory"]["hypotheses"]] == [
        "rejected", "rejected", "rejected", "not rejected", "not tested"]
    assert [s["test"] for s in mult["sensitivity"]] == ["wilcoxon"]
    assert all("status" not in h for h in mult["sensitivity"][0]["hypotheses"])
    t = confirmatory_table(demo_results)
    assert t is not None and t.title.endswith("paired t test")
    dec = next(c for c in t.columns if c.startswith("Decision"))
    assert t.column(dec) == ["Rejected", "Rejected", "Rejected", "Not rejected", "Not tested"]
    assert t.rows[0].label == "1. MELD (Kamath 2001, continuous), week 24 vs baseline"
    m = _wide(demo_bundle, "meld_kamath2001")
    d = m["W24"] - m["D0"]
    tt = stats.ttest_1samp(d, 0.0)
    est = next(c for c in t.columns if c.startswith("Estimate"))
    assert t.rows[0].cells[t.columns.index(est)] == \
        f"{fmt_num(d.mean(), 1)} ({fmt_ci(*tt.confidence_interval(), 1)})"
    assert t.rows[0].cells[t.columns.index("p-value")] == fmt_p(tt.pvalue) == "0.0079"
    sp = next(c for c in t.columns if c.startswith("Sensitivity p-value"))
    wil = stats.wilcoxon(d, method=stats.PermutationMethod(n_resamples=np.inf))
    assert t.rows[0].cells[t.columns.index(sp)] == fmt_p(wil.pvalue)


def test_lmm_table_uses_small_sample_df(demo_results) -> None:  # type: ignore[no-untyped-def]
    t = lmm_table(demo_results)
    assert t is not None
    m = next(x for x in demo_results["lmm"] if x["outcome"] == "meld_kamath2001")
    fe = next(x for x in m["fixed_effects"] if x["term"] == "visit[W24]")
    assert "df" in fe  # the mixed model gives Kenward-Roger df (balanced: 35 = 48 - 8 - 5)
    assert fe["df"] == pytest.approx(35.0, abs=1e-6)
    row = next(r for r in t.rows if r.label == "Week 24 vs baseline")
    assert row.cells == [f"{fmt_num(fe['estimate'], 2)} ({fmt_ci(fe['ci_low'], fe['ci_high'], 2)})",
                         fmt_num(fe.get("se_adj", fe["se"]), 2), "35.0", fmt_p(fe["p"])]
    # t(35) quantile, not 1.96: the CI is wider than the Wald CI
    half = (fe["ci_high"] - fe["ci_low"]) / 2
    assert half == pytest.approx(stats.t.ppf(0.975, 35) * fe["se_adj"], rel=1e-9)
    assert "Intercept" not in [r.label for r in t.rows]
    assert any("Kenward–Roger" in n for n in t.notes)


def test_lmm_table_falls_back_to_wald_without_df(demo_results) -> None:  # type: ignore[no-untyped-def]
    res = {**demo_results, "lmm": [
        {"outcome": "inr", "converged": True, "singular": False,
         "fixed_effects": [{"term": "Intercept", "estimate": 1.9, "se": 0.1, "p": 1e-9,
                            "ci_low": 1.7, "ci_high": 2.1},
                           {"term": "visit[W24]", "estimate": -0.5, "se": 0.1, "p": 4e-7,
                            "ci_low": -0.696, "ci_high": -0.304}]},
        {"outcome": "albumin", "error": "column 'participant_id': need at least 2 subjects"}]}
    t = lmm_table(res)
    assert t is not None
    assert t.cell("Week 24 vs baseline", "df") == "—"
    assert t.cell("Week 24 vs baseline", "Estimate (95% CI)") == \
        f"{MINUS}0.500 ({MINUS}0.696, {MINUS}0.304)"
    assert "Not estimable: the model could not be fitted" in [r.label for r in t.rows]
    assert any(n.startswith("Wald z tests") for n in t.notes)
    assert not any("participant_id" in r.label for r in t.rows)


def test_ae_tables_by_soc_and_term() -> None:
    td = toy_bundle(soc=True)
    res = analyze(td, mixed_model=False)
    t = ae_table(res)
    assert t is not None
    part = "Participants, n (%), N = 8"
    g = "General disorders and administration site conditions"
    assert t.rows[0].label == "Any adverse event"
    assert t.cell("Any adverse event", part) == "3 (38%)"  # P01, P03, P05 of 8 enrolled
    assert t.cell("Any adverse event", "Events") == "5"
    # P01 had Fever grade 1 and grade 2 (counted once at 2); P05 Fever 1; P05's Fever has no
    # SOC and is "Not coded"
    assert t.cell("Fever", part, within=g) == "1 (13%)"
    assert t.cell("Fever", "Events", within=g) == "2"
    assert t.cell("Fever", "Grade 2", within=g) == "1"
    assert t.cell("Fever", "Grade 1", within=g) == "0"
    assert t.cell("Fever", part, within="Not coded") == "1 (13%)"
    assert t.cell("Cholangitis", "Grade 3", within="Hepatobiliary disorders") == "1"
    assert t.cell("Cholangitis", "Serious, n (%)", within="Hepatobiliary disorders") == \
        "1 (13%)"
    rel = next(c for c in t.columns if c.startswith("Related"))
    on = next(c for c in t.columns if c.startswith("Onset"))
    assert t.cell("Any adverse event", rel) == "2 (25%)"  # P01 (possible, probable), P05
    assert t.cell("Fever", on, within=g) == "3 (1, 5)"
    assert t.cell("Any adverse event", on) == "2 (1, 40)"
    assert t.spanners[0][0].startswith("Participants by maximum grade")
    assert t.rows[-2].label == "Not coded"  # Not coded last
    ov = ae_overview_table(res)
    assert ov.cell("Serious adverse event", "Participants, n (%), N = 8") == "1 (13%)"
    assert ov.cell("Grade 3 or higher", "Events") == "1"


def test_ae_table_without_soc_column_is_not_coded() -> None:
    res = analyze(toy_bundle(), mixed_model=False)
    t = ae_table(res)
    assert t is not None
    assert [r.label for r in t.rows if r.indent == 0] == ["Any adverse event", "Not coded"]
    assert any("not coded to MedDRA" in n for n in t.notes)
    assert "n_events" not in " ".join(t.columns)


def test_shift_table_condensed_with_baseline_rule(demo_bundle, demo_results) -> None:  # type: ignore[no-untyped-def]
    t = shift_table(demo_results)
    assert t is not None
    sh = pd.DataFrame(demo_results["safety"]["shifts"])
    seen = sh[sh["n"] > 0]
    assert t.columns == [f"Grade {g}" for g in sorted(seen["worst_grade"].unique())] + ["Total"]
    assert "Grade 4" not in t.columns and "Grade 3" not in t.columns
    bili = [r for r in t.rows if r.indent == 1][:1]
    assert bili[0].label == "Baseline grade 0"
    b = [r.label for r in t.rows]
    i = b.index("Blood bilirubin increased")
    assert b[i + 2] == "Creatinine increased"  # one baseline row: every participant grade 0
    base = _wide(demo_bundle, "bilirubin")["D0"]
    note = next(n for n in t.notes if n.startswith("Blood bilirubin increased"))
    assert f"{int((base > 21).sum())} of 8 participants had a baseline above the ULN" in note
    assert f"mean {fmt_num(base.mean(), 0)} µmol/L" in note
    total = t.cell("Baseline grade 0", "Total", within="Blood bilirubin increased")
    assert total == "8"


def test_report_tables_numbered_and_complete(demo_bundle, demo_results) -> None:  # type: ignore[no-untyped-def]
    tabs = report_tables(demo_bundle, demo_results)
    assert [t.id for t in tabs] == ["table1", "outcomes", "multiplicity", "lmm", "ae_overview",
                                    "lab_shifts", "reconstruction", "meld_variants",
                                    "meld_supportive"]
    assert [t.number for t in tabs] == ["1", "2", "3", "4", "5", "6", "S1", "S2", "S3"]
    assert tabs[0].caption == "Table 1. Baseline characteristics"
