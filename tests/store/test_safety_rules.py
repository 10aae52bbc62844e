"""The stopping rules of kharaziha2009 through the store (issue 12).

Each rule is triggered and not triggered at its boundary on a store built with the real
services (participants, adverse events, labs, deaths; administrations written as audited
rows, see tests/store/_safety.py), evaluated by ``services.safety`` as the dosing gate and
the enrolment service read it; a pause is latched until a signed DSMB decision resumes it
(a data correction does not lift it), the dosing gate of ``services.record_administration``
refuses during a pause naming the rule and allows after the signed resume, and each pause
and resumption is notified to the roles the protocol names (locmem e-mail backend).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from tests.store._safety import DAY0, PASSWORD, dose, fast_passwords, safety_trial
from tests.store.conftest import enrol

ONE = dt.timedelta(days=1)


def ae(pid: str, term: str, grade: int, onset: dt.date, *, serious: bool = False,
       prod: str = "not_related", proc: str = "not_related", procedure: str | None = None,
       **kw: Any) -> Any:  # fmt: skip
    """Record an adverse event (serious: hospitalisation, site aware at noon of the onset)."""
    from hepatrial.trials.services import safety

    extra: dict[str, Any] = {}
    if serious:
        extra = {"serious": True, "seriousness_criteria": ["hospitalisation"],
                 "aware_local": f"{onset} 12:00"}  # fmt: skip
    return safety.record_adverse_event(
        participant=pid, term=term, grade=grade, onset_date=onset, relatedness_product=prod,
        relatedness_procedure=proc, procedure=procedure, action_taken="none",
        **{**extra, **kw})


def rules() -> dict[str, Any]:
    """The store's status of every rule: rule id -> the evaluator's RuleStatus."""
    from hepatrial.trials.services import safety

    return {r.rule_id: r for r in safety.refresh_safety_status().rules}


def pausing() -> tuple[str, ...]:
    from hepatrial.trials.services import safety

    return safety.safety_status().pausing_rules


@pytest.fixture
def trial(store: Any, settings: Any) -> dict[str, Any]:
    """K01 (portal vein, day 0 2008-01-20) and K02 (peripheral vein, 2008-02-10) dosed; the
    sentinel's reviews are irrelevant here (8 participants would close it; the rules other
    than the sentinel are asserted)."""
    fast_passwords(settings)
    return safety_trial(store, 2)


# ------------------------------------------------------------------ SR-DEATH-SAE
@pytest.mark.parametrize(("prod", "proc", "serious", "expected"), [
    ("possible", "not_related", True, True),       # at least possibly related to the product
    ("not_related", "possible", True, True),       # ... or to a procedure
    ("unlikely", "unlikely", True, False),         # the boundary: unlikely is not "possible"
    ("definite", "definite", False, False),        # related but not serious
])
def test_death_or_related_sae(trial: Any, prod: str, proc: str, serious: bool,
                              expected: bool) -> None:  # fmt: skip
    a = ae("K01", "Hepatic failure", 3, DAY0 + 5 * ONE, serious=serious, prod=prod, proc=proc,
           procedure="portal_vein_injection" if proc != "not_related" else None)
    st = rules()["SR-DEATH-SAE"]
    assert (st.triggered, st.paused) == (expected, expected)
    assert st.events == ((f"AE-{a.pk}",) if expected else ())
    assert ("SR-DEATH-SAE" in pausing()) is expected


def test_any_death_pauses(trial: Any, store: Any) -> None:
    assert "SR-DEATH-SAE" not in pausing()
    store.change_status(participant="K02", status="died", date=DAY0 + 40 * ONE,
                        reason="variceal bleeding at home")  # fmt: skip
    st = rules()["SR-DEATH-SAE"]
    assert st.paused and st.participants == ("K02",) and st.events == ()
    assert st.reasons == ("death of K02 on 2008-02-29",)


# ------------------------------------------------------------------ SR-PORTAL
@pytest.mark.parametrize(("pid", "days", "expected"), [
    ("K01", 28, True), ("K01", 29, False),   # within 28 days of the portal-vein injection
    ("K02", 3, False),                       # K02 had a peripheral infusion only
])
def test_portal_vein_thrombosis_window(trial: Any, pid: str, days: int, expected: bool) -> None:
    d0 = trial["day0"][pid]
    ae(pid, "Portal vein thrombosis", 2, d0 + days * ONE)  # not serious, not related
    st = rules()["SR-PORTAL"]
    assert (st.triggered, st.paused) == (expected, expected)
    assert rules()["SR-DEATH-SAE"].triggered is False


@pytest.mark.parametrize(("term", "grade", "days", "proc", "expected"), [
    ("Hematoma", 2, 7, "possible", True), ("Hematoma", 2, 8, "possible", False),
    ("Hematoma", 1, 3, "possible", False), ("Intra-abdominal hemorrhage", 2, 1, "unlikely",
                                            False),
    ("Hepatic hemorrhage", 3, 0, "probable", True),
])
def test_procedure_bleeding_after_portal_injection(trial: Any, term: str, grade: int,
                                                   days: int, proc: str,
                                                   expected: bool) -> None:  # fmt: skip
    ae("K01", term, grade, DAY0 + days * ONE, proc=proc, procedure="portal_vein_injection")
    assert rules()["SR-PORTAL"].triggered is expected


# ------------------------------------------------------------------ SR-INFUSION
@pytest.mark.parametrize(("term", "grade", "expected"), [
    ("Infusion related reaction", 3, True), ("Infusion related reaction", 2, False),
    ("Anaphylaxis", 3, True), ("Fever", 3, False),
])
def test_infusion_reaction_grade_3(trial: Any, term: str, grade: int, expected: bool) -> None:
    ae("K02", term, grade, trial["day0"]["K02"], prod="possible")
    assert rules()["SR-INFUSION"].paused is expected


# ------------------------------------------------------------------ SR-MELD
def _meld_labs(store: Any, pid: str, d0: dt.date, inr_w4: str, visit: str = "W4") -> None:
    """Bilirubin 40 umol/L, creatinine 100 umol/L at D0 and ``visit``; INR 1.50 at D0 and
    ``inr_w4`` at ``visit`` (MELD Kamath 2001 rises by 11.2 ln(INR ratio))."""
    day = {"W4": 28, "W8": 56}[visit]
    store.record_visit(participant=pid, visit_code="D0", actual_date=d0)
    store.record_visit(participant=pid, visit_code=visit, actual_date=d0 + day * ONE)
    for v, inr in (("D0", "1.50"), (visit, inr_w4)):
        store.record_lab(participant=pid, visit_code=v, analyte="bilirubin", value="40",
                         unit="umol/L")
        store.record_lab(participant=pid, visit_code=v, analyte="creatinine", value="100",
                         unit="umol/L")
        store.record_lab(participant=pid, visit_code=v, analyte="inr", value=inr, unit="1")


@pytest.mark.parametrize(("k01", "k02", "expected"), [
    ("2.35", "2.35", True),    # +5.03 and +5.03: 2 of the first 4 treated
    ("2.35", "2.34", False),   # +5.03 and +4.98 (the boundary: a rise of 5.0 or more)
])
def test_meld_rise_by_week_4(trial: Any, store: Any, k01: str, k02: str,
                             expected: bool) -> None:  # fmt: skip
    _meld_labs(store, "K01", trial["day0"]["K01"], k01)
    _meld_labs(store, "K02", trial["day0"]["K02"], k02)
    st = rules()["SR-MELD"]
    assert st.triggered is expected
    assert st.details["cohort"] == ["K01", "K02"]
    assert st.details["max_rise"] == pytest.approx(
        {"K01": 11.2 * math.log(float(k01) / 1.5), "K02": 11.2 * math.log(float(k02) / 1.5)},
        abs=0.01)


def test_meld_rise_after_week_4_or_beyond_the_first_four_does_not_count(
        store: Any, settings: Any) -> None:  # fmt: skip
    fast_passwords(settings)
    t = safety_trial(store, 5, spacing=15)
    _meld_labs(store, "K01", t["day0"]["K01"], "2.35", visit="W8")   # after week 4
    _meld_labs(store, "K02", t["day0"]["K02"], "2.35")
    _meld_labs(store, "K05", t["day0"]["K05"], "2.35")               # the 5th treated
    st = rules()["SR-MELD"]
    assert not st.triggered and st.details["cohort"] == ["K01", "K02", "K03", "K04"]
    assert st.details["qualifying"] == ["K02"]


def test_store_scores_equal_the_analysis_dataset(trial: Any, store: Any) -> None:
    """The stopping rules read MELD computed by the store as the exported dataset has it."""
    from hepatrial.ingest.export import dataset
    from hepatrial.trials import selectors

    _meld_labs(store, "K01", trial["day0"]["K01"], "2.35")
    mine = selectors.safety_labs_frame(["meld_kamath2001", "inr"])
    ds = dataset()
    ds = ds[ds["analyte"].isin(["meld_kamath2001", "inr"])]
    assert mine[["participant_id", "visit", "analyte"]].values.tolist() == ds[[
        "participant_id", "visit", "analyte"]].values.tolist()
    assert mine["value"].tolist() == ds["value"].tolist()
    assert mine["date"].tolist() == [DAY0, DAY0, DAY0 + 28 * ONE, DAY0 + 28 * ONE]


# ------------------------------------------------------------------ SR-SENTINEL
@pytest.mark.parametrize(("days_ago", "review", "paused"), [
    (13, True, True), (14, True, False), (14, False, True), (30, False, True)])
def test_sentinel_interval_and_review(store: Any, settings: Any, days_ago: int, review: bool,
                                      paused: bool) -> None:  # fmt: skip
    """K01 dosed ``days_ago`` days ago (today in the trial's time zone); K02 enrolled."""
    from zoneinfo import ZoneInfo

    from hepatrial.trials.services import safety

    fast_passwords(settings)
    today = dt.datetime.now(ZoneInfo("Asia/Tehran")).date()
    t = safety_trial(store, 0)
    enrol(store, "K01", day0=today - days_ago * ONE)
    enrol(store, "K02", day0=today - 2 * ONE)
    dose(store, "K01", today - days_ago * ONE, "portal_vein")
    if review:
        safety.resume_stopping_rule("SR-SENTINEL", decision="K01's safety data reviewed",
                                    user="dsmb", password=PASSWORD)  # fmt: skip
    p = safety.dosing_pause("K02")
    assert (p is not None and "SR-SENTINEL" in p.rule) is paused
    if paused:
        assert ("may be dosed from" in p.reason) is (days_ago < 14)
        assert ("no review recorded since K01's dose" in p.reason) is (not review)
    assert safety.enrolment_pause() is None          # the sentinel gates dosing only
    assert safety.dosing_pause("K01") is None        # K01's next dose is not the next patient
    assert t["users"]["dsmb"].username == "dsmb"


# ------------------------------------------------------------------ SR-BAYES
@pytest.mark.parametrize(("n", "with_sae", "expected"), [
    (3, ["K01", "K02"], True),     # 2 of 3: P(rate > 0.2) > 0.8
    (4, ["K01", "K02"], False),    # 2 of 4: below the boundary (3 of 4-7)
])
def test_bayesian_related_sae_rate(store: Any, settings: Any, n: int, with_sae: list[str],
                                   expected: bool) -> None:  # fmt: skip
    fast_passwords(settings)
    t = safety_trial(store, n)
    for pid in with_sae:
        ae(pid, "Hepatic failure", 3, t["day0"][pid] + 3 * ONE, serious=True, prod="possible")
    st = rules()["SR-BAYES"]
    assert st.triggered is expected
    assert (st.details["x"], st.details["n"]) == (len(with_sae), n)
    assert (st.details["posterior"] > 0.8) is expected


# ------------------------------------------------------------------ latch, resume, gate
def test_a_pause_is_latched_until_a_signed_dsmb_resume(
        trial: Any, django_capture_on_commit_callbacks: Any) -> None:  # fmt: skip
    from django.core import mail

    from hepatrial.errors import AuthenticationFailed, PermissionDenied
    from hepatrial.trials import audit
    from hepatrial.trials.models.safety import SafetyNotification, StoppingRuleState
    from hepatrial.trials.services import safety
    from hepatrial.trials.validators import RuleViolation

    with django_capture_on_commit_callbacks(execute=True):
        a = ae("K02", "Infusion related reaction", 3, trial["day0"]["K02"], prod="probable")
    state = StoppingRuleState.objects.get(rule_id="SR-INFUSION")
    assert state.paused and state.history.count() == 1
    n = SafetyNotification.objects.get(event="stopping_rule_triggered")
    assert n.status == "sent" and n.rule_id == "SR-INFUSION"
    assert n.recipients == {"investigator": ["inv@site.example"],
                            "coordinator": ["coord@site.example"],
                            "sponsor": ["pv@sponsor.example"], "dsmb": ["chair@dsmb.example"]}
    assert [m.subject for m in mail.outbox] == [
        "[hepatrial] Stopping rule SR-INFUSION pauses enrolment and dosing"]
    assert "Only a signed DSMB decision resumes it" in mail.outbox[0].body
    # a correction of the data does not lift the pause: only the DSMB does
    safety.update_adverse_event(a, grade=2, reason="re-graded: no hospitalisation")
    assert rules()["SR-INFUSION"].triggered is False
    assert pausing() == ("SR-INFUSION", "SR-SENTINEL")
    p = safety.dosing_pause("K01")
    assert p is not None and p.rule == "SR-INFUSION"
    assert "paused until a signed DSMB decision resumes it" in p.reason
    assert safety.enrolment_pause().rule == "SR-INFUSION"
    # who may resume: a DSMB member with the password
    with pytest.raises(PermissionDenied, match="only dsmb may"):
        safety.resume_stopping_rule("SR-INFUSION", decision="x", user="inv",
                                    password=PASSWORD)  # fmt: skip
    with pytest.raises(PermissionDenied, match="the system account cannot sign"):
        safety.resume_stopping_rule("SR-INFUSION", decision="x", user=None, password=None)
    with pytest.raises(AuthenticationFailed, match="1 of 5"):
        safety.resume_stopping_rule("SR-INFUSION", decision="x", user="dsmb", password="no")
    with pytest.raises(RuleViolation, match="reason: is required"):
        safety.resume_stopping_rule("SR-INFUSION", decision=" ", user="dsmb",
                                    password=PASSWORD)  # fmt: skip
    with pytest.raises(RuleViolation, match="SR-PORTAL does not pause enrolment or dosing"):
        safety.resume_stopping_rule("SR-PORTAL", decision="x", user="dsmb", password=PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        d = safety.resume_stopping_rule(
            "SR-INFUSION", decision="grade 3 reaction re-graded 2; no safety concern",
            user="dsmb", password=PASSWORD)
    assert (d.decision, d.printed_name, d.signer_role, d.meaning) == (
        "resume", "Dr Dsmb", "dsmb", "DSMB decision on SR-INFUSION: resume enrolment and dosing")
    assert d.manifest[0][:2] == ["trials.stoppingrulestate", state.pk]
    assert d.rule_status["latched"] is True and d.rule_status["triggered"] is False
    assert pausing() == ("SR-SENTINEL",)
    assert safety.dosing_pause("K01") is None and safety.enrolment_pause() is None
    assert mail.outbox[-1].subject == "[hepatrial] Stopping rule SR-INFUSION resumed by the DSMB"
    assert sorted(mail.outbox[-1].to) == ["coord@site.example", "inv@site.example",
                                          "pv@sponsor.example"]
    # new evidence after the resume pauses again (and is notified again)
    with django_capture_on_commit_callbacks(execute=True):
        ae("K01", "Anaphylaxis", 3, DAY0, prod="possible")
    assert "SR-INFUSION" in pausing()
    assert SafetyNotification.objects.filter(event="stopping_rule_triggered",
                                             rule_id="SR-INFUSION").count() == 2
    assert audit.verify() == []


def test_terminate_pauses_for_good(trial: Any) -> None:
    from hepatrial.trials.services import safety
    from hepatrial.trials.validators import RuleViolation

    ae("K01", "Portal vein thrombosis", 4, DAY0 + 5 * ONE)
    d = safety.record_dsmb_decision(rule_id="SR-PORTAL", decision="terminate",
                                    reason="two thromboses: portal route abandoned",
                                    user="dsmb", password=PASSWORD)  # fmt: skip
    assert "SR-PORTAL" in pausing()
    with pytest.raises(RuleViolation, match=f"the DSMB terminated on SR-PORTAL \\(DSMB-{d.pk}\\)"):
        safety.resume_stopping_rule("SR-PORTAL", decision="x", user="dsmb", password=PASSWORD)


def test_the_dosing_gate_refuses_during_a_pause_and_allows_after_the_signed_resume(
        store: Any, settings: Any) -> None:  # fmt: skip
    """Through ``services.record_administration`` (the product's dosing gate; the product
    helper's automatic sentinel review is off: the DSMB's decisions here are the only ones)."""
    from hepatrial.trials.services import safety
    from tests.store._product import administer, ready_batch

    fast_passwords(settings)
    safety_trial(store, 0)
    enrol(store, "K01", day0=DAY0)
    enrol(store, "K02", day0=DAY0 + 20 * ONE)
    ready_batch(store, "B-K01", "K01", DAY0)
    administer(store, "K01", "B-K01", DAY0, route="portal_vein")
    ae("K01", "Portal vein thrombosis", 3, DAY0 + 9 * ONE, serious=True, proc="probable",
       procedure="portal_vein_injection")
    ready_batch(store, "B-K02", "K02", DAY0 + 20 * ONE)
    with pytest.raises(store.StoreError) as e:
        administer(store, "K02", "B-K02", DAY0 + 20 * ONE, route="peripheral_vein",
                   review=False)
    msg = str(e.value)
    assert "dosing_not_paused" in msg
    for rule in ("SR-DEATH-SAE", "SR-PORTAL", "SR-SENTINEL"):
        assert rule in msg
    for rule in ("SR-DEATH-SAE", "SR-PORTAL"):
        safety.resume_stopping_rule(rule, decision="PVT treated; portal route kept with "
                                    "Doppler at day 7", user="dsmb", password=PASSWORD)
    with pytest.raises(store.StoreError, match="SR-SENTINEL"):  # K01's review is missing
        administer(store, "K02", "B-K02", DAY0 + 20 * ONE, route="peripheral_vein",
                   review=False)
    # the review counts when it is dated between K01's dose and K02's (not today)
    safety.resume_stopping_rule("SR-SENTINEL", decision="K01's safety data reviewed",
                                user="dsmb", password=PASSWORD,
                                at=dt.datetime.combine(DAY0 + 19 * ONE, dt.time(12),
                                                       dt.UTC))  # fmt: skip
    a = administer(store, "K02", "B-K02", DAY0 + 20 * ONE, route="peripheral_vein",
                   review=False)  # no review recorded by the helper: the one above counts
    assert (a.participant.study_id, a.route) == ("K02", "peripheral_vein")


def test_a_death_pauses_by_itself_and_enrolment_is_refused_during_the_pause(
        trial: Any, store: Any) -> None:  # fmt: skip
    """``change_status(died)`` evaluates the rules; ``enrol_participant`` asks
    ``enrolment_pause`` (services/participants.py)."""
    from hepatrial.trials.models.safety import StoppingRuleState
    from hepatrial.trials.services import safety
    from hepatrial.trials.validators import RuleViolation
    from tests.store.conftest import ELIGIBLE

    store.change_status(participant="K02", status="died", date=DAY0 + 40 * ONE,
                        reason="variceal bleeding")  # fmt: skip
    assert StoppingRuleState.objects.get(rule_id="SR-DEATH-SAE").paused
    d0 = DAY0 + 60 * ONE
    store.screen_participant(study_id="K03", site="S01", sex="F", year_of_birth=1970,
                             etiology="HCV", screening_date=d0 - 14 * ONE,
                             screening_data=ELIGIBLE)  # fmt: skip
    store.record_consent(participant="K03", version="1.0", date=d0 - 14 * ONE)
    store.assess_eligibility(participant="K03")
    with pytest.raises(RuleViolation) as e:
        store.enrol_participant(participant="K03", enrolment_date=d0)
    assert e.value.by_field() == {"enrolment": [
        "enrolment is paused by stopping rule SR-DEATH-SAE: Any death, or any serious adverse "
        "event at least possibly related to the cell product or to a trial procedure (death "
        "of K02 on 2008-02-29)"]}
    safety.resume_stopping_rule("SR-DEATH-SAE", decision="death from variceal bleeding, "
                                "unrelated", user="dsmb", password=PASSWORD)  # fmt: skip
    assert store.enrol_participant(participant="K03", enrolment_date=d0).status == "enrolled"
