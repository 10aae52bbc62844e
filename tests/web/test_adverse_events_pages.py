"""The eCRF's adverse-event pages (issue 12): the participant's list with the SAE report clocks,
recording and editing an event through ``services.safety`` (so the store's rules refuse on the
page exactly as on the other paths, nothing written), the reason for a change, a fatal event
making the participant died, sites, locks, the optimistic-concurrency version and the
permission ``enter_data``. Real store (``tests/web/conftest.py``), the Django test client."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest

from tests.store.test_safety_ae import BASE as STORE_BASE
from tests.store.test_safety_ae import CASES
from tests.store.test_safety_ae import DAY0 as STORE_DAY0
from tests.web.conftest import today

ONE = dt.timedelta(days=1)

#: rules of tests/store/test_safety_ae.py CASES driven through the web form: every case of
#: participant K01 (here A1) but the MedDRA code, which the form does not enter (the term is
#: coded by the store), and those whose reason names a date of K01's own history
WEB_CASES = (
    "unknown_term", "grade_the_term_lacks", "other_specify_without_text",
    "specify_on_a_ctcae_term", "grade5_outcome_not_fatal", "grade5_not_serious",
    "fatal_not_grade5", "fatal_without_criterion_death", "fatal_without_date_of_death",
    "serious_without_criteria", "criteria_but_not_serious", "serious_without_awareness",
    "aware_skipped_by_the_clock_change", "aware_at_a_repeated_hour",
    "procedure_relatedness_without_procedure", "onset_in_the_future",
    "recovered_without_resolution_date", "action_taken_missing",
)  # fmt: skip
#: a problem of a value the form does not enter is shown on the field that sets it
ON_FIELD = {"aware_at": "aware_local"}


def _shift(world: Any, value: Any) -> Any:
    """A date of the store tests' trial (day 0 2008-01-20) moved to the web world's (day 0 a
    week ago); far-future dates and the clock-change times (the rule is about that wall
    time) stay."""
    delta = world.day0 - STORE_DAY0
    if isinstance(value, dt.date) and value.year < 2100:
        return value + delta
    return value


def _case(world: Any, name: str) -> tuple[dict[str, Any], str, str]:
    participant, over, field, reason, _paths = CASES[name]
    assert participant == "K01"
    values = {k: _shift(world, v) for k, v in {**STORE_BASE, **over}.items()}
    if "aware_local" in values and name not in ("aware_skipped_by_the_clock_change",
                                                "aware_at_a_repeated_hour"):
        values["aware_local"] = f"{world.day0 + 2 * ONE} 10:00"
    return values, ON_FIELD.get(field, field), reason


def form(values: dict[str, Any]) -> dict[str, Any]:
    """The POST of the page's form for a state (an unticked box is not posted)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if k == "serious":
            if v:
                out[k] = "on"
        elif k == "seriousness_criteria":
            out[k] = list(v or [])
        else:
            out[k] = "" if v is None else str(v)
    return out


def base(world: Any, **over: Any) -> dict[str, Any]:
    """A valid non-serious event of A1 (onset the day after day 0)."""
    return {"term": "Fever", "grade": 2, "serious": False, "seriousness_criteria": [],
            "relatedness_product": "unlikely", "relatedness_procedure": "not_related",
            "procedure": None, "onset_date": world.day0 + ONE, "resolution_date": None,
            "outcome": "not_recovered", "action_taken": "none", "aware_local": None,
            "aware_time_zone": "Asia/Tehran", **over}


def _page(r: Any) -> str:
    return html.unescape(r.content.decode())


def field_errors(r: Any, name: str) -> list[str]:
    """The messages shown on one form field (its ``.field`` block) of a response."""
    for block in re.split(r'(?=<(?:div|fieldset) class="field)', r.content.decode())[1:]:
        if f'name="{name}"' in block:
            return [html.unescape(m) for m in
                    re.findall(r'<span class="error">([^<]*)</span>', block)]
    raise AssertionError(f"no field {name!r} on the page")


def general_errors(r: Any) -> list[str]:
    """The messages shown above the form (of no field)."""
    m = re.search(r'<ul class="errorlist general" id="form-errors">(.*?)</ul>',
                  r.content.decode(), re.S)
    return [html.unescape(x) for x in re.findall(r"<li>(.*?)</li>", m.group(1), re.S)] if m \
        else []


def state() -> tuple[Any, ...]:
    """Everything a refused save must leave as it was: the events, their history, the
    participants' statuses and the audit ledger."""
    from hepatrial.trials.models import AdverseEvent, AuditLedger, Participant

    return (list(AdverseEvent.objects.order_by("pk").values_list(
        "pk", "term", "grade", "outcome", "resolution_date", "serious", "aware_at")),
        AdverseEvent.history.count(), AuditLedger.objects.count(),
        list(Participant.objects.order_by("pk").values_list("study_id", "status",
                                                            "status_date")))


@pytest.fixture
def ae(world: Any) -> Any:
    """A1's adverse event: Fever grade 2, not recovered, recorded by the coordinator."""
    from hepatrial.trials.services import safety

    values = {k: v for k, v in base(world).items() if k != "aware_time_zone"}
    return safety.record_adverse_event(participant="A1", user=world.users["coordinator"],
                                       **values)


def _url(study_id: str, pk: Any = None) -> str:
    tail = "new/" if pk is None else f"{pk}/"
    return f"/participants/{study_id}/adverse-events/{tail}"


LIST = "/participants/A1/adverse-events/"


def _version(page: str) -> str:
    m = re.search(r'name="loaded_version" value="([^"]*)"', page)
    assert m is not None
    return m.group(1)


# ---------------------------------------------------------------------- record
def test_record_an_adverse_event_through_the_page(world: Any, login: Any) -> None:
    from hepatrial.trials.models import AdverseEvent

    c = login("coordinator")
    casebook = c.get("/participants/A1/").content.decode()
    assert f'href="{LIST}"' in casebook
    page = c.get(_url("A1")).content.decode()
    assert 'id="ae-form"' in page and '<option value="Fever">' in page
    assert 'name="loaded_version"' not in page  # a new record has no version to check
    r = c.post(_url("A1"), form(base(world, term="fever", resolution_date=None)))
    assert r.status_code == 302 and r["Location"] == LIST
    ae = AdverseEvent.objects.get(participant__study_id="A1")
    assert (ae.term, ae.grade, ae.meddra_code, ae.soc, ae.ctcae_version) == (
        "Fever", 2, 10016558, "General disorders and administration site conditions", "5.0")
    assert (ae.onset_date, ae.resolution_date, ae.outcome, ae.action_taken) == (
        world.day0 + ONE, None, "not_recovered", "none")
    assert (ae.serious, ae.seriousness_criteria, ae.aware_at) == (False, [], None)
    assert (ae.relatedness_product, ae.relatedness_procedure, ae.relatedness) == (
        "unlikely", "not_related", "unlikely")
    hist = list(ae.history.order_by("history_id"))
    assert [(h.history_type, h.history_user.username, h.history_change_reason)
            for h in hist] == [("+", "u_coordinator", None)]
    listing = _page(c.get(LIST))
    assert f"AE-{ae.pk} Fever grade 2 recorded for A1." in listing
    row = re.search(rf'<tr data-ae="{ae.pk}".*?</tr>', listing, re.S).group(0)
    assert f"<td>AE-{ae.pk}</td>" in row and "Fever" in row
    assert re.search(r'class="ae-grade" title="[^"]*">2 ', row)
    assert 'title=">39.0 - 40.0 degrees C (102.3 - 104.0 degrees F)"' in row
    assert str(world.day0 + ONE) in row and "not recovered/not resolved" in row
    assert "product: unlikely" in row and "procedure: not_related" in row
    assert 'class="ae-serious">no' in row


def test_a_serious_event_shows_its_sae_reports_and_clock(world: Any, login: Any) -> None:
    from django.utils import timezone

    from hepatrial.trials import selectors, services
    from hepatrial.trials.models import AdverseEvent

    c = login("investigator")
    aware = f"{world.day0 + 2 * ONE}T09:15"
    r = c.post(_url("A1"), form(base(world, serious=True, grade=3,
                                     seriousness_criteria=["hospitalisation"],
                                     aware_local=aware)))
    assert r.status_code == 302, _page(r)[:3000]
    ae = AdverseEvent.objects.get(participant__study_id="A1")
    assert (ae.aware_local, ae.aware_time_zone) == (f"{world.day0 + 2 * ONE} 09:15",
                                                     "Asia/Tehran")
    assert ae.aware_at == dt.datetime.combine(world.day0 + 2 * ONE, dt.time(5, 45),
                                              tzinfo=dt.UTC)  # 09:15 Tehran (UTC+3:30)
    case = selectors.sae_cases(services.active_protocol().safety, timezone.now(),
                               pks=[ae.pk])[0]
    initial = next(x for x in case["reports"] if x["kind"] == "initial")
    assert initial["status"] == "overdue"  # 24 h from an awareness days ago
    page = _page(c.get(LIST))
    row = re.search(rf'<tr data-ae="{ae.pk}".*?</tr>', page, re.S).group(0)
    assert "serious</span> hospitalisation" in row
    assert f"{world.day0 + 2 * ONE} 09:15 Asia/Tehran" in row
    shown = re.search(r'<li class="sae-report" data-status="overdue">(.*?)</li>', row, re.S)
    assert shown is not None
    deadline = initial["deadline"].astimezone(dt.timezone(dt.timedelta(hours=3.5)))
    assert "initial report due " + f"{deadline:%Y-%m-%d %H:%M} Asia/Tehran" in shown.group(1)
    assert deadline.replace(tzinfo=None) == dt.datetime.combine(world.day0 + 3 * ONE,
                                                                dt.time(9, 15))
    assert "overdue by " in shown.group(1)


def test_grade5_makes_the_participant_died_as_the_service_does(world: Any, login: Any) -> None:
    from hepatrial.trials.models import AdverseEvent

    c = login("coordinator")
    death = world.day0 + 3 * ONE
    r = c.post(_url("A1"), form(base(
        world, term="Hepatic failure", grade=5, serious=True, seriousness_criteria=["death"],
        outcome="fatal", resolution_date=death, aware_local=f"{death}T08:00")))
    assert r.status_code == 302, _page(r)[:3000]
    ae = AdverseEvent.objects.get(participant__study_id="A1")
    p = world.participant("A1")
    assert (p.status, p.status_date) == ("died", death)
    assert p.status_reason == f"died: adverse event AE-{ae.pk} (Hepatic failure, grade 5)"
    h = p.history.order_by("-history_id").first()
    assert h.history_change_reason == f"died: fatal adverse event AE-{ae.pk} (Hepatic failure)"
    assert h.history_user.username == "u_coordinator"
    page = _page(c.get(LIST))
    assert f"A1 is recorded as died on {death}." in page


# ---------------------------------------------------------------------- the store's rules
@pytest.mark.parametrize("how", ["record", "edit"])
def test_every_rule_is_refused_through_the_form(world: Any, login: Any, ae: Any,
                                                how: str) -> None:
    """Each case of :data:`WEB_CASES`: 400, the store's reason on the field it names, every
    value typed kept, nothing written (one store for all: each case checks)."""
    c = login("investigator")
    url = _url("A1") if how == "record" else _url("A1", ae.pk)
    wrong = {}
    for name in WEB_CASES:
        values, field, reason = _case(world, name)
        data = form(values)
        if how == "edit":
            data["reason"] = "follow-up"
        before = state()
        r = c.post(url, data)
        page = _page(r)
        got = field_errors(r, field) if r.status_code == 400 else []
        if r.status_code != 400 or not any(reason in m for m in got):
            wrong[name] = (r.status_code, got, general_errors(r))
        elif state() != before:
            wrong[name] = "written"
        else:
            term = re.search(r'<input id="term" name="term"[^>]*value="([^"]*)"', page)
            kept = term is not None and term.group(1) == data["term"]
            kept = kept and (('id="serious" name="serious" value="on" checked' in page)
                             == bool(values["serious"]))
            for crit in values["seriousness_criteria"] or []:
                kept = kept and f'value="{crit}" checked' in page
            if how == "edit":
                kept = kept and 'name="reason" size="60" value="follow-up"' in page
            if not kept:
                wrong[name] = "typed values not kept"
    assert wrong == {}
    assert len(WEB_CASES) >= 6


def test_a_problem_of_no_form_field_is_shown_above_the_form(world: Any, login: Any) -> None:
    """A2 is screened without a consent: the collection period has not started."""
    c = login("coordinator")
    before = state()
    r = c.post(_url("A2"), form(base(world, onset_date=today())))
    assert r.status_code == 400
    assert general_errors(r) == [
        "participant A2 adverse event 'Fever' participant: A2 has no informed consent on "
        "record (adverse events are collected from consent on)"]
    assert state() == before


# ---------------------------------------------------------------------- edit
def test_edit_needs_a_reason_for_a_change(world: Any, login: Any, ae: Any) -> None:
    from hepatrial.trials.models import AdverseEvent

    c = login("investigator")
    page = c.get(_url("A1", ae.pk)).content.decode()
    assert 'value="Fever"' in page and '<option value="2" selected>' in page
    version = _version(page)
    changed = form(base(world, grade=3))
    changed["loaded_version"] = version
    before = state()
    r = c.post(_url("A1", ae.pk), changed)
    assert r.status_code == 400
    text = _page(r)
    assert field_errors(r, "reason") == [
        "a reason for change is required for changing adverse event A1 Fever G2 (grade)"]
    assert '<option value="3" selected>' in text  # the value typed is kept
    assert _version(text) == version
    assert state() == before
    r = c.post(_url("A1", ae.pk), {**changed, "reason": "grade 3 per the discharge letter"})
    assert r.status_code == 302 and r["Location"] == LIST
    ae = AdverseEvent.objects.get(pk=ae.pk)
    assert ae.grade == 3 and ae.grade_definition.startswith(">40.0")
    last = ae.history.order_by("-history_id").first()
    assert (last.history_type, last.history_user.username, last.history_change_reason) == (
        "~", "u_investigator", "grade 3 per the discharge letter")
    assert f"AE-{ae.pk} Fever grade 3 saved for A1." in _page(c.get(LIST))
    hist = _page(c.get(f"/participants/A1/history/adverseevent/{ae.pk}/grade/"))
    assert "grade 3 per the discharge letter" in hist


def test_filling_an_empty_value_needs_no_reason(world: Any, login: Any, ae: Any) -> None:
    from hepatrial.trials.models import AdverseEvent

    c = login("coordinator")
    data = form(base(world, procedure="bone_marrow_aspiration"))
    data["loaded_version"] = _version(c.get(_url("A1", ae.pk)).content.decode())
    r = c.post(_url("A1", ae.pk), data)
    assert r.status_code == 302, _page(r)[:3000]
    ae = AdverseEvent.objects.get(pk=ae.pk)
    assert ae.procedure == "bone_marrow_aspiration"
    assert ae.history.order_by("-history_id").first().history_change_reason == (
        "data entry: procedure entered")


def test_an_unchanged_form_writes_nothing(world: Any, login: Any, ae: Any) -> None:
    c = login("coordinator")
    page = c.get(_url("A1", ae.pk)).content.decode()
    data = form(base(world))
    data["loaded_version"] = _version(page)
    before = state()
    r = c.post(_url("A1", ae.pk), data)
    assert r.status_code == 302
    assert state() == before
    assert f"AE-{ae.pk} Fever grade 2: nothing changed, nothing saved." in _page(c.get(LIST))


def test_a_stale_version_is_refused_naming_who_changed_what(world: Any, login: Any,
                                                           ae: Any) -> None:
    from hepatrial.trials.models import AdverseEvent
    from hepatrial.trials.services import safety

    c = login("coordinator")
    version = _version(c.get(_url("A1", ae.pk)).content.decode())
    safety.update_adverse_event(ae, grade=3, reason="per the discharge letter",
                                user=world.users["investigator"])
    before = state()
    data = {**form(base(world, outcome="recovered", resolution_date=world.day0 + 4 * ONE)),
            "reason": "resolved", "loaded_version": version}
    r = c.post(_url("A1", ae.pk), data)
    assert r.status_code == 409
    page = _page(r)
    [msg] = general_errors(r)
    assert msg.startswith("adverse event A1 Fever G3 was changed by u_investigator at ")
    assert "(grade: 2 -> 3; grade definition: " in msg and msg.endswith(
        "since you loaded this form. Nothing was saved: reload the page to see the change, "
        "then edit again.")
    assert state() == before
    assert AdverseEvent.objects.get(pk=ae.pk).outcome == "not_recovered"
    assert '<option value="3" selected>' in page  # the current values, the current version
    assert _version(page) != version


# ---------------------------------------------------------------------- who may
def test_another_sites_participant_does_not_exist(world: Any, login: Any, ae: Any) -> None:
    from hepatrial.trials.services import safety

    b1 = safety.record_adverse_event(participant="B1", **{
        k: v for k, v in base(world).items() if k != "aware_time_zone"})
    c = login("coordinator")  # S01
    before = state()
    for url in ("/participants/B1/adverse-events/", _url("B1"), _url("B1", b1.pk),
                _url("A1", b1.pk)):  # B1's event under A1 is no event of A1
        assert c.get(url).status_code == 404, url
        assert c.post(url, form(base(world))).status_code == 404, url
    assert state() == before
    c = login(world.other)  # coordinator of S02
    before = state()
    for url in (LIST, _url("A1"), _url("A1", ae.pk), _url("B1", ae.pk)):
        assert c.get(url).status_code == 404, url
        assert c.post(url, {**form(base(world, grade=1)), "reason": "x"}).status_code == 404
    assert state() == before
    assert "B1" in c.get("/participants/B1/adverse-events/").content.decode()


def test_an_account_without_enter_data_gets_403(world: Any, login: Any, ae: Any) -> None:
    for role in ("monitor", "sponsor", "qa"):
        c = login(role)
        before = state()
        page = c.get(LIST)
        assert page.status_code == 200  # every role reads them
        assert "Fever" in page.content.decode()
        assert 'id="record-ae"' not in page.content.decode()
        assert 'class="ae-edit"' not in page.content.decode()
        for url in (_url("A1"), _url("A1", ae.pk)):
            assert c.get(url).status_code == 403, (role, url)
            r = c.post(url, {**form(base(world, grade=1)), "reason": "x"})
            assert r.status_code == 403, (role, url)
        assert state() == before


@pytest.mark.parametrize("level", ["participant", "trial"])
def test_a_lock_refuses_every_write(world: Any, login: Any, ae: Any, level: str) -> None:
    from hepatrial.trials import services

    services.lock(level=level, participant="A1" if level == "participant" else None,
                  user=world.users["data-manager"], reason="interim analysis")
    c = login("investigator")
    before = state()
    page = _page(c.get(LIST))
    assert 'id="locked"' in page and "interim analysis" in page
    assert 'id="record-ae"' not in page and 'class="ae-edit"' not in page
    r = c.post(_url("A1"), form(base(world, term="Chills", grade=1)))
    assert r.status_code == 409
    [msg] = general_errors(r)
    target = "the casebook of participant A1" if level == "participant" else "the trial"
    assert msg.startswith(f"Locked: {target} is locked (lock ") and "interim analysis" in msg
    r = c.post(_url("A1", ae.pk), {**form(base(world, grade=3)), "reason": "worse"})
    assert r.status_code == 409 and "Nothing was saved." in _page(r)
    assert state() == before
