"""The [safety] section and the stopping-rule evaluator (hepatrial.protocol.safety).

Every stopping rule of the kharaziha2009 protocol is exercised on constructed scenarios,
triggered and not triggered at its boundary.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import tomllib
from importlib import resources
from typing import Any

import pandas as pd
import pytest

from hepatrial.protocol import load_protocol
from hepatrial.protocol import safety as s
from hepatrial.protocol.loader import validate_data

P = load_protocol("kharaziha2009")
PLAN = P.safety
TZ = dt.timezone(dt.timedelta(hours=3, minutes=30))  # Asia/Tehran (no DST since 2022)
D0 = dt.date(2024, 1, 1)


def _day(n: int) -> dt.date:
    return D0 + dt.timedelta(days=n)


def _admins(n: int = 8, gap: int = 14, route: str = "portal_vein") -> tuple[s.Administration, ...]:
    return tuple(s.Administration(f"A{i}", f"P{i}", _day(i * gap), route) for i in range(1, n + 1))


def _ae(i: str, pid: str, term: str, grade: int, onset: dt.date, *, serious: bool = False,
        prod: str = "not_related", proc: str = "not_related", outcome: str | None = None,
        recorded_at: dt.datetime | None = None) -> s.AdverseEventRecord:
    return s.AdverseEventRecord(i, pid, term, grade, serious, prod, proc, onset, outcome=outcome,
                                recorded_at=recorded_at)


def _status(data: s.SafetyData, as_of: dt.date | dt.datetime) -> dict[str, s.RuleStatus]:
    st = s.evaluate_stopping_rules(P, data, as_of)
    return {r.rule_id: r for r in st.rules}


def _builtin() -> dict[str, Any]:
    text = resources.files("hepatrial.protocol").joinpath("builtin", "kharaziha2009.toml")
    return tomllib.loads(text.read_text())


# ---------------------------------------------------------------- the protocol section
def test_builtin_plan() -> None:
    assert PLAN is not None and PLAN.planned_treated == 8
    assert [r.id for r in PLAN.stopping_rules] == [
        "SR-DEATH-SAE", "SR-PORTAL", "SR-INFUSION", "SR-MELD", "SR-SENTINEL", "SR-BAYES"]
    assert PLAN.reporting.initial_report_hours == 24
    assert (PLAN.reporting.susar_fatal_days, PLAN.reporting.susar_other_days) == (7, 15)
    assert PLAN.recipients("susar")[-1] == "competent_authority"
    assert PLAN.recipients("nothing") == ()
    bayes = PLAN.rule("SR-BAYES")
    assert bayes.boundary(8) == (2, 2, 2, 3, 3, 3, 3, 4)
    # every safety block carries provenance, listed with its key path
    prov = {i.path: i.source for i in P.provenance() if i.path.startswith("safety")}
    assert prov["safety"] == "assumed"
    assert prov["safety.planned_treated"] == "published"
    assert prov["safety.stopping_rules[5]"] == "assumed"
    assert prov["safety.reference_safety_information.expected[0]"] == "published"
    with pytest.raises(KeyError, match="SR-DEATH-SAE"):
        PLAN.rule("SR-NONE")


def _issue_paths(data: dict[str, Any]) -> dict[str, str]:
    prot, issues = validate_data(data, "<test>")
    assert prot is None
    return {i.path: i.message for i in issues}


def test_plan_rules_refuse_bad_sections() -> None:
    d = _builtin()
    bad = copy.deepcopy(d)
    bad["safety"]["stopping_rules"][2]["match_any"][0]["terms"] = ["Infusion reaction"]
    msgs = " ".join(_issue_paths(bad).values())
    assert "'Infusion reaction' is not a CTCAE v5.0 term" in msgs

    bad = copy.deepcopy(d)
    bad["safety"]["stopping_rules"][3]["by_visit"] = "W5"
    assert "unknown visit 'W5'" in _issue_paths(bad)["safety.stopping_rules[3].by_visit"]

    bad = copy.deepcopy(d)
    bad["safety"]["stopping_rules"][3]["by_visit"] = "D0"
    assert "not after the baseline" in _issue_paths(bad)["safety.stopping_rules[3].by_visit"]

    bad = copy.deepcopy(d)
    bad["safety"]["stopping_rules"][1]["match_any"][0]["after_route"] = "hepatic_artery"
    assert "not a route of the product" in _issue_paths(bad)[
        "safety.stopping_rules[1].match_any[0].after_route"]

    bad = copy.deepcopy(d)
    bad["safety"]["stopping_rules"][1]["id"] = "SR-DEATH-SAE"
    assert "duplicate rule id 'SR-DEATH-SAE'" in " ".join(_issue_paths(bad).values())

    bad = copy.deepcopy(d)
    bad["safety"]["stopping_rules"][0]["match_any"].append({"min_relatedness": "probable"})
    assert "a filter needs at least one condition" in " ".join(_issue_paths(bad).values())

    bad = copy.deepcopy(d)
    bad["safety"]["reference_safety_information"]["expected"][0]["max_grade"] = 1
    bad["safety"]["reference_safety_information"]["expected"][0]["term"] = "Death NOS"
    assert "has no grade 1" in " ".join(_issue_paths(bad).values())

    bad = copy.deepcopy(d)
    bad["safety"]["reporting"]["time_zone"] = "Tehran"
    assert "not an IANA time zone" in " ".join(_issue_paths(bad).values())

    bad = copy.deepcopy(d)
    bad["safety"]["stopping_rules"][3]["count"] = 5
    assert "could never trigger" in " ".join(_issue_paths(bad).values())

    bad = copy.deepcopy(d)
    bad["safety"]["notifications"][0]["roles"] = ["investigator", "pharmacist"]
    assert "safety.notifications[0].roles[1]" in _issue_paths(bad)


def test_protocol_without_safety_is_valid() -> None:
    d = _builtin()
    del d["safety"]
    prot, issues = validate_data(d, "<test>")
    assert issues == [] and prot is not None and prot.safety is None
    with pytest.raises(s.SafetyDataError, match="no \\[safety\\] section"):
        s.evaluate_stopping_rules(prot, s.SafetyData(), D0)


# ---------------------------------------------------------------- a quiet trial
def _quiet() -> s.SafetyData:
    labs = []
    for i in range(1, 9):
        for visit, day, v in (("D0", 0, 17.9), ("W1", 7, 17.0), ("W4", 28, 15.0)):
            labs.append(s.LabValue(f"P{i}", visit, day, "meld_kamath2001", v,
                                   _day(i * 14 + day)))
    mild = _ae("AE1", "P1", "Fever", 1, _day(15), prod="possible")
    return s.SafetyData(adverse_events=(mild,), administrations=_admins(), labs=tuple(labs))


def test_quiet_trial_triggers_nothing() -> None:
    st = s.evaluate_stopping_rules(P, _quiet(), _day(400))
    assert not st.paused and st.dosing_allowed and st.enrolment_allowed
    assert st.pausing_rules == ()
    assert all(not r.triggered for r in st.rules)
    bayes = {r.rule_id: r for r in st.rules}["SR-BAYES"]
    assert bayes.details["x"] == 0 and bayes.details["n"] == 8
    sentinel = {r.rule_id: r for r in st.rules}["SR-SENTINEL"]
    assert sentinel.reasons == ("all 8 staggered participants are dosed",)
    # deterministic, JSON-ready
    a = json.dumps(st.as_dict(), sort_keys=True)
    b = json.dumps(s.evaluate_stopping_rules(P, _quiet(), _day(400)).as_dict(), sort_keys=True)
    assert a == b


# ---------------------------------------------------------------- SR-DEATH-SAE
def test_death_or_related_sae() -> None:
    base = dict(administrations=_admins(2))
    death = _ae("AE1", "P1", "Death NOS", 5, _day(30), serious=True, outcome="fatal")
    st = _status(s.SafetyData(adverse_events=(death,), **base), _day(31))["SR-DEATH-SAE"]
    assert st.triggered and st.paused and st.events == ("AE1",) and st.participants == ("P1",)
    assert st.since == dt.datetime(2024, 1, 31, tzinfo=TZ)
    assert "matches criterion 1" in st.reasons[0]

    unlikely = _ae("AE2", "P1", "Sepsis", 3, _day(30), serious=True, prod="unlikely",
                   proc="unlikely")
    assert not _status(s.SafetyData(adverse_events=(unlikely,), **base), _day(31))[
        "SR-DEATH-SAE"].triggered
    possible_proc = _ae("AE3", "P1", "Sepsis", 3, _day(30), serious=True, proc="possible")
    st = _status(s.SafetyData(adverse_events=(possible_proc,), **base), _day(31))
    assert st["SR-DEATH-SAE"].paused and "criterion 2" in st["SR-DEATH-SAE"].reasons[0]
    not_serious = _ae("AE4", "P1", "Sepsis", 3, _day(30), prod="definite")
    assert not _status(s.SafetyData(adverse_events=(not_serious,), **base), _day(31))[
        "SR-DEATH-SAE"].triggered
    # a death recorded only as participant status also counts
    st = _status(s.SafetyData(deaths=(s.Death("P2", _day(40)),), **base), _day(40))
    assert st["SR-DEATH-SAE"].paused and st["SR-DEATH-SAE"].participants == ("P2",)
    assert st["SR-DEATH-SAE"].events == ()


# ---------------------------------------------------------------- SR-PORTAL
@pytest.mark.parametrize(("days_after", "route", "expected"), [
    (28, "portal_vein", True), (29, "portal_vein", False), (0, "portal_vein", True),
    (5, "peripheral_vein", False)])
def test_portal_vein_thrombosis_window(days_after: int, route: str, expected: bool) -> None:
    admins = (s.Administration("A1", "P1", _day(14), route),)
    pvt = _ae("AE1", "P1", "Portal vein thrombosis", 2, _day(14 + days_after))
    st = _status(s.SafetyData(adverse_events=(pvt,), administrations=admins), _day(60))
    assert st["SR-PORTAL"].triggered is expected


@pytest.mark.parametrize(("grade", "days_after", "proc", "expected"), [
    (2, 7, "possible", True), (1, 7, "possible", False), (2, 8, "possible", False),
    (3, 1, "unlikely", False), (3, 1, "definite", True)])
def test_procedure_bleeding_after_portal_injection(grade: int, days_after: int, proc: str,
                                                   expected: bool) -> None:
    admins = (s.Administration("A1", "P1", _day(14), "portal_vein"),)
    bleed = _ae("AE1", "P1", "Hepatic hemorrhage", grade, _day(14 + days_after), proc=proc)
    st = _status(s.SafetyData(adverse_events=(bleed,), administrations=admins), _day(60))
    assert st["SR-PORTAL"].triggered is expected


# ---------------------------------------------------------------- SR-INFUSION
@pytest.mark.parametrize(("term", "grade", "expected"), [
    ("Infusion related reaction", 3, True), ("Infusion related reaction", 2, False),
    ("Anaphylaxis", 3, True), ("Fever", 3, False)])
def test_infusion_reaction_grade_3(term: str, grade: int, expected: bool) -> None:
    ae = _ae("AE1", "P1", term, grade, _day(14), prod="probable")
    st = _status(s.SafetyData(adverse_events=(ae,), administrations=_admins(1)), _day(20))
    assert st["SR-INFUSION"].triggered is expected


# ---------------------------------------------------------------- SR-MELD
def _meld(rises: dict[str, float], base: float = 17.9) -> tuple[s.LabValue, ...]:
    out = []
    for i in range(1, 9):
        pid = f"P{i}"
        d = _day(i * 14)
        out.append(s.LabValue(pid, "D0", 0, "meld_kamath2001", base, d))
        out.append(s.LabValue(pid, "W4", 28, "meld_kamath2001", round(base + rises.get(pid, -2),
                                                                          1), d + dt.timedelta(28)))
        out.append(s.LabValue(pid, "W8", 56, "meld_kamath2001", base + 9, d + dt.timedelta(56)))
    return tuple(out)


@pytest.mark.parametrize(("rises", "expected"), [
    ({"P1": 5.0, "P3": 5.0}, True),   # 17.9 -> 22.9: exactly +5.0 counts (no float noise)
    ({"P1": 5.0, "P3": 4.9}, False),  # +4.9 does not
    ({"P1": 5.0}, False),             # one participant is not enough
    ({"P1": 6.0, "P5": 8.0}, False),  # P5 is not among the first 4 treated
    ({"P2": 5.0, "P4": 5.1}, True),
])
def test_meld_rise_boundary(rises: dict[str, float], expected: bool) -> None:
    data = s.SafetyData(administrations=_admins(), labs=_meld(rises))
    st = _status(data, _day(300))["SR-MELD"]
    assert st.triggered is expected
    assert st.details["cohort"] == ["P1", "P2", "P3", "P4"]
    # the week-8 rise of 9 points is after W4 and never counts
    if expected:
        assert sorted(st.participants) == sorted(rises)
        assert "+5" in " ".join(st.reasons) or "+5.1" in " ".join(st.reasons)
        second = max(_day(int(p[1]) * 14 + 28) for p in rises)
        assert st.since == dt.datetime.combine(second, dt.time(), TZ)


def test_meld_missing_baseline_is_reported() -> None:
    labs = tuple(r for r in _meld({"P1": 5.0}) if not (r.participant_id == "P2"
                                                       and r.nominal_day == 0))
    st = _status(s.SafetyData(administrations=_admins(), labs=labs), _day(300))["SR-MELD"]
    assert not st.triggered
    assert st.undetermined == ("P2: no baseline meld_kamath2001",)


def test_meld_rule_counts_only_data_known_by_as_of() -> None:
    data = s.SafetyData(administrations=_admins(), labs=_meld({"P1": 5.0, "P2": 5.0}))
    # P2's week-4 value is dated day 28 + 28 = 56
    assert not _status(data, _day(55))["SR-MELD"].triggered
    assert _status(data, _day(56))["SR-MELD"].triggered


# ---------------------------------------------------------------- SR-SENTINEL
def test_sentinel_interval_13_14_days_and_review() -> None:
    admins = _admins(3)  # P3 dosed on day 42
    last = _day(42)
    data = s.SafetyData(administrations=admins)
    st = _status(data, last + dt.timedelta(days=13))["SR-SENTINEL"]
    assert st.paused and st.details["next_dosing_from"] == _day(56)
    assert "from 2024-02-26 (14 days; 13 elapsed)" in st.reasons[0]
    # day 14: the interval is over, but the review is still missing
    st = _status(data, last + dt.timedelta(days=14))["SR-SENTINEL"]
    assert st.paused and st.reasons == ("no review recorded since P3's dose on 2024-02-12",)
    review = s.DsmbDecision("D1", "SR-SENTINEL", dt.datetime(2024, 2, 20, 10, tzinfo=dt.UTC),
                            "resume", "P3 safety data to day 7 reviewed: no concern")
    data = s.SafetyData(administrations=admins, decisions=(review,))
    st = _status(data, last + dt.timedelta(days=14))["SR-SENTINEL"]
    assert not st.paused and st.resume == review
    st13 = _status(data, last + dt.timedelta(days=13))["SR-SENTINEL"]
    assert st13.paused  # a review does not shorten the interval
    # a review older than the last dose does not count
    old = s.DsmbDecision("D0", "SR-SENTINEL", dt.datetime(2024, 2, 1, tzinfo=dt.UTC), "resume",
                         "P2 reviewed")
    assert _status(s.SafetyData(administrations=admins, decisions=(old,)),
                   _day(70))["SR-SENTINEL"].paused
    st = s.evaluate_stopping_rules(P, s.SafetyData(administrations=admins), _day(50))
    assert not st.dosing_allowed and st.enrolment_allowed and st.pausing_rules == (
        "SR-SENTINEL",)


def test_sentinel_reports_past_interval_deviations() -> None:
    admins = (s.Administration("A1", "P1", _day(0), "portal_vein"),
              s.Administration("A2", "P2", _day(13), "portal_vein"),
              s.Administration("A2b", "P2", _day(20), "portal_vein"))  # 2nd dose of P2
    st = _status(s.SafetyData(administrations=admins), _day(13))["SR-SENTINEL"]
    assert st.details["interval_deviations"] == [
        "P2: dosed 13 day(s) after the previous participant"]
    assert st.details["participants_dosed"] == 2


# ---------------------------------------------------------------- SR-BAYES
def _related_saes(pids: list[str]) -> tuple[s.AdverseEventRecord, ...]:
    return tuple(_ae(f"AE{p}", p, "Hepatic failure", 3, _day(int(p[1:]) * 14 + 3), serious=True,
                     prod="possible") for p in pids)


@pytest.mark.parametrize(("n", "pids", "expected"), [
    (1, ["P1"], False), (2, ["P1", "P2"], True), (3, ["P1", "P2"], True),
    (4, ["P1", "P2"], False), (7, ["P1", "P2", "P3"], True), (8, ["P1", "P2", "P3"], False),
    (8, ["P1", "P2", "P3", "P4"], True)])
def test_bayesian_rule_boundary(n: int, pids: list[str], expected: bool) -> None:
    data = s.SafetyData(adverse_events=_related_saes(pids), administrations=_admins(n))
    st = _status(data, _day(200))["SR-BAYES"]
    assert st.triggered is expected
    assert (st.details["x"], st.details["n"]) == (len(pids), n)
    assert (st.details["posterior"] > 0.8) is expected


# ---------------------------------------------------------------- DSMB resume
def test_resume_lifts_and_new_evidence_repauses() -> None:
    sae1 = _ae("AE1", "P1", "Hepatic failure", 3, _day(17), serious=True, prod="possible")
    resume = s.DsmbDecision("D1", "SR-DEATH-SAE", dt.datetime(2024, 1, 25, 9, tzinfo=dt.UTC),
                            "resume", "hepatic decompensation judged disease-related")
    data = s.SafetyData(adverse_events=(sae1,), administrations=_admins(3), decisions=(resume,))
    st = _status(data, _day(30))["SR-DEATH-SAE"]
    assert st.triggered and not st.paused and st.resume == resume
    assert not st.resume_superseded
    # before the decision the rule pauses
    before = _status(data, dt.datetime(2024, 1, 25, 8, tzinfo=dt.UTC))["SR-DEATH-SAE"]
    assert before.paused and before.resume is None
    # a second related SAE after the resume pauses again, from its own time
    sae2 = _ae("AE2", "P2", "Sepsis", 3, _day(31), serious=True, proc="possible")
    data2 = s.SafetyData(adverse_events=(sae1, sae2), administrations=_admins(3),
                         decisions=(resume,))
    st = _status(data2, _day(40))["SR-DEATH-SAE"]
    assert st.paused and st.resume is None and st.resume_superseded
    assert st.since == dt.datetime(2024, 2, 1, tzinfo=TZ)
    assert "new evidence after the DSMB resume" in st.reasons[-1]
    # the Bayesian rule watches the same events: 2 of 3 treated pauses it too
    assert _status(data2, _day(40))["SR-BAYES"].paused
    # the latest decision wins: keep the pause
    keep = s.DsmbDecision("D2", "SR-DEATH-SAE", dt.datetime(2024, 1, 26, tzinfo=dt.UTC),
                          "continue_pause", "more data needed")
    data3 = s.SafetyData(adverse_events=(sae1,), administrations=_admins(3),
                         decisions=(resume, keep))
    assert _status(data3, _day(30))["SR-DEATH-SAE"].paused
    # a resume dated before the event does not apply
    early = s.DsmbDecision("D0", "SR-DEATH-SAE", dt.datetime(2024, 1, 10, tzinfo=dt.UTC),
                           "resume", "nothing")
    st = _status(s.SafetyData(adverse_events=(sae1,), administrations=_admins(3),
                              decisions=(early,)), _day(30))["SR-DEATH-SAE"]
    assert st.paused and st.resume_superseded


def test_recorded_at_decides_what_a_resume_covers() -> None:
    # onset before the DSMB meeting but reported to the store after it: not covered
    late = _ae("AE1", "P1", "Hepatic failure", 3, _day(17), serious=True, prod="possible",
               recorded_at=dt.datetime(2024, 1, 26, 12, tzinfo=dt.UTC))
    resume = s.DsmbDecision("D1", "SR-DEATH-SAE", dt.datetime(2024, 1, 25, 9, tzinfo=dt.UTC),
                            "resume", "reviewed")
    data = s.SafetyData(adverse_events=(late,), administrations=_admins(2), decisions=(resume,))
    assert _status(data, _day(30))["SR-DEATH-SAE"].paused
    # and as of a cut before it was recorded, it is not known at all
    assert not _status(data, dt.datetime(2024, 1, 26, 11, tzinfo=dt.UTC))[
        "SR-DEATH-SAE"].triggered


def test_decision_on_unknown_rule_is_refused() -> None:
    d = s.DsmbDecision("D1", "SR-X", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "resume", "r")
    with pytest.raises(s.SafetyDataError, match="rule 'SR-X' is not a stopping rule"):
        s.evaluate_stopping_rules(P, s.SafetyData(decisions=(d,)), _day(1))


# ---------------------------------------------------------------- data validation
def test_records_refuse_bad_values() -> None:
    with pytest.raises(s.SafetyDataError, match="related_product 'maybe'"):
        _ae("AE1", "P1", "Fever", 1, D0, prod="maybe")
    with pytest.raises(s.SafetyDataError, match="grade 6"):
        _ae("AE1", "P1", "Fever", 6, D0)
    with pytest.raises(s.SafetyDataError, match="meddra_code 10016558 is not the code of"):
        s.AdverseEventRecord("AE1", "P1", "Death NOS", 5, True, "not_related", "not_related",
                             D0, meddra_code=10016558)
    with pytest.raises(s.SafetyDataError, match="not a time-zone-aware"):
        s.DsmbDecision("D1", "SR-BAYES", dt.datetime(2024, 1, 1), "resume", "r")
    with pytest.raises(s.SafetyDataError, match="needs its reason"):
        s.DsmbDecision("D1", "SR-BAYES", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "resume", " ")
    with pytest.raises(s.SafetyDataError, match="route 'vein'"):
        s.Administration("A1", "P1", D0, "vein")
    with pytest.raises(s.SafetyDataError, match="duplicate id"):
        s.SafetyData(administrations=(s.Administration("A1", "P1", D0, "portal_vein"),) * 2)
    # a free-text term is kept, reported as uncoded, and matches no term filter
    free = _ae("AE9", "P1", "felt unwell", 2, _day(15))
    assert not free.coded
    st = s.evaluate_stopping_rules(P, s.SafetyData(adverse_events=(free,),
                                                   administrations=_admins(1)), _day(20))
    assert st.uncoded_events == ("AE9 (P1: 'felt unwell')",)


def test_from_frames() -> None:
    ae = pd.DataFrame([{"id": "AE1", "participant_id": "P1", "term": "death nos", "grade": 5,
                        "serious": True, "related_product": "not_related",
                        "related_procedure": "not_related", "onset": dt.date(2024, 1, 20),
                        "outcome": "fatal", "recorded_at": float("nan")}])
    adm = pd.DataFrame([{"id": "A1", "participant_id": "P1", "date": pd.Timestamp("2024-01-15"),
                         "route": "portal_vein"}])
    data = s.SafetyData.from_frames(adverse_events=ae, administrations=adm)
    assert data.adverse_events[0].term == "Death NOS"
    assert data.adverse_events[0].meddra_code == 10011914
    assert data.adverse_events[0].recorded_at is None
    assert data.administrations[0].date == dt.date(2024, 1, 15)
    assert _status(data, _day(30))["SR-DEATH-SAE"].paused
    bad = ae.assign(grade=7)
    with pytest.raises(s.SafetyDataError, match=r"adverse events row 0: .*grade 7"):
        s.SafetyData.from_frames(adverse_events=bad)


# ---------------------------------------------------------------- expectedness, SUSAR, seriousness
def test_expectedness_against_the_rsi() -> None:
    assert s.expectedness(PLAN, "Fever", 2) == "expected"
    assert s.expectedness(PLAN, "fever", 3) == "unexpected"  # more severe than listed
    assert s.expectedness(PLAN, "Fever", 1, "procedure") == "unexpected"
    assert s.expectedness(PLAN, "Hematoma", 2, "procedure") == "expected"
    assert s.expectedness(PLAN, "Portal vein thrombosis", 2) == "unexpected"
    with pytest.raises(Exception, match="has no grade 1"):
        s.expectedness(PLAN, "Death NOS", 1)


def test_susar_and_suspected() -> None:
    assert s.is_suspected("possible") and not s.is_suspected("unlikely")
    assert s.is_susar(True, "probable", "unexpected")
    assert not s.is_susar(True, "probable", "expected")
    assert not s.is_susar(False, "definite", "unexpected")
    assert not s.is_susar(True, "unlikely", "unexpected")
    with pytest.raises(ValueError, match="expectedness 'maybe'"):
        s.is_susar(True, "possible", "maybe")


def test_seriousness_issues() -> None:
    assert s.seriousness_issues(3, True, ["hospitalisation"], "recovering") == []
    assert s.seriousness_issues(4, False, [], None) == []  # severity is not seriousness
    assert s.seriousness_issues(5, True, ["death"], "fatal") == []
    fields = {f for f, _ in s.seriousness_issues(5, False, [], "recovered")}
    assert fields == {"seriousness_criteria"}
    issues = s.seriousness_issues(2, True, [], None)
    assert issues == [("seriousness_criteria", "a serious event needs at least one criterion "
                       "(ICH E2A)")]
    issues = dict(s.seriousness_issues(3, False, ["death", "bogus"], "recovered"))
    assert "not a seriousness criterion" in issues["seriousness_criteria"]
    assert issues["outcome"].startswith("criterion 'death' needs outcome 'fatal'")
    assert "make the event serious" in issues["serious"]


# ---------------------------------------------------------------- operating characteristics
def test_plan_operating_characteristics() -> None:
    grid = [0.05, 0.1, 0.2, 0.3]
    oc = s.plan_operating_characteristics(PLAN, grid)
    bayes = oc["bayesian:SR-BAYES"]
    # R enumeration (tests/design/r/monitoring_reference.out)
    assert [round(o.prob_stop, 7) for o in bayes] == [0.0095604, 0.0434062, 0.1873536, 0.3983094]
    assert bayes[2].expected_treated == pytest.approx(7.2972544, abs=1e-9)
    # whole set: SR-DEATH-SAE pauses at the first related SAE
    for p, o in zip(grid, oc["all"], strict=True):
        assert o.prob_stop == pytest.approx(1 - (1 - p) ** 8, abs=1e-12)
        assert o.expected_treated == pytest.approx((1 - (1 - p) ** 8) / p, abs=1e-12)
        assert o.prob_stop_by_rule["SR-DEATH-SAE"] == pytest.approx(o.prob_stop)
    # MELD rule alone at a 20 % rate of +5 by week 4: 1 - P(Bin(4, 0.2) <= 1)
    with_meld = s.plan_operating_characteristics(PLAN, [0.0], other_rates={"SR-MELD": 0.2})
    assert with_meld["all"][0].prob_stop == pytest.approx(1 - 0.8**4 - 4 * 0.2 * 0.8**3)
    # each rule alone at the rate of its own event: a first-event rule pauses with
    # probability 1 - (1 - p)^8; SR-MELD (2 of the first 4 treated) 1 - P(Bin(4, p) <= 1)
    assert sorted(oc) == ["all", "bayesian:SR-BAYES", "rule:SR-DEATH-SAE", "rule:SR-INFUSION",
                          "rule:SR-MELD", "rule:SR-PORTAL"]
    for rid in ("SR-DEATH-SAE", "SR-PORTAL", "SR-INFUSION"):
        assert [o.prob_stop for o in oc[f"rule:{rid}"]] == pytest.approx(
            [1 - (1 - p) ** 8 for p in grid], abs=1e-12)
    assert [o.prob_stop for o in oc["rule:SR-MELD"]] == pytest.approx(
        [1 - (1 - p) ** 4 - 4 * p * (1 - p) ** 3 for p in grid], abs=1e-12)
    names = [m.name for m in s.plan_monitors(PLAN)]
    assert names == ["SR-DEATH-SAE", "SR-PORTAL", "SR-INFUSION", "SR-MELD", "SR-BAYES"]
