"""The DSMB's open and closed reports (hepatrial.report.dsmb) on the demo cohort and on the
synthetic safety scenarios (hepatrial.demo.safety_scenario): every interim state, a triggered
stopping rule, a death, a randomised trial, reproducibility and the inputs' consistency."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from hepatrial.analysis import TrialData
from hepatrial.demo.safety_scenario import STATES, demo_safety_data, scenario
from hepatrial.protocol import load_protocol
from hepatrial.protocol import safety as s
from hepatrial.report import write_dsmb_report
from hepatrial.report.dsmb import (
    DsmbInputError,
    build_dsmb,
    clinical_text,
    dsmb_tables,
    km_sentence,
    summary_text,
)
from hepatrial.report.format import fmt_num
from hepatrial.report.table import Table, to_text

PROTOCOL = load_protocol("kharaziha2009")
DEMO_CUT = dt.date(2008, 6, 4)  # the last demo participant's week-24 visit
#: text that must never reach a table, a paragraph or a page: codes and ASCII operators
INTERNAL = re.compile(r"meld_|_vein\b|not_related|_injection|\b(?:W\d+|D0|SCR)\b|>=|<=|->|"
                      r"\bnan\b|\bNaT\b|<NA>|\bNone\b|\| (?:True|False) \|")


def _tables(ds, session: str) -> dict[str, Table]:  # type: ignore[no-untyped-def]
    return {t.id: t for t in dsmb_tables(ds, session)}


def _text(tabs: dict[str, Table]) -> str:
    return "".join(to_text(t) for t in tabs.values())


@pytest.fixture(scope="module")
def demo(demo_bundle):  # type: ignore[no-untyped-def]
    safety = demo_safety_data(demo_bundle, PROTOCOL)
    return demo_bundle, safety, build_dsmb(demo_bundle, safety, PROTOCOL, as_of=DEMO_CUT)


# ------------------------------------------------------------------------------ the demo
def test_demo_no_adverse_events_no_rule_triggered(demo) -> None:  # type: ignore[no-untyped-def]
    _, safety, ds = demo
    assert len(safety.administrations) == 8 and not safety.adverse_events
    assert ds.status is not None and not any(r.triggered for r in ds.status.rules)
    text = summary_text(ds)
    assert "No stopping rule triggered." in text
    assert "No adverse events were recorded." in text
    assert km_sentence(ds) == ("No related adverse event: all 8 participants who received the "
                               "product censored, at day 168 after infusion (completed).")
    tabs = _tables(ds, "open")
    assert "ae_by_soc" not in tabs and "sae_listing" not in tabs and "ttfe_km" not in tabs
    rules = tabs["stopping_rules"]
    assert rules.column("Status") == ["Not triggered"] * 6
    ev = dict(zip([r.label for r in rules.rows], rules.column("Evaluation"), strict=True))
    meld = next(v for k, v in ev.items() if "(SR-MELD)" in k)
    assert meld == "0 of the first 4 treated with a rise ≥ 5 by week 4, 2 needed"
    sentinel = next(v for k, v in ev.items() if "(SR-SENTINEL)" in k)
    # the synthetic cohort's day 0s are at least 14 days apart (SR-SENTINEL): no interval
    # shorter than the minimum (a shorter one is reported, not hidden: the next test)
    assert sentinel == "All 8 staggered participants are dosed"
    bayes = next(v for k, v in ev.items() if "(SR-BAYES)" in k)
    assert bayes == "0 of 8 treated with a counted event: P(rate > 0.2) = 0.0114 ≤ 0.8"
    ex = tabs["exposure"]
    assert ex.cell("Received the cell product, n (%)", "Overall, N = 8") == "8 (100%)"
    assert ex.cell("Portal vein", "Overall, N = 8") == "6 (75%)"
    assert ex.cell("Peripheral vein", "Overall, N = 8") == "2 (25%)"
    assert ex.cell("Mean ± SD", "Overall, N = 8", within="Cells per participant, ×10⁶") \
        == "38.3 ± 5.9"
    assert ex.cell("Median (min, max)", "Overall, N = 8",
                   within="Cells per participant, ×10⁶") == "38.0 (31.0, 47.0)"
    vc = tabs["visit_completeness"]
    assert vc.column("Due") == ["8"] * 6 and vc.column("Not yet due") == ["0"] * 6
    assert [r.label for r in vc.rows] == ["Baseline", "Week 1", "Week 2", "Week 4", "Week 8",
                                          "Week 24"]
    km = tabs["ttfe_summary"]
    assert km.cell("With a related adverse event", "Overall, n = 8") == "0 (0%)"
    assert km.cell("Completed follow-up", "Overall, n = 8") == "8"
    assert km.cell("Median time to event, days (95% CI)", "Overall, n = 8") == "Not reached"
    assert km.cell("Free of a related adverse event at day 168, % (95% CI)",
                   "Overall, n = 8") == "100"
    ov = tabs["ae_overview"]
    assert ov.column("Events")[:8] == ["0"] * 8
    assert not INTERNAL.search(_text(tabs)), INTERNAL.search(_text(tabs))


def test_a_short_dosing_interval_is_reported(demo) -> None:  # type: ignore[no-untyped-def]
    """KH03 dosed 12 days after KH02 (its day 0 two days earlier than the demo's): the
    sentinel row of the open report names the short interval."""
    bundle, safety, _ = demo
    admins = tuple(dataclasses.replace(a, date=a.date - dt.timedelta(days=2))
                   if a.participant_id == "KH03" else a for a in safety.administrations)
    ds = build_dsmb(bundle, dataclasses.replace(safety, administrations=admins), PROTOCOL,
                    as_of=DEMO_CUT)
    rules = _tables(ds, "open")["stopping_rules"]
    ev = dict(zip([r.label for r in rules.rows], rules.column("Evaluation"), strict=True))
    assert next(v for k, v in ev.items() if "(SR-SENTINEL)" in k) == (
        "All 8 staggered participants are dosed; intervals shorter than the minimum: KH03: "
        "dosed 12 day(s) after the previous participant")


def test_demo_closed_report_single_arm(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, safety, ds = demo
    assert [g for g, _ in ds.groups("closed")] == ["Overall"]
    assert [to_text(t) for t in dsmb_tables(ds, "closed")] == \
        [to_text(t) for t in dsmb_tables(ds, "open")]
    paths = write_dsmb_report(data, safety, PROTOCOL, tmp_path, as_of=DEMO_CUT, run_time="T")
    closed = paths["closed_html"].read_text(encoding="utf-8")
    assert "CONFIDENTIAL: for the members of the DSMB in closed session only (single-arm " \
           "trial: no allocation is unmasked)." in closed
    assert "there is no allocation to mask, so the closed report gives the open report" in closed
    opened = paths["open_html"].read_text(encoding="utf-8")
    assert "Open session: pooled data" in opened and "No stopping rule triggered." in opened
    for page in (opened, closed):
        assert "<svg" in page  # the enrolment and Kaplan–Meier figures
        assert "Figure 2. Time to the first related adverse event" in page
        body = re.sub(r"<svg.*?</svg>", "", page, flags=re.S)
        body = re.sub(r"<style>.*?</style>", "", body, flags=re.S)
        assert not INTERNAL.search(body), INTERNAL.search(body)
    import json

    res = json.loads(paths["results"].read_text(encoding="utf-8"))
    assert (res["enrolled"], res["treated"], res["adverse_events"]) == (8, 8, 0)
    assert res["stopping_rules"]["pausing_rules"] == [] and not res["stopping_rules"]["paused"]
    km = res["time_to_first_related_ae"]["kaplan_meier"]
    assert (km["n"], km["events"], km["censored"], km["table"]) == (8, 0, 8, [])
    assert [p["time"] for p in res["time_to_first_related_ae"]["participants"]] == [168] * 8
    assert res["input_sha256"]["dataset"] == ds.hashes["dataset"]
    # the Word document carries every table of the report
    from docx import Document

    doc = Document(io.BytesIO(paths["open_docx"].read_bytes()))
    assert len(doc.tables) == len(dsmb_tables(ds, "open"))
    assert any("No stopping rule triggered." in p.text for p in doc.paragraphs)


def test_demo_through_time(demo_bundle) -> None:  # type: ignore[no-untyped-def]
    """Cuts of the demo: before anyone is enrolled, at the first enrolment (dosed that day),
    between two dosings (the sentinel gate closed pending review), and at the end."""
    safety = demo_safety_data(demo_bundle, PROTOCOL)
    for cut, dosed, gate in ((dt.date(2007, 4, 1), 0, False), (dt.date(2007, 4, 9), 1, True),
                             (dt.date(2007, 8, 20), 4, True), (DEMO_CUT, 8, False)):
        ds = build_dsmb(demo_bundle, safety, PROTOCOL, as_of=cut)
        assert ds.administrations["participant_id"].nunique() == dosed
        sent = next(r for r in ds.status.rules if r.rule_id == "SR-SENTINEL")
        assert sent.paused is gate
        tabs = _tables(ds, "open")
        assert not INTERNAL.search(_text(tabs))
        vc = tabs.get("visit_completeness")
        if dosed:
            assert vc is not None and vc.column("Missing") == ["0"] * 6  # pending is not missing
        else:
            assert vc is None and km_sentence(ds) == ("No participant has received the cell "
                                                      "product yet.")
        assert "Triggered" not in " ".join(tabs["stopping_rules"].column("Status"))


# ------------------------------------------------------------------------------ interim states
@pytest.mark.parametrize("randomised", [False, True])
@pytest.mark.parametrize("state", STATES)
def test_every_state_renders(state: str, randomised: bool, tmp_path: Path) -> None:
    sc = scenario(state, randomised=randomised)
    paths = write_dsmb_report(sc.data, sc.safety, sc.protocol, tmp_path, as_of=sc.as_of,
                              run_time="T", synthetic_label=sc.label, ae_details=sc.ae_details)
    for session in ("open", "closed"):
        assert paths[f"{session}_html"].stat().st_size > 0
        assert zipfile.ZipFile(paths[f"{session}_docx"]).testzip() is None
        index = pd.read_csv(paths[f"{session}_tables"], encoding="utf-8-sig")
        for f in index["file"]:
            assert (tmp_path / f).read_bytes().startswith("\ufeff".encode())
    ds = build_dsmb(sc.data, sc.safety, sc.protocol, as_of=sc.as_of)
    tabs = _tables(ds, "open")
    assert not INTERNAL.search(_text(tabs)), INTERNAL.search(_text(tabs))
    text = summary_text(ds)
    triggered = sorted(r.rule_id for r in ds.status.rules if r.triggered and r.kind != "sentinel")
    if state == "empty":
        assert text.startswith("Data cut 2024-02-07: 0 participants enrolled, 0 received")
        assert "visit_completeness" not in tabs and "ttfe_summary" not in tabs
    if state == "enrolled_not_dosed":
        assert "8 participants enrolled, 0 received the cell product" in text
        assert tabs["exposure"].column("Overall, N = 8")[0] == "0 (0%)"
        assert km_sentence(ds) == "No participant has received the cell product yet."
    if state in ("empty", "enrolled_not_dosed", "no_aes"):
        assert "No adverse events were recorded." in text and "ae_by_soc" not in tabs
    if state == "aes_no_sae":
        assert "no serious adverse event" in text and "sae_listing" not in tabs
        assert "ae_by_soc" in tabs and "ttfe_km" in tabs
    if state in ("empty", "enrolled_not_dosed", "no_aes", "aes_no_sae"):
        assert triggered == [] and "No stopping rule triggered." in text
    if state == "triggered":
        assert triggered == ["SR-DEATH-SAE", "SR-PORTAL"]
        sae = tabs["sae_listing"]
        assert [r.label for r in sae.rows] == ["P03" if not randomised else "P01"]
        assert sae.column("Term") == ["Portal vein thrombosis"]
        assert sae.column("Related to a procedure") == ["Probable (portal-vein injection)"]
        assert sae.column("Expectedness") == ["Unexpected (procedure)"]
        assert sae.column("SUSAR") == ["No"]
        assert "2 stopping rules triggered: SR-DEATH-SAE" in text
    if state == "death":
        assert triggered == ["SR-DEATH-SAE"]
        assert tabs["deaths"].column("Fatal adverse event") == ["Hepatic failure"]
        km = tabs["ttfe_summary"]
        col = km.columns[-1]
        assert km.cell("Died before a related adverse event", col) == "1"
        # Aalen–Johansen: 2 related events on day 0 of 8 treated, the death on day 100
        aj7 = km.cell("Cumulative incidence at day 7, death competing, %", col)
        assert randomised or aj7 == "25"
        assert km.cell("Cumulative incidence at day 168, death competing, %", col) == "—"


def test_triggered_open_report_numbers() -> None:
    sc = scenario("triggered")
    ds = build_dsmb(sc.data, sc.safety, sc.protocol, as_of=sc.as_of)
    tabs = _tables(ds, "open")
    rules = tabs["stopping_rules"]
    row = next(r for r in rules.rows if r.label.endswith("(SR-PORTAL)"))
    assert row.cells[:2] == ["Triggered: enrolment and dosing paused", "2024-02-23"]
    assert row.cells[2] == ("Adverse event AE-005 (P03: Portal vein thrombosis, grade 3, "
                            "serious, onset 2024-02-23) matches criterion 1")
    assert "bleeding of grade ≥ 2" in row.label  # the protocol's ">=" shown as ≥
    soc = tabs["ae_by_soc"]
    n = "Participants, n (%), N = 8"
    assert soc.cell("Any adverse event", n) == "3 (38%)"
    assert soc.cell("Portal vein thrombosis", "Grade 3") == "1"
    assert soc.cell("Fever", "Related to the product, n (%)¹") == "2 (25%)"
    assert soc.cell("Abdominal pain", "Related to a procedure, n (%)¹") == "1 (13%)"
    assert soc.cell("Portal vein thrombosis", "Days from infusion³") == "9 (9, 9)"
    # Kaplan–Meier of (time, event) = (0, 1) (0, 1) (9, 1) (125, 0) (111, 0) (96, 0) (80, 0)
    # (60, 0), against R survfit (tests/report/r/survival_reference.R, case dsmb_triggered)
    import json

    ref = json.loads((Path(__file__).parent / "r" / "survival_reference.json").read_text())
    ref = ref["km"]["dsmb_triggered"]
    tt = ds.ttfe
    assert tt["time"].tolist() == [0, 0, 9, 125, 111, 96, 80, 60]
    assert tt["status"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    km = tabs["ttfe_km"]
    assert [r.label for r in km.rows] == [str(t) for t in ref["time"]]
    assert km.column("At risk") == [str(n) for n in ref["n_risk"]]
    assert km.column("Events") == [str(n) for n in ref["n_event"]]
    assert km.column("Free of a related adverse event, % (95% CI)") == [
        f"{fmt_num(100 * sv, 0)} ({fmt_num(100 * lo, 0)}, {fmt_num(100 * hi, 0)})"
        for sv, lo, hi in zip(ref["surv"], ref["lower"], ref["upper"], strict=True)]
    assert km.column("Free of a related adverse event, % (95% CI)") == ["75 (50, 100)",
                                                                         "63 (37, 100)"]
    oc = tabs["operating_characteristics"]
    assert [r.label for r in oc.rows] == ["5%", "10%", "20%", "30%", "40%", "50%"]
    # R enumeration (tests/design/r/monitoring_reference.out): SR-BAYES alone at 20 %
    assert oc.rows[2].cells[:2] == ["0.187", "7.30"]
    assert oc.rows[2].cells[2] == f"{1 - 0.8 ** 8:.3f}"
    assert tabs["bayesian_boundary"].rows[0].cells == ["—", "≥ 2", "≥ 2", "≥ 3", "≥ 3", "≥ 3",
                                                       "≥ 3", "≥ 4"]


def test_closed_report_by_arm() -> None:
    sc = scenario("triggered", randomised=True)
    ds = build_dsmb(sc.data, sc.safety, sc.protocol, as_of=sc.as_of)
    assert ds.randomised
    assert [g for g, _ in ds.groups("open")] == ["Overall"]
    groups = ds.groups("closed")
    assert [g for g, _ in groups] == ["Autologous bone-marrow MSC", "Standard medical care",
                                      "Overall"]
    assert len(groups[0][1]) + len(groups[1][1]) == len(groups[2][1]) == 8
    closed, opened = _tables(ds, "closed"), _tables(ds, "open")
    ov = closed["ae_overview"]
    assert [sp[0] for sp in ov.spanners] == ["Autologous bone-marrow MSC, N = 4",
                                             "Standard medical care, N = 4", "Overall, N = 8"]
    any_row = ov.rows[0].cells
    assert any_row == ["2 (50%)", "5", "0 (0%)", "0", "2 (25%)", "5"]
    assert opened["ae_overview"].rows[0].cells == ["2 (25%)", "5"]
    assert closed["sae_listing"].column("Arm") == ["Autologous bone-marrow MSC"]
    assert "Arm" not in opened["sae_listing"].columns
    assert closed["ae_by_soc"].title.endswith("by arm")
    assert closed["exposure"].columns == ["Autologous bone-marrow MSC, N = 4",
                                          "Standard medical care, N = 4", "Overall, N = 8"]
    # arms' counts add up to the overall count in every per-arm table
    for r in closed["enrolment"].rows:
        if r.label in ("Enrolled",):
            assert int(r.cells[0]) + int(r.cells[1]) == int(r.cells[2])


# ------------------------------------------------------------------------------ reproducibility
def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    sc = scenario("triggered")
    a = write_dsmb_report(sc.data, sc.safety, sc.protocol, tmp_path / "a", as_of=sc.as_of,
                          run_time="2030-01-01T00:00:00Z")
    b = write_dsmb_report(sc.data, sc.safety, sc.protocol, tmp_path / "b", as_of=sc.as_of,
                          run_time="2030-01-01T00:00:00Z")
    c = write_dsmb_report(sc.data, sc.safety, sc.protocol, tmp_path / "c", as_of=sc.as_of,
                          run_time="2031-06-15T12:00:00Z")
    assert sorted(a) == sorted(b) == sorted(c)
    assert "results" in a and a["results"].name == "dsmb_results.json"
    for k in a:
        assert a[k].read_bytes() == b[k].read_bytes(), k
        if k.endswith("_html"):
            ta = a[k].read_text(encoding="utf-8").splitlines()
            tc = c[k].read_text(encoding="utf-8").splitlines()
            diff = [(x, y) for x, y in zip(ta, tc, strict=True) if x != y]
            assert diff == [('<p class="runtime">Run time: 2030-01-01T00:00:00Z</p>',
                             '<p class="runtime">Run time: 2031-06-15T12:00:00Z</p>')]
        elif k.endswith("_docx"):
            za, zc = zipfile.ZipFile(a[k]), zipfile.ZipFile(c[k])
            assert za.namelist() == zc.namelist()
            for name in za.namelist():
                xa, xc = za.read(name), zc.read(name)
                if name == "word/document.xml":
                    xc = xc.replace(b"2031-06-15T12:00:00Z", b"2030-01-01T00:00:00Z")
                assert xa == xc, name
        else:
            assert a[k].read_bytes() == c[k].read_bytes(), k
    html = a["open_html"].read_text(encoding="utf-8")
    from hepatrial import __version__
    from hepatrial.report.analyze import dataset_hash

    assert f"hepatrial {__version__}" in html
    assert PROTOCOL.summary_dict()["content_hash"] in html
    assert dataset_hash(sc.data.dataset) in html
    assert "2024-07-05 (end of day, Asia/Tehran)" in html


def test_input_hash_changes_with_the_safety_records() -> None:
    sc = scenario("aes_no_sae")
    ds1 = build_dsmb(sc.data, sc.safety, sc.protocol, as_of=sc.as_of)
    aes = list(sc.safety.adverse_events)
    aes[0] = dataclasses.replace(aes[0], grade=2)
    ds2 = build_dsmb(sc.data, dataclasses.replace(sc.safety, adverse_events=tuple(aes)),
                     sc.protocol, as_of=sc.as_of)
    assert ds1.hashes["dataset"] == ds2.hashes["dataset"]
    assert ds1.hashes["safety"] != ds2.hashes["safety"]


# ------------------------------------------------------------------------------ the cut
def test_records_after_the_cut_are_left_out() -> None:
    sc = scenario("triggered")
    cut = dt.date(2024, 2, 22)  # the day before the thrombosis
    ds = build_dsmb(sc.data, sc.safety, sc.protocol, as_of=cut)
    assert "Portal vein thrombosis" not in set(ds.aes["term"])
    assert not any(r.triggered for r in ds.status.rules if r.kind != "sentinel")
    assert ds.data.participants["enrolment_date"].max() <= cut.isoformat()
    # an event recorded after the end of the cut day is not known at the cut
    late = dataclasses.replace(sc.safety.adverse_events[-1], recorded_at=dt.datetime(
        2024, 2, 23, 21, 0, tzinfo=dt.UTC))  # 00:30 on 24 February in Tehran
    saf = dataclasses.replace(sc.safety, adverse_events=(*sc.safety.adverse_events[:-1], late))
    ds = build_dsmb(sc.data, saf, sc.protocol, as_of=dt.date(2024, 2, 23))
    assert "Portal vein thrombosis" not in set(ds.aes["term"])
    ds = build_dsmb(sc.data, saf, sc.protocol, as_of=dt.date(2024, 2, 24))
    assert "Portal vein thrombosis" in set(ds.aes["term"])


# ------------------------------------------------------------------------------ bad inputs
def test_inputs_must_agree() -> None:
    sc = scenario("triggered")
    with pytest.raises(DsmbInputError, match="the data cut is a date"):
        build_dsmb(sc.data, sc.safety, sc.protocol, as_of=dt.datetime(2024, 7, 5))  # type: ignore[arg-type]
    other = TrialData(sc.data.dataset, sc.data.participants, sc.data.adverse_events,
                      {**sc.data.protocol_summary, "content_hash": "0" * 64})
    with pytest.raises(DsmbInputError, match="content hash 0000"):
        build_dsmb(other, sc.safety, sc.protocol, as_of=sc.as_of)
    stray = s.AdverseEventRecord("AE-999", "P99", "Fever", 1, False, "possible", "not_related",
                                 dt.date(2024, 3, 1))
    saf = dataclasses.replace(sc.safety, adverse_events=(*sc.safety.adverse_events, stray))
    with pytest.raises(DsmbInputError, match="adverse_events 'AE-999': participant 'P99' is "
                                             "not in the participants table"):
        build_dsmb(sc.data, saf, sc.protocol, as_of=sc.as_of)
    ppl = sc.data.participants.copy()
    ppl.loc[0, "n_administrations"] = 2
    with pytest.raises(DsmbInputError, match="participant P01: the participants table counts "
                                             "2 administration"):
        build_dsmb(TrialData(sc.data.dataset, ppl, sc.data.adverse_events,
                             sc.data.protocol_summary), sc.safety, sc.protocol, as_of=sc.as_of)
    with pytest.raises(DsmbInputError, match=r"participant P03: the bundle's adverse-event table "
                                             r"has 0 event\(s\), the safety records 1"):
        build_dsmb(TrialData(sc.data.dataset, sc.data.participants,
                             sc.data.adverse_events.iloc[:-1], sc.data.protocol_summary),
                   sc.safety, sc.protocol, as_of=sc.as_of)
    early = s.AdverseEventRecord("AE-998", "P08", "Fever", 1, False, "possible", "not_related",
                                 dt.date(2024, 1, 9))  # before P08's enrolment
    saf = dataclasses.replace(sc.safety, adverse_events=(*sc.safety.adverse_events, early))
    ae = pd.concat([sc.data.adverse_events, pd.DataFrame([{
        "participant_id": "P08", "term": "Fever", "grade": 1, "serious": False,
        "related": "possible", "onset_day": -100, "resolved_day": pd.NA,
        "outcome": pd.NA}])], ignore_index=True)
    with pytest.raises(DsmbInputError, match=r"adverse event 'AE-998': participant P08 is not "
                                             r"enrolled by 2024-05-01 \(onset 2024-01-09\)"):
        build_dsmb(TrialData(sc.data.dataset, sc.data.participants, ae,
                             sc.data.protocol_summary), saf, sc.protocol,
                   as_of=dt.date(2024, 5, 1))  # P08 is enrolled on 6 May


def test_protocol_without_stopping_rules() -> None:
    sc = scenario("aes_no_sae")
    proto = sc.protocol.model_copy(update={"safety": None})
    data = TrialData(sc.data.dataset, sc.data.participants, sc.data.adverse_events,
                     {**sc.data.protocol_summary, "content_hash": None})
    ds = build_dsmb(data, sc.safety, proto, as_of=sc.as_of)
    tabs = _tables(ds, "open")
    assert "stopping_rules" not in tabs and "operating_characteristics" not in tabs
    assert "The protocol declares no stopping rules." in summary_text(ds)
    assert tabs["sae_listing" if "sae_listing" in tabs else "ae_by_soc"] is not None


def test_clinical_text() -> None:
    codes = {"meld_kamath2001": "MELD (Kamath 2001, continuous)", "W4": "week 4"}
    assert clinical_text("P01: meld_kamath2001 17.9 -> 23 (+5.1) at W4", codes) == \
        "P01: MELD (Kamath 2001, continuous) 17.9 → 23 (+5.1) at week 4"
    assert clinical_text("rise >= 5 by W4; x <= 0.8; -1.5; 2024-01-08; W40", codes) == \
        "rise ≥ 5 by week 4; x ≤ 0.8; −1.5; 2024-01-08; W40"


def test_sae_listing_with_details() -> None:
    sc = scenario("triggered")
    assert "Seriousness" not in _tables(build_dsmb(sc.data, sc.safety, sc.protocol,
                                                   as_of=sc.as_of), "open")["sae_listing"].columns
    ds = build_dsmb(sc.data, sc.safety, sc.protocol, as_of=sc.as_of, ae_details=sc.ae_details)
    sae = _tables(ds, "open")["sae_listing"]
    assert sae.column("Seriousness") == ["Hospitalisation"]
    assert sae.column("Resolved") == ["Not yet"]
    assert "ae_details" in ds.hashes
    det = sc.ae_details.copy()
    det.loc[det["id"] == "AE-005", "resolution_date"] = dt.date(2024, 3, 10)
    ds = build_dsmb(sc.data, sc.safety, sc.protocol, as_of=sc.as_of, ae_details=det)
    assert _tables(ds, "open")["sae_listing"].column("Resolved") == ["2024-03-10"]
    ds = build_dsmb(sc.data, sc.safety, sc.protocol, as_of=dt.date(2024, 3, 9), ae_details=det)
    assert _tables(ds, "open")["sae_listing"].column("Resolved") == ["Not yet"]  # after the cut
    bad = det.copy()
    bad.loc[0, "id"] = "AE-404"
    with pytest.raises(DsmbInputError, match="ae_details row 0: id 'AE-404' is not an adverse "
                                             "event of the safety records"):
        build_dsmb(sc.data, sc.safety, sc.protocol, as_of=sc.as_of, ae_details=bad)
    bad = det.copy()
    bad.loc[bad["id"] == "AE-005", "seriousness_criteria"] = "hospitalization"
    with pytest.raises(DsmbInputError, match="adverse event AE-005\\): seriousness criterion "
                                             "'hospitalization' is not one of death"):
        build_dsmb(sc.data, sc.safety, sc.protocol, as_of=sc.as_of, ae_details=bad)
    bad = det.copy()
    bad.loc[bad["id"] == "AE-005", "resolution_date"] = dt.date(2024, 2, 1)
    with pytest.raises(DsmbInputError, match="resolution_date 2024-02-01 is before the onset "
                                             "2024-02-23"):
        build_dsmb(sc.data, sc.safety, sc.protocol, as_of=sc.as_of, ae_details=bad)
    death = scenario("death")
    ds = build_dsmb(death.data, death.safety, death.protocol, as_of=death.as_of,
                    ae_details=death.ae_details)
    assert _tables(ds, "open")["sae_listing"].column("Seriousness") == ["Death; Hospitalisation"]


def test_dsmb_decision_resumes_a_rule() -> None:
    sc = scenario("triggered")
    dec = s.DsmbDecision("DEC-1", "SR-PORTAL", dt.datetime(2024, 3, 1, 9, 0, tzinfo=dt.UTC),
                         "resume", "thrombosis resolved on anticoagulation; procedure reviewed")
    saf = dataclasses.replace(sc.safety, decisions=(dec,))
    ds = build_dsmb(sc.data, saf, sc.protocol, as_of=sc.as_of)
    tabs = _tables(ds, "open")
    row = next(r for r in tabs["stopping_rules"].rows if r.label.endswith("(SR-PORTAL)"))
    assert row.cells[0] == "Triggered; resumed by the DSMB on 2024-03-01"
    assert "resumed by DSMB decision DEC-1 on 2024-03-01T09:00:00+00:00: thrombosis " \
           "resolved" in row.cells[2]
    other = next(r for r in tabs["stopping_rules"].rows if r.label.endswith("(SR-DEATH-SAE)"))
    assert other.cells[0] == "Triggered: enrolment and dosing paused"  # not resumed
    d = tabs["dsmb_decisions"]
    assert [r.label for r in d.rows] == ["2024-03-01"]
    assert d.rows[0].cells == ["SR-PORTAL", "Resume enrolment and dosing",
                               "thrombosis resolved on anticoagulation; procedure reviewed"]
    text = summary_text(ds)
    assert "SR-PORTAL (portal-vein thrombosis within 28 days" in text
    assert "triggered and resumed by the DSMB" in text
    # a decision after the cut is not known at the cut
    ds = build_dsmb(sc.data, saf, sc.protocol, as_of=dt.date(2024, 2, 29))
    assert "dsmb_decisions" not in _tables(ds, "open")


def test_exposure_totals_with_an_administration_after_the_cut() -> None:
    sc = scenario("no_aes")
    second = s.Administration("ADM-P01-2", "P01", dt.date(2024, 6, 1), "peripheral_vein")
    saf = dataclasses.replace(sc.safety, administrations=(*sc.safety.administrations, second))
    ppl = sc.data.participants.copy()
    ppl.loc[ppl["participant_id"] == "P01", "n_administrations"] = 2
    data = TrialData(sc.data.dataset, ppl, sc.data.adverse_events, sc.data.protocol_summary)
    ex = _tables(build_dsmb(data, saf, sc.protocol, as_of=sc.as_of), "open")["exposure"]
    assert ex.cell("1", "Overall, N = 8") == "7 (88%)"
    assert ex.cell("2", "Overall, N = 8") == "1 (13%)"
    assert ex.cell("Peripheral vein", "Overall, N = 8") == "3 (33%)"  # of 9 administrations
    early = _tables(build_dsmb(data, saf, sc.protocol, as_of=dt.date(2024, 5, 31)), "open")
    ex = early["exposure"]
    assert ex.cell("Unknown", "Overall, N = 8", within="Cells per participant, ×10⁶") == "1"
    assert ex.notes[-1] == ("Unknown also: P01, whose recorded totals include an "
                            "administration after the data cut.")
    assert "2" not in [r.label for r in ex.rows]


def test_susar_by_the_rsi_and_by_the_sponsor() -> None:
    sc = scenario("aes_no_sae")
    fever3 = s.AdverseEventRecord("AE-010", "P02", "Fever", 3, True, "probable", "not_related",
                                  dt.date(2024, 5, 1), outcome="recovered")
    saf = dataclasses.replace(sc.safety, adverse_events=(*sc.safety.adverse_events, fever3))
    ae = pd.concat([sc.data.adverse_events, pd.DataFrame([{
        "participant_id": "P02", "term": "Fever", "grade": 3, "serious": True,
        "related": "probable", "onset_day": 0, "resolved_day": pd.NA,
        "outcome": "recovered"}])], ignore_index=True)
    data = TrialData(sc.data.dataset, sc.data.participants, ae, sc.data.protocol_summary)
    # the RSI expects fever up to grade 2: grade 3, serious and probably related is a SUSAR
    tabs = _tables(build_dsmb(data, saf, sc.protocol, as_of=sc.as_of), "open")
    assert tabs["sae_listing"].column("Expectedness") == ["Unexpected (product)"]
    assert tabs["sae_listing"].column("SUSAR") == ["Yes"]
    row = "Suspected unexpected serious adverse reaction (SUSAR)"
    assert tabs["ae_overview"].cell(row, "Events") == "1"
    # the sponsor's assessment decides
    det = pd.DataFrame({"id": ["AE-010"], "seriousness_criteria": [["hospitalisation"]],
                        "resolution_date": [dt.date(2024, 5, 4)], "expectedness": ["expected"]})
    tabs = _tables(build_dsmb(data, saf, sc.protocol, as_of=sc.as_of, ae_details=det), "open")
    sae = tabs["sae_listing"]
    assert sae.column("Expectedness") == ["Expected (product, sponsor's assessment)"]
    assert sae.column("SUSAR") == ["No"] and sae.column("Resolved") == ["2024-05-04"]
    assert tabs["ae_overview"].cell(row, "Events") == "0"
    with pytest.raises(DsmbInputError, match="expectedness 'likely' is not one of expected, "
                                             "unexpected"):
        build_dsmb(data, saf, sc.protocol, as_of=sc.as_of,
                   ae_details=det.assign(expectedness=["likely"]))
