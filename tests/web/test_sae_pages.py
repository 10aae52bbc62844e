"""The eCRF's SAE chain pages (issue 12, web/sae.py): the investigator submits the report the
clock asks for next and the sponsor assesses causality and expectedness, each step signed
with the store's e-signature (password re-entered, meaning chosen) through
``services.safety.report_sae`` / ``assess_sae``; a refusal writes nothing and keeps what was
typed; role and site are checked on the server. Real store (``tests/web/conftest.py``; the
safety accounts of ``tests/store/_safety.py``: ``inv``/``coord`` of S01, ``sponsor``), the
Django test client.

The clocks are the protocol's (kharaziha2009: initial report 24 h after the site became aware,
then follow-ups; a SUSAR not fatal or life-threatening: the 15-day report).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
from django.utils import timezone

from tests.store._safety import PASSWORD, accounts, fast_passwords
from tests.web.conftest import today

H = dt.timedelta(hours=1)
REPORT_MEANING = "I submit this serious adverse event report to the sponsor"
ASSESS_MEANING = ("I sign the sponsor's causality and expectedness assessment of this serious "
                  "adverse event")


@pytest.fixture
def users(world: Any, settings: Any) -> dict[str, Any]:
    """The safety accounts (password :data:`PASSWORD`, MD5 hashing: fast)."""
    fast_passwords(settings)
    return accounts(world.services)


def sae(participant: str = "A1", hours_ago: float = 2) -> Any:
    """A serious adverse event (Ascites grade 3, hospitalisation, not related according to the
    investigator) the site became aware of ``hours_ago`` hours ago (to the minute)."""
    from hepatrial.trials.services import safety

    aware = (timezone.now() - hours_ago * H).replace(second=0, microsecond=0)
    return safety.record_adverse_event(
        participant=participant, term="Ascites", grade=3,
        onset_date=today() - dt.timedelta(days=1), serious=True,
        seriousness_criteria=["hospitalisation"], relatedness_product="not_related",
        relatedness_procedure="not_related", action_taken="not_applicable",
        outcome="not_recovered", aware_at=aware)


def _page(r: Any) -> str:
    return html.unescape(r.content.decode())


def _url(study_id: str, pk: int, step: str) -> str:
    return f"/participants/{study_id}/adverse-events/{pk}/{step}/"


def field_errors(r: Any, name: str) -> list[str]:
    """The messages shown on one form field (its ``.field`` block) of a response."""
    for block in re.split(r'(?=<(?:div|fieldset) class="field)', r.content.decode())[1:]:
        if f'name="{name}"' in block:
            return [html.unescape(m) for m in
                    re.findall(r'<span class="error">([^<]*)</span>', block)]
    raise AssertionError(f"no field {name!r} on the page")


def _row(page: str, pk: int) -> str:
    m = re.search(rf'<tr data-ae="{pk}".*?</tr>', page, re.S)
    assert m is not None
    return m.group(0)


def _clock(page: str) -> list[tuple[str, str]]:
    """(status, text) of each report owed as a page lists it."""
    return [(s, " ".join(re.sub(r"<[^>]+>", " ", t).split())) for s, t in re.findall(
        r'<li class="sae-report" data-status="([a-z]+)">(.*?)</li>', page, re.S)]


def _failed(user: Any) -> int:
    from hepatrial.trials.models import UserProfile

    return int(UserProfile.objects.get(user=user).failed_signatures)


def _tehran(t: dt.datetime) -> str:
    from zoneinfo import ZoneInfo

    return f"{t.astimezone(ZoneInfo('Asia/Tehran')):%Y-%m-%d %H:%M} Asia/Tehran"


def _report_form(**over: Any) -> dict[str, Any]:
    return {"kind": "initial", "narrative": "Admitted with tense ascites; paracentesis 4 L.",
            "submitted": "", "time_zone": "", "fold": "", "meaning": REPORT_MEANING,
            "password": PASSWORD, **over}


# ---------------------------------------------------------------------- the SAE report
def test_submit_the_initial_report_through_the_page(world: Any, login: Any,
                                                    users: dict[str, Any]) -> None:
    from hepatrial.trials.models.safety import SAEReport

    ae = sae(hours_ago=2)
    c = login(users["inv"])
    listing = _page(c.get("/participants/A1/adverse-events/"))
    row = _row(listing, ae.pk)
    assert f'href="{_url("A1", ae.pk, "report")}"' in row and "Submit report" in row
    assert "Assess" not in row  # the investigator does not assess as the sponsor
    deadline = ae.aware_at + 24 * H
    [(status, text)] = _clock(row)
    assert status == "pending" and text.startswith(
        f"pending initial report due {_tehran(deadline)}")
    assert re.search(r"· 2[12] h \d+ min left$", text), text
    page = _page(c.get(_url("A1", ae.pk, "report")))
    assert "next: initial report" in page
    assert '<option value="initial" selected>' in page
    assert f'value="{REPORT_MEANING}" checked' in page and "Password of inv" in page
    assert _clock(page)[0][0] == "pending" and f"due {_tehran(deadline)}" in _clock(page)[0][1]

    r = c.post(_url("A1", ae.pk, "report"), _report_form())
    assert r.status_code == 302 and r["Location"] == "/participants/A1/adverse-events/"
    rep = SAEReport.objects.get()
    assert (rep.adverse_event_id, rep.kind, rep.narrative, rep.final) == (
        ae.pk, "initial", "Admitted with tense ascites; paracentesis 4 L.", False)
    assert (rep.signer.username, rep.printed_name, rep.signer_role, rep.meaning) == (
        "inv", "Dr Inv", "investigator", REPORT_MEANING)
    assert (rep.deadline, rep.on_time) == (deadline, True)
    assert timezone.now() - rep.submitted_at < dt.timedelta(minutes=1)
    assert [m[:2] for m in rep.manifest] == [["trials.adverseevent", ae.pk]]
    assert _failed(users["inv"]) == 0

    listing = _page(c.get("/participants/A1/adverse-events/"))
    assert (f"initial report of AE-{ae.pk} signed by Dr Inv ({REPORT_MEANING}) at "
            f"{rep.signed_at:%Y-%m-%d %H:%M} UTC, due {_tehran(deadline)}.") in listing
    row = _row(listing, ae.pk)
    owed = _clock(row)
    assert [s for s, _t in owed] == ["submitted", "pending"]
    assert owed[1][1].startswith("pending follow-up report due ")
    assert f"submitted: initial report {_tehran(rep.submitted_at)} by Dr Inv" in \
        " ".join(re.sub(r"<[^>]+>", " ", row).split())
    # the page now asks for the follow-up
    page = _page(c.get(_url("A1", ae.pk, "report")))
    assert "next: follow-up report" in page
    assert '<option value="initial"' not in page


def test_a_wrong_password_is_refused_and_nothing_written(world: Any, login: Any,
                                                         users: dict[str, Any]) -> None:
    from hepatrial.trials.models import AdverseEvent
    from hepatrial.trials.models.safety import SAEReport

    ae = sae()
    before = (AdverseEvent.history.count(), list(AdverseEvent.objects.values_list(
        "pk", "relatedness_product", "outcome")))
    c = login(users["inv"])
    url = _url("A1", ae.pk, "report")
    narrative = "Paracentesis <4 L> & albumin"
    r = c.post(url, _report_form(narrative=narrative, password="not-the-password"))
    assert r.status_code == 400
    assert field_errors(r, "password") == [
        "sign: wrong password for 'inv' (1 of 5 before the account is deactivated)"]
    assert f">{html.escape(narrative)}</textarea>" in r.content.decode()  # kept as typed
    assert 'value="not-the-password"' not in r.content.decode()
    assert not SAEReport.objects.exists() and _failed(users["inv"]) == 1
    # an empty password or no meaning: refused on the page, not counted as an attempt
    r = c.post(url, _report_form(password="", meaning="I agree"))
    assert r.status_code == 400
    assert field_errors(r, "password") == [
        "enter your password to sign (it is checked again for every signature)"]
    assert field_errors(r, "meaning") == ["choose the meaning of your signature"]
    assert _failed(users["inv"]) == 1
    # the store's rule, on the field it names: no follow-up before the initial report
    r = c.post(url, _report_form(kind="follow_up", narrative=narrative))
    assert r.status_code == 400
    assert field_errors(r, "kind") == [
        "a follow-up comes after the initial report (make the initial report first)"]
    assert f">{html.escape(narrative)}</textarea>" in r.content.decode()
    # a submission time in the future, on the submission field
    later = (timezone.now() + 3 * H).astimezone(dt.UTC)
    r = c.post(url, _report_form(submitted=f"{later:%Y-%m-%dT%H:%M}", time_zone="UTC"))
    assert r.status_code == 400
    [msg] = field_errors(r, "submitted")
    assert msg.endswith("is in the future") and f'value="{later:%Y-%m-%dT%H:%M}"' in \
        r.content.decode()
    assert not SAEReport.objects.exists()
    assert (AdverseEvent.history.count(), list(AdverseEvent.objects.values_list(
        "pk", "relatedness_product", "outcome"))) == before


def test_a_non_serious_event_has_no_report_form(world: Any, login: Any,
                                                users: dict[str, Any]) -> None:
    from hepatrial.trials.models.safety import SAEReport
    from hepatrial.trials.services import safety

    ae = safety.record_adverse_event(
        participant="A1", term="Fatigue", grade=1, onset_date=world.day0,
        relatedness_product="not_related", relatedness_procedure="not_related",
        action_taken="none", outcome="not_recovered")
    c = login(users["inv"])
    assert "Submit report" not in _row(_page(c.get("/participants/A1/adverse-events/")),
                                       ae.pk)
    page = _page(c.get(_url("A1", ae.pk, "report")))
    assert 'id="not-serious"' in page and 'id="sae-report-form"' not in page
    r = c.post(_url("A1", ae.pk, "report"), _report_form())
    assert r.status_code == 400
    assert (f"adverse event AE-{ae.pk} SAE report adverse_event: is not serious: only a "
            "serious adverse event has SAE reports") in _page(r)
    assert not SAEReport.objects.exists()


def test_a_coordinator_gets_403(world: Any, login: Any, users: dict[str, Any]) -> None:
    from hepatrial.trials.models.safety import SAEAssessment, SAEReport

    ae = sae()
    c = login(users["coord"])
    row = _row(_page(c.get("/participants/A1/adverse-events/")), ae.pk)
    assert "Submit report" not in row and "Assess" not in row
    assert c.get(_url("A1", ae.pk, "report")).status_code == 403
    r = c.post(_url("A1", ae.pk, "report"), _report_form())
    assert r.status_code == 403
    assert c.post(_url("A1", ae.pk, "assess"), {"password": PASSWORD}).status_code == 403
    # the investigator may not sign the sponsor's assessment either
    assert login(users["inv"]).get(_url("A1", ae.pk, "assess")).status_code == 403
    assert not SAEReport.objects.exists() and not SAEAssessment.objects.exists()
    assert _failed(users["coord"]) == 0


def test_another_sites_event_does_not_exist(world: Any, login: Any,
                                            users: dict[str, Any]) -> None:
    from hepatrial.trials.models.safety import SAEReport

    other = sae("B1")
    own = sae("A1")
    c = login(users["inv"])
    assert c.get(_url("B1", other.pk, "report")).status_code == 404
    assert c.post(_url("B1", other.pk, "report"), _report_form()).status_code == 404
    # another participant's event under one's own participant: 404 as well
    assert c.post(_url("A1", other.pk, "report"), _report_form()).status_code == 404
    assert login(users["sponsor"]).get(_url("A1", other.pk, "assess")).status_code == 404
    assert not SAEReport.objects.exists() and _failed(users["inv"]) == 0
    assert login(users["inv"]).get(_url("A1", own.pk, "report")).status_code == 200


# ---------------------------------------------------------------------- the assessment
def test_the_sponsor_assessment_makes_a_related_unexpected_sae_a_susar(
        world: Any, login: Any, users: dict[str, Any]) -> None:
    from hepatrial.trials import selectors, services
    from hepatrial.trials.models.safety import SAEAssessment

    ae = sae(hours_ago=5)
    c = login(users["sponsor"])
    listing = _page(c.get("/participants/A1/adverse-events/"))
    row = _row(listing, ae.pk)
    assert f'href="{_url("A1", ae.pk, "assess")}"' in row and "Submit report" not in row
    assert "SUSAR" not in row
    url = _url("A1", ae.pk, "assess")
    page = _page(c.get(url))
    assert "Investigator's causality: product not_related, procedure not_related" in page
    assert f'value="{ASSESS_MEANING}" checked' in page
    form = {"relatedness_product": "probable", "relatedness_procedure": "not_related",
            "procedure": "", "expectedness": "", "comment": "Temporal association with the "
            "infusion; no alternative cause.", "meaning": ASSESS_MEANING,
            "password": PASSWORD}
    # suspected of the product: the sponsor must state the expectedness (the store's rule)
    r = c.post(url, form)
    assert r.status_code == 400
    assert field_errors(r, "expectedness") == [
        "the event is suspected of the product: the sponsor states whether it is expected "
        "(against the reference safety information)"]
    assert '<option value="probable" selected>' in r.content.decode()
    assert not SAEAssessment.objects.exists()
    r = c.post(url, {**form, "expectedness": "unexpected", "password": "wrong"})
    assert r.status_code == 400 and field_errors(r, "password") == [
        "sign: wrong password for 'sponsor' (1 of 5 before the account is deactivated)"]
    assert not SAEAssessment.objects.exists()

    r = c.post(url, {**form, "expectedness": "unexpected"})
    assert r.status_code == 302 and r["Location"] == "/participants/A1/adverse-events/"
    a = SAEAssessment.objects.get()
    assert (a.adverse_event_id, a.assessor, a.relatedness_product, a.relatedness_procedure,
            a.expectedness, a.susar) == (ae.pk, "sponsor", "probable", "not_related",
                                         "unexpected", True)
    assert (a.signer.username, a.printed_name, a.signer_role, a.meaning) == (
        "sponsor", "Dr Sponsor", "sponsor", ASSESS_MEANING)
    assert a.comment == "Temporal association with the infusion; no alternative cause."

    case = selectors.sae_cases(services.active_protocol().safety, timezone.now(),
                               pks=[ae.pk])[0]
    assert case["susar"] is True and case["fatal_or_life_threatening"] is False
    [susar] = [x for x in case["reports"] if x["kind"] == "susar_15_day"]
    assert dt.timedelta(days=14) < susar["deadline"] - ae.aware_at <= dt.timedelta(days=16)
    listing = _page(c.get("/participants/A1/adverse-events/"))
    assert (f"Sponsor assessment of AE-{ae.pk} signed by Dr Sponsor: product probable, "
            "procedure not_related, expectedness unexpected; SUSAR: the expedited report is "
            "due.") in listing
    row = _row(listing, ae.pk)
    assert '<span class="badge bad">SUSAR</span>' in row
    shown = [t for _s, t in _clock(row) if "SUSAR 15-day report" in t]
    assert shown == [t for _s, t in _clock(row)
                     if t.startswith(f"pending SUSAR 15-day report due "
                                     f"{_tehran(susar['deadline'])}")]
    assert len(shown) == 1
    # the assessment page shows the signed assessment and the SUSAR clock
    page = _page(c.get(url))
    assert 'id="susar"' in page and 'id="last-assessment"' in page
    assert "Signed by Dr Sponsor (sponsor)" in page and f"“{ASSESS_MEANING}”" in page
    assert any("SUSAR 15-day report due " + _tehran(susar["deadline"]) in t
               for _s, t in _clock(page))


def test_an_expected_event_is_not_a_susar(world: Any, login: Any,
                                          users: dict[str, Any]) -> None:
    from hepatrial.trials.models.safety import SAEAssessment

    ae = sae()
    c = login(users["sponsor"])
    r = c.post(_url("A1", ae.pk, "assess"), {
        "relatedness_product": "possible", "relatedness_procedure": "not_related",
        "expectedness": "expected", "comment": "Listed in the RSI at this grade.",
        "meaning": ASSESS_MEANING, "password": PASSWORD})
    assert r.status_code == 302
    a = SAEAssessment.objects.get()
    assert (a.expectedness, a.susar) == ("expected", False)
    row = _row(_page(c.get("/participants/A1/adverse-events/")), ae.pk)
    assert "SUSAR" not in row
