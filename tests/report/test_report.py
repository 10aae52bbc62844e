"""The HTML report from a small DataFrame bundle (no database)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from hepatrial.analysis import TrialData
from hepatrial.report import analyze, build_report, fmt_mean_sd, fmt_p

VISITS = [("D0", 0), ("W4", 28), ("W12", 84)]
COLS = ["participant_id", "site", "arm", "visit", "nominal_day", "actual_day", "analyte",
        "value", "unit", "source"]


def _bundle(with_ae: bool = True) -> TrialData:
    rng = np.random.default_rng(3)
    ppl = []
    rows = []
    for i in range(1, 9):
        pid = f"P{i:02d}"
        arm = "cells" if i % 2 else "control"
        status = "completed"
        reason = ""
        if i == 7:
            status, reason = "withdrawn", "moved away"
        ppl.append({"participant_id": pid, "site": "S01", "arm": arm, "sex": "MF"[i % 2],
                    "age": 40.0 + 3 * i, "etiology": ["HBV", "alcohol", "HCV"][i % 3],
                    "status": status, "status_date": pd.Timestamp("2024-06-01"),
                    "status_reason": reason, "enrolment_date": pd.Timestamp("2024-01-01"),
                    "route": "peripheral_vein", "cells_total": 4e7, "cells_per_kg": np.nan,
                    "volume_ml": 10.0})
        for v, day in VISITS:
            if i == 7 and v == "W12":
                continue
            drop = {"W4": 2.0, "W12": 4.0}.get(v, 0.0) if arm == "cells" else 0.0
            meld = 18 + rng.normal(0, 2) - drop
            vals = {"meld_optn2002": round(meld), "inr": round(1.8 + rng.normal(0, .2), 2),
                    "albumin": round(30 + rng.normal(0, 3)),
                    "bilirubin": round(40 + rng.normal(0, 10)),
                    "creatinine": round(100 + rng.normal(0, 20))}
            units = {"meld_optn2002": "points", "inr": "1", "albumin": "g/L",
                     "bilirubin": "umol/L", "creatinine": "umol/L"}
            for a, x in vals.items():
                rows.append([pid, "S01", arm, v, day, day, a, float(x), units[a],
                             "derived" if a.startswith("meld") else "measured"])
    ppl.append({"participant_id": "P09", "site": "S01", "arm": "", "sex": "F", "age": 70.0,
                "etiology": "HBV", "status": "screen_failed",
                "status_date": pd.Timestamp("2024-01-01"), "status_reason": "ineligible: INC-AGE",
                "enrolment_date": pd.NaT, "route": "NA", "cells_total": np.nan,
                "cells_per_kg": np.nan, "volume_ml": np.nan})
    ds = pd.DataFrame(rows, columns=COLS)
    ae_cols = ["participant_id", "term", "grade", "serious", "related", "onset_day",
               "resolved_day", "outcome"]
    ae = pd.DataFrame([["P01", "Fever", 1, False, "possible", 1, 3, "recovered"],
                       ["P03", "Abdominal pain", 2, False, "unlikely", 2, 5, "recovered"],
                       ["P03", "Cholangitis", 3, True, "not_related", 40, 50, "recovered"]],
                      columns=ae_cols) if with_ae else pd.DataFrame(columns=ae_cols)
    ps = {"name": "toy", "title": "Toy randomised trial", "version": "0.1", "registration": "NA",
          "reference": "none", "content_hash": "abc123", "design": "randomised",
          "baseline_visit": "D0",
          "visits": [{"code": v, "nominal_day": d} for v, d in VISITS],
          "outcomes": [{"analyte": "meld_optn2002", "label": "MELD", "unit": "points",
                        "reported_unit": "points"},
                       {"analyte": "inr", "label": "INR", "unit": "1", "reported_unit": "1"},
                       {"analyte": "albumin", "label": "Albumin", "unit": "g/L",
                        "reported_unit": "g/L"}],
          "analysis": {"meld_variant": "optn2002", "tests": ["t", "wilcoxon"],
                       "wilcoxon_method": "exact", "multiplicity": "fixed_sequence",
                       "sequence": [{"analyte": "meld_optn2002", "visit": "W12"},
                                    {"analyte": "inr", "visit": "W12"}], "alpha": 0.05,
                       "mixed_model": {"time": "visit"}}}
    return TrialData(ds, pd.DataFrame(ppl), ae, ps)


@pytest.fixture(scope="module")
def report() -> tuple[TrialData, dict, str]:
    td = _bundle()
    res = analyze(td)
    return td, res, build_report(td, res, run_time="2026-01-01T00:00:00Z")


def test_report_contains_tables_figures_and_text(report: tuple) -> None:
    _, res, html = report
    for tid in ("table1", "outcomes", "ancova", "multiplicity", "lmm", "ae_overview",
                "ae_summary", "lab_shifts"):
        assert f'id="{tid}"' in html, tid
    assert html.count("<svg") >= 3  # flow, trajectories, waterfall
    assert "Table 1. Baseline characteristics" in html
    assert "cells (n=4)" in html and "control (n=4)" in html and "Overall (n=8)" in html
    assert "Assessed for eligibility n = 9" in html
    assert "Excluded (screen failure) n = 1" in html
    assert "ineligible: INC-AGE: 1" in html
    assert "withdrawn" in html and "moved away" in html
    assert "Cholangitis" in html
    assert "No adverse events were recorded" not in html
    assert "fixed-sequence testing at α = 0.05" in html
    # per arm: 3 outcomes x 2 visits x 2 arms = 12 comparisons, 3 or 4 pairs each
    assert "A Holm correction over all m = 12 comparisons could never reject" in html
    assert "the baseline-adjusted difference in MELD (control − cells)" in html
    assert "hepatrial " in html and "abc123" in html and res["dataset_sha256"] in html


def test_results_sentence_uses_computed_numbers(report: tuple) -> None:
    td, res, html = report
    ds = td.dataset
    b = ds[(ds.analyte == "meld_optn2002") & (ds.visit == "D0")]["value"]
    f = ds[(ds.analyte == "meld_optn2002") & (ds.visit == "W12")]["value"]
    arm = td.participants.set_index("participant_id")["arm"]
    ds = ds.assign(arm=ds["participant_id"].map(arm))
    b = b[ds.loc[b.index, "arm"] == "cells"]
    f = f[ds.loc[f.index, "arm"] == "cells"]
    verb = "decreased" if f.mean() < b.mean() else "increased"
    expected = f"In arm cells, MELD {verb} from {fmt_mean_sd(b.mean(), b.std(), 1)} to " \
               f"{fmt_mean_sd(f.mean(), f.std(), 1)} at W12"
    assert expected in html
    pr = next(r for r in res["paired"] if r["outcome"] == "meld_optn2002" and r["visit"] == "W12"
              and r["arm"] == "cells")
    assert pr["n_pairs"] == 3  # P07 (arm cells) withdrew before W12
    assert "n = 3 pairs" in html
    an = next(r for r in res["ancova"] if r["outcome"] == "meld_optn2002" and r["visit"] == "W12")
    assert an["n_used"] == 7
    assert "the baseline-adjusted difference in MELD" in html


def test_outcome_table_counts_pairs(report: tuple) -> None:
    _, res, _ = report
    w12 = [r for r in res["paired"] if r["visit"] == "W12" and r["arm"] == "cells"]
    assert all(r["n_pairs"] == 3 and r["excluded_missing_visit"] == 1 for r in w12)
    w12c = [r for r in res["paired"] if r["visit"] == "W12" and r["arm"] == "control"]
    assert all(r["n_pairs"] == 4 and r["n_excluded"] == 0 for r in w12c)
    assert res["flow"]["screened"] == 9 and res["flow"]["enrolled"] == 8


def test_byte_identical_apart_from_run_time() -> None:
    td = _bundle()
    a = build_report(td, analyze(td))
    td2 = _bundle()
    b = build_report(td2, analyze(td2), run_time="another time")
    la = [x for x in a.splitlines() if 'class="runtime"' not in x]
    lb = [x for x in b.splitlines() if 'class="runtime"' not in x]
    assert la == lb
    assert a != b
    assert sum('class="runtime"' in x for x in a.splitlines()) == 1


def test_self_contained() -> None:
    td = _bundle(with_ae=False)
    html = build_report(td, analyze(td), run_time="t")
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "@import" not in html and "url(http" not in html
    assert "No adverse events were recorded." in html


def test_analyze_json_serialisable() -> None:
    td = _bundle()
    text = json.dumps(analyze(td), allow_nan=False, sort_keys=True)
    assert json.loads(text)["plan"]["meld_variant"] == "optn2002"


@pytest.mark.parametrize(("p", "text"), [
    (0.0004, "<0.001"), (0.001, "0.001"), (0.0123, "0.012"), (0.04999, "0.050"),
    (0.1, "0.10"), (0.256, "0.26"), (0.995, ">0.99"), (None, "—"), (float("nan"), "—")])
def test_fmt_p_gtsummary_style(p: float | None, text: str) -> None:
    assert fmt_p(p) == text


def test_fmt_mean_sd_rounds_half_away_from_zero() -> None:
    assert fmt_mean_sd(17.85, 5.65, 1) == "17.9 ± 5.7"
    assert fmt_mean_sd(114.0, 35.0, 0) == "114 ± 35"
