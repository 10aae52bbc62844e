"""The SAE action chain (issue 12): signed reports and causality assessments, their clocks
across time zones and daylight-saving changes (awareness stored in UTC), due and overdue
reports on the worklist, the SUSAR decision with the 7/15-day clocks, the notifications to
the roles the protocol names (Django's e-mail framework, locmem backend; an unreachable SMTP
server is recorded as a failure), and the CIOMS-I form.

The trial's time zone is Asia/Tehran (kharaziha2009: +03:30, +04:30 in summer 2008 from
21 March 00:00 to 21 September 00:00).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store._safety import DAY0, PASSWORD, fast_passwords, safety_trial

ONE = dt.timedelta(days=1)
UTC = dt.UTC


def utc(*a: int) -> dt.datetime:
    return dt.datetime(*a, tzinfo=UTC)


@pytest.fixture
def trial(store: Any, settings: Any) -> dict[str, Any]:
    fast_passwords(settings)
    settings.HEPATRIAL_SAFETY_RECIPIENTS = {"ethics_committee": ["ec@irb.example"],
                                            "competent_authority": ["pv@authority.example"]}
    return safety_trial(store, 2)


def sae(onset: dt.date, aware: str, *, term: str = "Portal vein thrombosis", grade: int = 3,
        criteria: tuple[str, ...] = ("hospitalisation",), prod: str = "probable",
        zone: str | None = None, **kw: Any) -> Any:  # fmt: skip
    from hepatrial.trials.services import safety

    values: dict[str, Any] = {
        "participant": "K01", "term": term, "grade": grade, "onset_date": onset,
        "serious": True, "seriousness_criteria": list(criteria), "relatedness_product": prod,
        "relatedness_procedure": "not_related", "action_taken": "not_applicable",
        "outcome": "not_recovered", "aware_local": aware, "aware_time_zone": zone, **kw}
    return safety.record_adverse_event(**values)


def report(ae: Any, kind: str, submitted: str | None, **kw: Any) -> Any:
    from hepatrial.trials.services import safety

    who = "sponsor" if kind.startswith("susar") else "inv"
    return safety.report_sae(ae, kind=kind, narrative=f"{kind} narrative", user=who,
                             password=PASSWORD, submitted=submitted, **kw)


def dues(ae: Any) -> dict[str, tuple[Any, ...]]:
    """kind -> (deadline UTC, due date in the trial's zone, status) of the reports owed."""
    from hepatrial.trials.services import safety

    case = next(c for c in safety.sae_worklist() if c["adverse_event"].pk == ae.pk)
    return {r["kind"]: (r["deadline"], r["due_date"], r["status"]) for r in case["reports"]}


# ------------------------------------------------------------------ clocks
def test_initial_report_24_elapsed_hours_and_on_time_at_the_deadline(trial: Any) -> None:
    a = sae(DAY0 + 9 * ONE, "2008-01-29 10:00")
    assert a.aware_at == utc(2008, 1, 29, 6, 30)
    assert dues(a)["initial"] == (utc(2008, 1, 30, 6, 30), dt.date(2008, 1, 30), "overdue")
    r = report(a, "initial", "2008-01-30 10:00")          # exactly the deadline: on time
    assert (r.submitted_at, r.deadline, r.on_time) == (utc(2008, 1, 30, 6, 30),
                                                       utc(2008, 1, 30, 6, 30), True)
    assert (r.submitted_local, r.time_zone) == ("2008-01-30 10:00", "Asia/Tehran")
    b = sae(DAY0 + 9 * ONE, "2008-01-29 10:00", term="Hepatic hemorrhage")
    late = report(b, "initial", "2008-01-30 10:01")       # one minute late
    assert late.on_time is False
    assert dues(b)["initial"][2] == "late"


def test_awareness_in_another_zone_and_the_clock_change_nights(trial: Any) -> None:
    # London, the night clocks went forward (30 March 2008 01:00 GMT -> 02:00 BST)
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation, match="does not exist in Europe/London"):
        sae(DAY0 + 60 * ONE, "2008-03-30 01:30", zone="Europe/London")
    a = sae(DAY0 + 60 * ONE, "2008-03-30 00:30", zone="Europe/London")   # GMT
    assert a.aware_at == utc(2008, 3, 30, 0, 30)
    b = sae(DAY0 + 60 * ONE, "2008-03-30 02:30", zone="Europe/London", term="Hematoma")  # BST
    assert b.aware_at == utc(2008, 3, 30, 1, 30)
    # 24 elapsed hours (not the wall clock); due dates in the trial's zone (+04:30 then)
    assert dues(a)["initial"][:2] == (utc(2008, 3, 31, 0, 30), dt.date(2008, 3, 31))
    assert dues(b)["initial"][:2] == (utc(2008, 3, 31, 1, 30), dt.date(2008, 3, 31))
    # New York, the night clocks went back (2 November 2008 02:00 EDT -> 01:00 EST)
    with pytest.raises(RuleViolation, match="happened twice in America/New_York"):
        sae(DAY0 + 280 * ONE, "2008-11-02 01:30", zone="America/New_York")
    first = sae(DAY0 + 280 * ONE, "2008-11-02 01:30", zone="America/New_York", aware_fold=0)
    second = sae(DAY0 + 280 * ONE, "2008-11-02 01:30", zone="America/New_York",
                 aware_fold=1, term="Hematoma")
    assert (first.aware_at, second.aware_at) == (utc(2008, 11, 2, 5, 30), utc(2008, 11, 2, 6, 30))
    assert dues(first)["initial"][0] == utc(2008, 11, 3, 5, 30)


def test_susar_7_day_clock_over_tehrans_clock_change(trial: Any) -> None:
    """A fatal or life-threatening SUSAR: 7 calendar days from the sponsor's awareness (the
    initial report), counted in the trial's zone; here they end after the clocks went back
    (21 September 2008 00:00 +04:30 -> 23:00 +03:30)."""
    a = sae(DAY0 + 230 * ONE, "2008-09-14 21:00", criteria=("life_threatening",), grade=4)
    assert (a.expectedness_product, a.aware_at) == ("unexpected", utc(2008, 9, 14, 16, 30))
    assert set(dues(a)) == {"initial", "susar_7_day"}
    report(a, "initial", "2008-09-14 23:00")                # 18:30 UTC
    d = dues(a)
    assert d["susar_7_day"][:2] == (utc(2008, 9, 21, 20, 29, 59, 999999), dt.date(2008, 9, 21))
    assert d["follow_up"][:2] == (utc(2008, 10, 14, 20, 29, 59, 999999), dt.date(2008, 10, 14))
    r = report(a, "susar_7_day", "2008-09-21 23:59")
    assert (r.on_time, r.signer_role) == (True, "sponsor")
    assert dues(a)["susar_follow_up"][:2] == (utc(2008, 9, 29, 20, 29, 59, 999999),
                                              dt.date(2008, 9, 29))  # 8 more days
    report(a, "susar_follow_up", "2008-09-25 09:00")
    assert dues(a)["susar_follow_up"][2] == "submitted"


def test_susar_15_day_and_which_expedited_report(trial: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    a = sae(DAY0 + 9 * ONE, "2008-01-29 10:00")             # hospitalisation: not fatal/LT
    report(a, "initial", "2008-01-29 18:00")
    assert dues(a)["susar_15_day"][:2] == (utc(2008, 2, 13, 20, 29, 59, 999999),
                                           dt.date(2008, 2, 13))
    with pytest.raises(RuleViolation, match="the SUSAR is not fatal or life-threatening: its "
                       "expedited report is susar_15_day"):
        report(a, "susar_7_day", "2008-02-01 09:00")
    report(a, "susar_15_day", "2008-02-01 09:00")
    with pytest.raises(RuleViolation, match=r"the expedited report \(susar_15_day\) was already"):
        report(a, "susar_15_day", "2008-02-02 09:00")
    with pytest.raises(RuleViolation, match="SUSAR follow-up comes after the 7-day"):
        report(a, "susar_follow_up", "2008-02-02 09:00")
    # an expected reaction is no SUSAR: fever grade 2 of the product (RSI up to grade 2)
    f = sae(DAY0, "2008-01-20 22:00", term="Fever", grade=2)
    assert f.expectedness_product == "expected"
    with pytest.raises(RuleViolation, match="not a SUSAR"):
        report(f, "susar_15_day", "2008-01-21 09:00")


def test_follow_ups_until_the_final_one(trial: Any) -> None:
    from hepatrial.trials.services import safety
    from hepatrial.trials.validators import RuleViolation

    a = sae(DAY0 + 9 * ONE, "2008-01-29 10:00", prod="unlikely")   # no SUSAR
    with pytest.raises(RuleViolation, match="a follow-up comes after the initial report"):
        report(a, "follow_up", "2008-01-30 09:00")
    report(a, "initial", "2008-01-29 12:00")
    assert dues(a)["follow_up"][1] == dt.date(2008, 2, 28)        # 30 days after the last
    report(a, "follow_up", "2008-02-20 12:00")
    assert dues(a)["follow_up"][1] == dt.date(2008, 3, 21)
    with pytest.raises(RuleViolation, match="the event's outcome is 'not_recovered': a final"):
        report(a, "follow_up", "2008-03-01 12:00", final=True)
    safety.update_adverse_event(a, outcome="recovered", resolution_date=DAY0 + 40 * ONE,
                                reason="resolved on anticoagulation")  # fmt: skip
    report(a, "follow_up", "2008-03-02 12:00", final=True)
    assert "follow_up" not in dues(a)                            # closed: nothing more due
    with pytest.raises(RuleViolation, match="the final follow-up was already made"):
        report(a, "follow_up", "2008-03-03 12:00")


# ------------------------------------------------------------------ signatures, causality
def test_reports_are_signed_by_the_right_people(trial: Any, store: Any) -> None:
    from hepatrial.errors import AuthenticationFailed, PermissionDenied
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger, UserProfile
    from hepatrial.trials.services import safety
    from hepatrial.trials.validators import RuleViolation

    store.create_site(code="S02", name="second")
    store.create_user(username="inv2", password=PASSWORD, site_codes=["S02"],
                      role="investigator")
    a = sae(DAY0 + 9 * ONE, "2008-01-29 10:00")
    kw = {"kind": "initial", "narrative": "PVT day 9", "submitted": "2008-01-29 18:00"}
    with pytest.raises(PermissionDenied, match="only investigator may"):
        safety.report_sae(a, user="coord", password=PASSWORD, **kw)
    with pytest.raises(PermissionDenied, match="not a member of site S01"):
        safety.report_sae(a, user="inv2", password=PASSWORD, **kw)
    with pytest.raises(PermissionDenied, match="the system account cannot sign"):
        safety.report_sae(a, user=None, password=None, **kw)
    with pytest.raises(PermissionDenied, match="only sponsor may"):
        safety.report_sae(a, user="inv", password=PASSWORD, kind="susar_15_day",
                          narrative="x", submitted="2008-02-01 10:00")
    with pytest.raises(AuthenticationFailed, match="1 of 5"):
        safety.report_sae(a, user="inv", password="wrong", **kw)
    assert UserProfile.objects.get(user__username="inv").failed_signatures == 1
    with pytest.raises(RuleViolation, match="narrative: is required"):
        safety.report_sae(a, user="inv", password=PASSWORD, **{**kw, "narrative": " "})
    r = safety.report_sae(a, user="inv", password=PASSWORD, **kw)
    assert (r.printed_name, r.signer_role, r.meaning) == (
        "Dr Inv", "investigator", "I submit this initial SAE report")
    last = AuditLedger.objects.filter(history_model="trials.historicaladverseevent",
                                      object_pk=str(a.pk)).order_by("-seq").first()
    assert r.manifest == [["trials.adverseevent", a.pk, last.seq, last.digest]]
    assert len(r.manifest_digest) == 64 and r.ledger_seq >= last.seq
    # not serious: no SAE report
    ns = safety.record_adverse_event(participant="K01", term="Fever", grade=1,
                                     onset_date=DAY0, relatedness_product="possible",
                                     relatedness_procedure="not_related",
                                     action_taken="none")  # fmt: skip
    with pytest.raises(RuleViolation, match="is not serious: only a serious adverse event"):
        safety.report_sae(ns, user="inv", password=PASSWORD, **kw)
    assert audit.verify() == []


def test_causality_investigator_and_sponsor_and_the_susar_decision(trial: Any) -> None:
    from hepatrial.trials.services import safety
    from hepatrial.trials.validators import RuleViolation

    a = sae(DAY0 + 9 * ONE, "2008-01-29 10:00", prod="unlikely")
    assert dues(a).keys() == {"initial"}                         # not suspected: no SUSAR
    with pytest.raises(RuleViolation, match="expectedness is the sponsor's assessment"):
        safety.assess_sae(a, assessor="investigator", relatedness_product="possible",
                          relatedness_procedure="not_related", expectedness="unexpected",
                          comment="x", user="inv", password=PASSWORD)
    inv = safety.assess_sae(a, assessor="investigator", relatedness_product="possible",
                            relatedness_procedure="probable", procedure="portal_vein_injection",
                            comment="thrombosis 9 days after the portal puncture",
                            user="inv", password=PASSWORD)
    a.refresh_from_db()
    assert (a.relatedness_product, a.relatedness_procedure, a.procedure, a.relatedness) == (
        "possible", "probable", "portal_vein_injection", "probable")
    assert a.history.order_by("-history_id").first().history_change_reason == (
        "investigator causality assessment (signed): thrombosis 9 days after the portal "
        "puncture")
    assert inv.susar is True and set(dues(a)) == {"initial", "susar_15_day"}
    with pytest.raises(RuleViolation, match="the sponsor states whether it is expected"):
        safety.assess_sae(a, assessor="sponsor", relatedness_product="not_related",
                          relatedness_procedure="probable", procedure="portal_vein_injection",
                          comment="x", user="sponsor", password=PASSWORD)
    # the sponsor cannot downgrade the investigator's causality: still a SUSAR
    sp = safety.assess_sae(a, assessor="sponsor", relatedness_product="not_related",
                           relatedness_procedure="probable", procedure="portal_vein_injection",
                           expectedness="unexpected", comment="procedure, not product",
                           user="sponsor", password=PASSWORD)
    assert (sp.susar, sp.signer_role) == (True, "sponsor")
    # the sponsor's expectedness decides: expected -> no SUSAR
    sp2 = safety.assess_sae(a, assessor="sponsor", relatedness_product="possible",
                            relatedness_procedure="probable", procedure="portal_vein_injection",
                            expectedness="expected", comment="RSI v1.1 lists PVT",
                            user="sponsor", password=PASSWORD)
    assert sp2.susar is False and set(dues(a)) == {"initial"}


# ------------------------------------------------------------------ notifications
def test_notifications_to_the_roles_the_protocol_names(
        trial: Any, store: Any, settings: Any,
        django_capture_on_commit_callbacks: Any) -> None:  # fmt: skip
    from django.core import mail

    from hepatrial.trials import audit
    from hepatrial.trials.models.safety import SafetyNotification

    with django_capture_on_commit_callbacks(execute=True):
        a = sae(DAY0 + 9 * ONE, "2008-01-29 10:00")           # serious, SUSAR, overdue
    got = {n.event: n for n in SafetyNotification.objects.order_by("pk")}
    assert set(got) == {"sae", "susar", "report_overdue", "stopping_rule_triggered"}
    assert got["sae"].recipients == {"investigator": ["inv@site.example"],
                                     "sponsor": ["pv@sponsor.example"],
                                     "dsmb": ["chair@dsmb.example"]}
    assert got["susar"].recipients == {
        "investigator": ["inv@site.example"], "sponsor": ["pv@sponsor.example"],
        "dsmb": ["chair@dsmb.example"], "ethics_committee": ["ec@irb.example"],
        "competent_authority": ["pv@authority.example"]}
    assert got["report_overdue"].recipients == {"investigator": ["inv@site.example"],
                                                "data-manager": ["dm@cro.example"]}
    assert all(n.status == "sent" and n.sent_at is not None for n in got.values())
    subjects = sorted(m.subject for m in mail.outbox)
    assert f"[hepatrial] Serious adverse event AE-{a.pk} (K01: Portal vein thrombosis, " \
           "grade 3)" in subjects
    body = next(m.body for m in mail.outbox if m.subject.startswith("[hepatrial] SUSAR"))
    assert "Site aware: 2008-01-29 10:00 Asia/Tehran (2008-01-29 06:30 UTC)" in body
    assert "- initial: due 2008-01-30 10:00 Asia/Tehran (2008-01-30 06:30 UTC): overdue" in body
    assert sorted(next(m.to for m in mail.outbox if "SUSAR" in m.subject)) == [
        "chair@dsmb.example", "ec@irb.example", "inv@site.example", "pv@authority.example",
        "pv@sponsor.example"]
    # each event is notified once: a follow-up write sends nothing new about it
    n = len(mail.outbox)
    with django_capture_on_commit_callbacks(execute=True):
        from hepatrial.trials.services import safety

        safety.update_adverse_event(a, resolution_date=None, outcome="recovering",
                                    reason="improving")  # fmt: skip
    assert len(mail.outbox) == n
    # a death; nobody to write to for an event without addresses; an unreachable server
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    with django_capture_on_commit_callbacks(execute=True):
        store.change_status(participant="K02", status="died", date=DAY0 + 40 * ONE,
                            reason="variceal bleeding")  # fmt: skip
        from hepatrial.trials.services import safety

        safety.refresh_safety_status()
    death = SafetyNotification.objects.get(event="death")
    assert death.status == "failed" and "ConnectionRefusedError" in death.error
    assert death.history.order_by("-history_id").first().history_change_reason.startswith(
        "delivery: failed (ConnectionRefusedError")
    assert audit.verify() == []


def test_no_address_and_no_backend_are_recorded(trial: Any, settings: Any,
                                                django_capture_on_commit_callbacks: Any
                                                ) -> None:  # fmt: skip
    from django.contrib.auth import get_user_model

    from hepatrial.trials.models.safety import SafetyNotification

    for u in get_user_model().objects.exclude(email=""):
        u.email, u._change_reason = "", "no e-mail"
        u.save()
    settings.HEPATRIAL_SAFETY_RECIPIENTS = {}
    settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
    with django_capture_on_commit_callbacks(execute=True):
        sae(DAY0 + 9 * ONE, "2008-01-29 10:00", prod="unlikely")
    n = SafetyNotification.objects.get(event="sae")
    assert (n.status, n.recipients) == ("no_address", {"investigator": [], "sponsor": [],
                                                       "dsmb": []})
    settings.HEPATRIAL_SAFETY_RECIPIENTS = {"sponsor": ["pv@sponsor.example"]}
    with django_capture_on_commit_callbacks(execute=True):
        sae(DAY0 + 10 * ONE, "2008-01-30 10:00", prod="unlikely", term="Hematoma")
    n2 = SafetyNotification.objects.filter(event="sae").order_by("pk").last()
    assert n2.status == "failed" and "no e-mail backend is configured" in n2.error


# ------------------------------------------------------------------ CIOMS-I form
def test_cioms_form_html_and_pdf(trial: Any) -> None:
    from hepatrial.report import sae_form as form
    from hepatrial.trials import selectors
    from hepatrial.trials.services import active_protocol

    a = sae(DAY0 + 9 * ONE, "2008-01-29 10:00", criteria=("hospitalisation",
                                                          "life_threatening"), grade=4)
    report(a, "initial", "2008-01-29 18:00")
    f = form.SaeForm.from_dict(selectors.sae_form_record(a.pk, active_protocol()))
    html = form.render_sae_form_html(f)
    for text in (f"Suspect adverse reaction report — AE-{a.pk}", "☒ Involved or prolonged",
                 "☒ Life threatening", "☐ Patient died", "study id K01 (site S01)",
                 "1960 / 48 years at onset", "10036206 / Hepatobiliary disorders",
                 "4: Life-threatening consequences; urgent intervention indicated",
                 "product: unexpected", "SUSAR</td><td>yes", "initial SAE report",
                 "Dr Inv (investigator)", "expedited SUSAR report, fatal or life-threatening",
                 "Pseudonymised: no patient initials or date of birth"):
        assert text in html, text
    assert html == form.render_sae_form_html(form.SaeForm.from_dict(
        selectors.sae_form_record(a.pk, active_protocol())))          # same data, same bytes
    pdf = form.render_sae_form_pdf(f)
    assert pdf.startswith(b"%PDF-") and pdf == form.render_sae_form_pdf(f)
    with pytest.raises(form.InputError, match="missing due"):
        form.SaeForm.from_dict({k: v for k, v in selectors.sae_form_record(
            a.pk, active_protocol()).items() if k != "due"})
