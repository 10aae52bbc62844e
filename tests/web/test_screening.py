"""Screening and enrolment pages: the form generated from the protocol's eligibility inputs,
each criterion judged live (nothing stored), save, consent, Enrol (enrols and schedules, or
lists the reasons and stores nothing), status changes."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from hepatrial import scores
from tests.web.conftest import today

ELIGIBLE_FORM = {
    "sd-cirrhosis": "true", "sd-bilirubin": "2.3", "sd-bilirubin-unit": "mg/dL",
    "sd-creatinine": "1.1", "sd-creatinine-unit": "mg/dL", "sd-inr": "1.5",
    "sd-inr-unit": "1", "sd-dialysis": "false", "sd-portal_vein_patent": "true",
    "sd-hcc": "false", "sd-active_infection": "false", "sd-pregnant": "false",
    "sd-albumin": "3.1", "sd-albumin-unit": "g/dL",
}


def _new(**extra: str) -> dict[str, str]:
    d = today() - dt.timedelta(days=2)
    return {"study_id": "N1", "site": "S01", "sex": "F", "year_of_birth": "1965",
            "etiology": "HBV", "screening_date": d.isoformat(), **ELIGIBLE_FORM, **extra}


def _criteria(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-criterion="([^"]+)" data-passes="([a-z]+)"', html))


def _ledger() -> int:
    from hepatrial.trials.models import AuditLedger

    return AuditLedger.objects.count()


def test_new_form_is_generated_from_the_protocol(world: Any, login: Any) -> None:
    page = login("coordinator").get("/screening/new/").content.decode()
    proto = world.services.active_protocol()
    for inp in proto.entered_inputs:
        assert f'name="sd-{inp.name}"' in page, inp.name
    assert 'name="sd-age"' not in page and 'name="sd-informed_consent"' not in page
    unit_select = re.search(r'<select id="sd-bilirubin-unit".*?</select>', page, re.S)
    assert unit_select is not None
    assert re.findall(r'<option value="([^"]+)"', unit_select.group(0)) == ["umol/L", "mg/dL"]
    assert 'selected>umol/L' in unit_select.group(0)  # the canonical unit by default
    # a boolean input: yes / no / not known
    assert page.count('name="sd-cirrhosis"') == 3
    assert "Age 18 to 70 years" in page  # every criterion listed, undecided until typed


def test_criteria_judged_as_typed_nothing_stored(world: Any, login: Any) -> None:
    c = login("coordinator")
    before = _ledger()
    html = c.post("/screening/evaluate/", _new(), HTTP_HX_REQUEST="true").content.decode()
    crit = _criteria(html)
    assert crit["INC-MELD"] == "pass"
    assert crit["INC-AGE"] == "pass" and crit["INC-CIRRHOSIS"] == "pass"
    assert crit["EXC-HCC"] == "pass"
    assert crit["INC-CONSENT"] == "fail"  # no consent typed yet
    assert 'data-eligible="false"' in html
    meld = scores.meld(2.3, 1.1, 1.5, units="conventional", variant="optn2002")
    assert float(meld) == 15.0
    row = re.search(r'data-criterion="INC-MELD".*?</tr>', html, re.S).group(0)
    assert re.search(r'<td class="num">15(\.0)?</td>', row), row
    # consent typed: eligible
    html = c.post("/screening/evaluate/", _new(consent_version="1.0",
                  consent_date=(today() - dt.timedelta(days=2)).isoformat())).content.decode()
    assert set(_criteria(html).values()) == {"pass"}
    assert 'data-eligible="true"' in html
    # portal vein not patent: that criterion fails, the rest still judged
    html = c.post("/screening/evaluate/", _new(**{"sd-portal_vein_patent": "false"})
                  ).content.decode()
    assert _criteria(html)["INC-PORTAL"] == "fail" and _criteria(html)["INC-MELD"] == "pass"
    # a bad value: its field error, its criteria undecided
    html = c.post("/screening/evaluate/", _new(**{"sd-bilirubin": "2,3"})).content.decode()
    assert _criteria(html)["INC-MELD"] == "undecided"
    assert "&#x27;2,3&#x27; contains &#x27;,&#x27;; use a point as the decimal mark" in html
    # a unit mistake (bilirubin 2.3 labelled µmol/L is fine; 2300 mg/dL is over the limit)
    html = c.post("/screening/evaluate/", _new(**{"sd-bilirubin": "2300"})).content.decode()
    assert "outside the plausible range" in html
    assert _ledger() == before


def test_save_screening_stores_values_as_entered(world: Any, login: Any) -> None:
    c = login("coordinator")
    d = (today() - dt.timedelta(days=2)).isoformat()
    r = c.post("/screening/new/", _new(consent_version="2.1", consent_date=d))
    assert r.status_code == 302 and r["Location"] == "/participants/N1/screening/"
    p = world.participant("N1")
    assert p.status == "screened" and p.site.code == "S01" and p.sex == "F"
    assert p.screening_data["bilirubin"] == {"value": "2.3", "unit": "mg/dL"}
    assert p.screening_data["albumin"] == {"value": "3.1", "unit": "g/dL"}
    assert p.screening_data["cirrhosis"] is True and p.screening_data["hcc"] is False
    assert [(x.version, x.date.isoformat()) for x in p.consents.all()] == [("2.1", d)]
    page = c.get(r["Location"]).content.decode()
    assert set(_criteria(page).values()) == {"pass"}
    assert 'value="2.3"' in page and "selected>mg/dL" in page


def test_refused_screening_shows_each_problem_and_stores_nothing(world: Any, login: Any
                                                                 ) -> None:
    c = login("coordinator")
    before = _ledger()
    r = c.post("/screening/new/", _new(study_id="A1", year_of_birth="1890",
                                       **{"sd-hcc": "yes"}))
    assert r.status_code == 400
    page = r.content.decode()
    assert "already exists" in page
    assert re.search(r'id="year_of_birth"[^>]*>\s*<span class="error">[^<]*1890', page)
    assert re.search(r'id="field-hcc".*?is not a boolean', page, re.S)
    assert _ledger() == before
    # another site: refused, nothing stored
    r = c.post("/screening/new/", _new(site="S02"))
    assert r.status_code == 400 and "is not one of your sites" in r.content.decode()
    assert _ledger() == before


def test_enrol_refused_lists_reasons_and_stores_nothing(world: Any, login: Any) -> None:
    c = login("coordinator")
    c.post("/screening/new/", _new(**{"sd-portal_vein_patent": "false"}))
    before = _ledger()
    r = c.post("/participants/N1/enrol/", {"enrolment_date": today().isoformat()})
    assert r.status_code == 400
    page = r.content.decode()
    box = re.search(r'id="enrol-refused".*?</div>', page, re.S).group(0)
    assert "INC-PORTAL" in box and "INC-CONSENT" in box
    assert "consent: no informed consent on or before" in box
    assert "Nothing was stored." in box
    assert _ledger() == before
    assert world.participant("N1").status == "screened"


def test_consent_then_enrol_schedules_visits(world: Any, login: Any) -> None:
    c = login("coordinator")
    c.post("/screening/new/", _new())
    d = (today() - dt.timedelta(days=1)).isoformat()
    r = c.post("/participants/N1/consent/", {"version": "1.0", "date": d})
    assert r.status_code == 302
    r = c.post("/participants/N1/enrol/", {"enrolment_date": today().isoformat()})
    assert r.status_code == 302 and r["Location"] == "/participants/N1/"
    p = world.participant("N1")
    assert p.status == "enrolled" and p.enrolment_date == today() and p.arm.code == "single"
    assert list(p.visits.order_by("nominal_day").values_list("code", flat=True)) == [
        "SCR", "D0", "W1", "W2", "W4", "W8", "W24"]
    a = p.eligibility_assessments.get()
    assert a.eligible is True and a.criteria["INC-MELD"]["value"] == 15


def test_consent_errors_on_their_fields(world: Any, login: Any) -> None:
    c = login("coordinator")
    before = _ledger()
    r = c.post("/participants/A2/consent/", {"version": "", "date": "2999-01-01"})
    assert r.status_code == 400
    page = r.content.decode()
    assert re.search(r'id="consent-version".*?missing', page, re.S)
    assert "is in the future" in page
    assert _ledger() == before


def test_assess_only_screen_fails_an_ineligible_participant(world: Any, login: Any) -> None:
    c = login("coordinator")
    r = c.post("/participants/A2/assess/")
    assert r.status_code == 302
    p = world.participant("A2")
    assert p.status == "screen_failed"
    assert p.eligibility_assessments.get().eligible is False


def test_correct_screening_data_needs_a_reason(world: Any, login: Any) -> None:
    c = login("coordinator")
    c.post("/screening/new/", _new())
    form = {**_new(), "sd-bilirubin": "2.5"}
    before = _ledger()
    r = c.post("/participants/N1/screening/", form)
    assert r.status_code == 400
    assert re.search(r'id="reason".*?reason', r.content.decode(), re.S)
    assert _ledger() == before
    r = c.post("/participants/N1/screening/", {**form, "reason": "lab report re-read"})
    assert r.status_code == 302
    p = world.participant("N1")
    assert p.screening_data["bilirubin"] == {"value": "2.5", "unit": "mg/dL"}
    h = p.history.order_by("-history_id").first()
    assert h.history_change_reason == "lab report re-read"
    assert h.history_user.username == "u_coordinator"


def test_monitor_reads_screening_but_cannot_enter(world: Any, login: Any) -> None:
    c = login("monitor")
    page = c.get("/participants/A2/screening/").content.decode()
    assert 'id="save-screening"' not in page and "disabled" in page
    assert 'id="enrol"' not in page
    before = _ledger()
    assert c.post("/participants/A2/consent/", {"version": "1", "date": "2020-01-01"}
                  ).status_code == 403
    assert c.post("/screening/new/", _new()).status_code == 403
    assert _ledger() == before


def test_status_actions(world: Any, login: Any) -> None:
    c = login("coordinator")
    before = _ledger()
    r = c.post("/participants/A1/status/", {"status": "withdrawn",
                                            "date": today().isoformat(), "reason": ""})
    assert r.status_code == 400 and "reason" in r.content.decode()
    assert _ledger() == before
    r = c.post("/participants/A1/status/", {"status": "transplanted", "date": "2001-01-01",
                                            "reason": "liver transplant"})
    assert r.status_code == 400 and "before enrolment" in r.content.decode()
    r = c.post("/participants/A1/status/", {"status": "withdrawn",
                                            "date": today().isoformat(),
                                            "reason": "consent withdrawn"})
    assert r.status_code == 302
    p = world.participant("A1")
    assert (p.status, p.status_date, p.status_reason) == ("withdrawn", today(),
                                                          "consent withdrawn")
    r = c.post("/participants/A1/status/", {"status": "died", "date": today().isoformat(),
                                            "reason": "hepatic failure"})
    assert r.status_code == 302 and world.participant("A1").status == "died"
    r = c.post("/participants/A1/status/", {"status": "completed",
                                            "date": today().isoformat(), "reason": "x"})
    assert r.status_code == 400 and "cannot go from" in r.content.decode()


def test_a_status_change_refused_by_the_casebook_lock_names_the_casebook(
        world: Any, login: Any) -> None:
    """The lock's own words (the casebook, not "this visit"), and nothing written."""
    from hepatrial.trials.services.signing import lock

    lock(level="participant", participant="A1", user=world.users["data-manager"],
         reason="casebook complete")
    c = login("coordinator")  # (signing in is itself audited)
    before = _ledger()
    r = c.post("/participants/A1/status/", {
        "status": "withdrawn", "date": today().isoformat(), "reason": "consent withdrawn"})
    page = r.content.decode()
    assert r.status_code == 400, page[:2000]
    assert "Locked, nothing was saved: " in page and "casebook of participant A1 is locked" \
        in page.replace("The casebook", "casebook") and "This visit is locked" not in page
    assert _ledger() == before and world.participant("A1").status == "enrolled"
