"""Safety tables, missing-data table and ANCOVA by visit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from hepatrial.analysis import (
    AnalysisInputError,
    ae_overview,
    ae_summary,
    ancova_by_visit,
    lab_shift_table,
    visit_completeness,
)


def _participants() -> pd.DataFrame:
    return pd.DataFrame({
        "participant_id": ["P1", "P2", "P3", "P4", "P5", "P6"],
        "arm": ["msc", "msc", "msc", "ctl", "ctl", "ctl"],
        "status": ["completed", "died", "transplanted", "withdrawn", "completed",
                   "screen_failed"],
    })


def _aes() -> pd.DataFrame:
    return pd.DataFrame({
        "participant_id": ["P1", "P1", "P2", "P3", "P4"],
        "term": ["Fever", "Fever", "Fever", "Ascites", "Fever"],
        "grade": [1, 1, 1, 3, 2],
        "serious": [False, False, False, True, False],
        "related": ["possible", "possible", "possible", "not_related", "unlikely"],
    })


def test_ae_summary_counts_events_and_participants() -> None:
    out = ae_summary(_aes(), participants=_participants())
    fever1 = out[(out["term"] == "Fever") & (out["grade"] == 1)].iloc[0]
    assert fever1["n_events"] == 3
    assert fever1["n_participants"] == 2
    assert fever1["n_total"] == 5  # screen failure excluded
    assert fever1["pct"] == pytest.approx(40.0)
    assert list(out["term"]) == ["Ascites", "Fever", "Fever"]


def test_ae_summary_by_arm_and_term_only() -> None:
    out = ae_summary(_aes(), participants=_participants(), by=["term"], arm="arm")
    rows = {(r.arm, r.term): r for r in out.itertuples()}
    assert rows[("msc", "Fever")].n_participants == 2
    assert rows[("msc", "Fever")].n_total == 3
    assert rows[("ctl", "Fever")].n_total == 2
    assert rows[("ctl", "Fever")].pct == pytest.approx(50.0)


def test_ae_overview() -> None:
    out = ae_overview(_aes(), n_total=5).set_index("category")
    assert out.loc["any adverse event", "n_participants"] == 4
    assert out.loc["serious adverse event", "n_participants"] == 1
    assert out.loc["related adverse event", "n_events"] == 3
    assert out.loc["grade >= 3", "pct"] == pytest.approx(20.0)
    assert out.loc["grade 5 (fatal)", "n_events"] == 0


def test_ae_bad_grade_names_row() -> None:
    ae = _aes()
    ae.loc[2, "grade"] = 7
    with pytest.raises(AnalysisInputError, match="column 'grade', row 2"):
        ae_summary(ae, n_total=5)
    ae = _aes()
    ae.loc[4, "related"] = "maybe"
    with pytest.raises(AnalysisInputError, match="column 'related', row 4"):
        ae_summary(ae, n_total=5)


def test_lab_shift_table() -> None:
    labs = pd.DataFrame({
        "participant_id": ["A", "A", "A", "B", "B", "C", "C"],
        "visit": ["D0", "W1", "W4", "D0", "W4", "W1", "SCR"],
        "nominal_day": [0, 7, 28, 0, 28, 7, -14],
        "term": ["Blood bilirubin increased"] * 7,
        "grade": [1, 3, 2, 0, 0, 1, 4],
    })
    out = lab_shift_table(labs, baseline="D0")
    cell = out.set_index(["baseline_grade", "worst_grade"])["n"]
    assert cell[("1", "3")] == 1  # A: worst post-baseline 3
    assert cell[("0", "0")] == 1  # B
    assert cell[("missing", "1")] == 1  # C: no baseline; SCR is not post-baseline
    assert out["n"].sum() == 3
    assert len(out) == 36  # 6 x 6 categories (0-4, missing)


def test_visit_completeness_reasons() -> None:
    rows = []
    for s in ["P1", "P2", "P3", "P4", "P5"]:
        for v, day in [("D0", 0), ("W1", 7), ("W24", 168)]:
            if v == "W24" and s in ("P2", "P3", "P4"):
                continue
            if v == "W1" and s == "P5":
                continue
            rows.append({"participant_id": s, "visit": v, "nominal_day": day,
                         "analyte": "inr", "value": 1.1})
    ds = pd.DataFrame(rows)
    out = visit_completeness(ds, _participants()).set_index("visit")
    assert list(out.index) == ["D0", "W1", "W24"]
    assert out.loc["D0", "expected"] == 5 and out.loc["D0", "missing"] == 0
    assert out.loc["W1", "missing_missed"] == 1  # P5 completed but missed W1
    w24 = out.loc["W24"]
    assert (w24["observed"], w24["missing_died"], w24["missing_transplanted"],
            w24["missing_withdrawn"], w24["missing_missed"]) == (2, 1, 1, 1, 0)
    assert w24["pct_observed"] == pytest.approx(40.0)
    detail = visit_completeness(ds, _participants(), detail=True)
    assert len(detail) == 15
    unknown = pd.concat([ds, ds.head(1).assign(participant_id="P9")], ignore_index=True)
    with pytest.raises(AnalysisInputError, match="row 11: participant 'P9'"):
        visit_completeness(unknown, _participants())


def test_ancova_matches_statsmodels_formula() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(20):
        arm = "msc" if i % 2 else "ctl"
        b = rng.normal(15, 3)
        rows.append({"participant_id": f"S{i}", "arm": arm, "visit": "D0", "value": b})
        if i != 3:
            rows.append({"participant_id": f"S{i}", "arm": arm, "visit": "W24",
                         "value": b * 0.6 + (-2 if arm == "msc" else 0) + rng.normal(6, 2)})
    df = pd.DataFrame(rows)
    out = ancova_by_visit(df, baseline="D0")
    r = out.iloc[0]
    assert (r["arm"], r["reference_arm"], r["n_used"], r["n_excluded"]) == ("msc", "ctl", 19, 1)
    wide = df.pivot(index="participant_id", columns="visit", values="value").dropna()
    wide["chg"] = wide["W24"] - wide["D0"]
    wide["arm"] = df.groupby("participant_id")["arm"].first()
    fit = smf.ols("chg ~ C(arm) + D0", data=wide).fit()
    assert r["estimate"] == pytest.approx(fit.params["C(arm)[T.msc]"], rel=1e-10)
    assert r["se"] == pytest.approx(fit.bse["C(arm)[T.msc]"], rel=1e-10)
    assert r["p"] == pytest.approx(fit.pvalues["C(arm)[T.msc]"], rel=1e-8)
    assert r["df"] == 16
    # same arm effect with the value itself as response
    v = ancova_by_visit(df, baseline="D0", response="value").iloc[0]
    assert v["estimate"] == pytest.approx(r["estimate"], rel=1e-10)


def test_ae_related_in_ordinal_order() -> None:
    ae = pd.DataFrame({"participant_id": ["P1", "P2", "P3"], "term": ["Fever"] * 3,
                       "grade": [1, 1, 1], "serious": [False] * 3,
                       "related": ["probable", "not_related", "possible"]})
    out = ae_summary(ae, n_total=3, by=["term", "related"])
    assert list(out["related"]) == ["not_related", "possible", "probable"]
