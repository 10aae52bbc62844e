"""Interim-safe analysis: the demo cohort walked through time, one visit at a time.

The states are data cuts of the demo's synthetic data frames (``TrialData.as_of`` at every
visit date: 44 states, from one participant at baseline to the complete trial). For CI speed
every third state is analysed and tabulated, always including the first two (no follow-up;
one participant at week 1), the first with a week-24 visit and the last (complete);
``HEPATRIAL_FULL_WALK=1`` walks all 44. The four named states also get the mixed model, the
HTML page and the Word document.
"""

from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest

from hepatrial.analysis.multiplicity import NO_DATA
from hepatrial.report import analyze, build_report
from hepatrial.report.html import results_text
from hepatrial.report.table import to_text
from hepatrial.report.tables import report_tables
from hepatrial.report.write import build_word
from tests.report.conftest import visit_dates


def _check_state(state, res) -> None:  # type: ignore[no-untyped-def]
    json.dumps(res, allow_nan=False)
    conf = res["multiplicity"]["confirmatory"]
    hyps = conf["hypotheses"]
    stopped = False
    for h in hyps:
        if h["n"] == 0:  # no pair at week 24 yet
            assert h["status"] == NO_DATA and h["p"] is None
        if stopped:
            assert h["status"] in ("not tested", NO_DATA)
        if h["status"] in ("not rejected", NO_DATA):
            stopped = True
    ds = state.dataset
    for r in res["describe"]:
        n = ds[(ds["analyte"] == r["outcome"]) & (ds["visit"] == r["visit"])]["value"].notna()
        assert r["n"] == int(n.sum())
    for v in res["flow"]["visits"]:
        assert v["observed"] + v["missing"] == v["expected"]
        assert v["expected"] + v["not_yet_due"] == res["flow"]["enrolled"]
        assert v["missing"] == 0  # nobody in the demo misses a visit: pending is not missing
    assert res["visits"] == ["D0", "W1", "W2", "W4", "W8", "W24"]  # visits not reached stay


def test_walk_through_time(demo_bundle) -> None:  # type: ignore[no-untyped-def]
    dates = visit_dates(demo_bundle)
    # 48 visits on 42 distinct dates (the demo's day 0s are 14+ days apart, SR-SENTINEL:
    # KH03's day 0 is KH02's week 2, 2007-05-21, and KH03's week 2 is KH02's week 4)
    assert len(dates) == 42
    first_w24 = next(i for i, d in enumerate(dates)
                     if (demo_bundle.as_of(d).dataset["visit"] == "W24").any())
    keep = set(range(0, len(dates), 3)) | {0, 1, first_w24, len(dates) - 1}
    if os.environ.get("HEPATRIAL_FULL_WALK"):
        keep = set(range(len(dates)))
    t0 = time.perf_counter()
    seen_no_data = seen_partial = False
    for d in (dates[i] for i in sorted(keep)):
        state = demo_bundle.as_of(d)
        res = analyze(state, meld_variant="kamath2001", mixed_model=False)
        _check_state(state, res)
        tabs = report_tables(state, res)
        text = "".join(to_text(t) for t in tabs)
        w24 = [r for r in res["paired"] if r["visit"] == "W24"]
        if all(r["n_pairs"] == 0 for r in w24):
            seen_no_data = True
            assert "Not tested: no data" in text
            assert "not tested: no data" in results_text(res)
        elif any(r["n_pairs"] < 8 for r in w24):
            seen_partial = True
    assert seen_no_data and seen_partial
    print(f"{len(keep)} of 44 interim states analysed and tabulated in "
          f"{time.perf_counter() - t0:.1f} s")


@pytest.mark.parametrize("which", ["no follow-up", "one participant at week 1",
                                   "partial week 24", "complete"])
def test_named_states_render_html_and_word(demo_bundle, which: str) -> None:  # type: ignore[no-untyped-def]
    dates = visit_dates(demo_bundle)
    ds = demo_bundle.dataset
    first_w24 = min(d for d in dates if len(demo_bundle.as_of(d).dataset.query(
        "visit == 'W24'")) > 0)
    day = {"no follow-up": dates[0], "one participant at week 1": dates[1],
           "partial week 24": first_w24, "complete": dates[-1]}[which]
    state = demo_bundle.as_of(day)
    res = analyze(state, meld_variant="kamath2001")
    _check_state(state, res)
    n_ppl = state.participants["participant_id"].nunique()
    fu = state.dataset[state.dataset["visit"] != "D0"]
    if which == "no follow-up":
        assert n_ppl == 1 and fu.empty
        assert all(m.get("error") == "no follow-up data" for m in res["lmm"])
    elif which == "one participant at week 1":
        assert n_ppl == 1 and set(fu["visit"]) == {"W1"}
        assert all(m.get("error") == "fewer than 2 participants" for m in res["lmm"])
    elif which == "partial week 24":
        k = state.dataset.query("visit == 'W24'")["participant_id"].nunique()
        assert 0 < k < 8
        assert all("error" not in m for m in res["lmm"])
        assert res["multiplicity"]["confirmatory"]["hypotheses"][0]["n"] == k
    else:
        assert len(state.dataset) == len(ds)
        statuses = [h["status"] for h in res["multiplicity"]["confirmatory"]["hypotheses"]]
        assert statuses == ["rejected", "rejected", "rejected", "not rejected", "not tested"]
    html = build_report(state, res, run_time="t")
    assert 'id="multiplicity"' in html and 'id="outcomes"' in html
    if which != "complete":
        assert "Not yet due" in html or which == "no follow-up"
    docx = build_word(state, res, report_tables(state, res), run_time="t")
    assert docx[:2] == b"PK"


def test_as_of_cuts_rows_statuses_and_events() -> None:
    from tests.report.conftest import toy_bundle

    td = toy_bundle()
    cut = td.as_of("2024-02-14")  # day 44: W4 (day 28) done, W12 (day 84) not yet
    assert set(cut.dataset["visit"]) == {"D0", "W4"}
    assert len(cut.dataset) == len(td.dataset[td.dataset["visit"].isin(["D0", "W4"])])
    enrolled = cut.participants[cut.participants["participant_id"] != "P09"]
    assert set(enrolled["status"]) == {"enrolled"}  # completed / withdrawn later
    assert set(enrolled["status_reason"]) == {""}
    assert cut.participants.set_index("participant_id").loc["P09", "status"] == "screen_failed"
    ae = cut.adverse_events.set_index("term")
    assert len(cut.adverse_events) == 5  # all began by day 40
    assert pd.isna(ae.loc["Cholangitis", "resolved_day"])  # resolved on day 50, after the cut
    assert pd.isna(ae.loc["Cholangitis", "outcome"])
    assert ae.loc["Abdominal pain", "resolved_day"] == 5
    assert len(td.as_of("2023-12-31").participants) == 0  # before anyone was enrolled
    res = analyze(td.as_of("2024-02-14"), mixed_model=False)
    w12 = [h for h in res["multiplicity"]["confirmatory"]["hypotheses"]]
    assert [h["status"] for h in w12] == [NO_DATA, NO_DATA]
    due = {v["visit"]: v["not_yet_due"] for v in res["flow"]["visits"]}
    assert due == {"D0": 0, "W4": 0, "W12": 8}
