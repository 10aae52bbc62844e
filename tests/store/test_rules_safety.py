"""Adverse events: one validator on every write path.

Issue 7 §1 "Why" cases, each refused on every path (service create, service update, admin add,
admin change): grade 5 with outcome "unknown"/"recovered" or not serious (grade 5 = death
related to the AE, CTCAE v5.0: outcome fatal and serious), an AE resolved before its onset, an
onset before the participant's screening or informed consent; and their mirror images.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client

from tests.store.conftest import DAY0, ELIGIBLE, enrol

ONE = dt.timedelta(days=1)
BASE = {"term": "Fever", "grade": 2, "serious": False, "relatedness": "possible",
        "onset_date": DAY0 + ONE, "resolution_date": None, "outcome": "unknown"}  # fmt: skip

#: case -> (participant, values over BASE, field, reason)
CASES: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "grade5_outcome_unknown": (
        "K01", {"grade": 5, "serious": True, "outcome": "unknown"}, "outcome",
        "grade 5 (death related to the adverse event, CTCAE v5.0) requires outcome 'fatal', "
        "got 'unknown'"),
    "grade5_outcome_recovered": (
        "K01", {"grade": 5, "serious": True, "outcome": "recovered",
                "resolution_date": DAY0 + 3 * ONE}, "outcome",
        "requires outcome 'fatal', got 'recovered'"),
    "grade5_not_serious": (
        "K01", {"grade": 5, "serious": False, "outcome": "fatal"}, "serious",
        "grade 5 (death) is a serious adverse event (ICH E2A): serious must be true"),
    "fatal_not_grade5": (
        "K01", {"grade": 3, "serious": True, "outcome": "fatal"}, "grade",
        "outcome 'fatal' is grade 5 (death related to the adverse event, CTCAE v5.0), got "
        "grade 3"),
    "resolved_before_onset": (
        "K01", {"resolution_date": DAY0, "outcome": "recovered"}, "resolution_date",
        "2008-01-20 is before the onset on 2008-01-21"),
    "onset_before_screening": (
        "K01", {"onset_date": DAY0 - 20 * ONE}, "onset_date",
        "2007-12-31 is before the participant's screening on 2008-01-06"),
    "onset_before_consent": (
        "K05", {"onset_date": DAY0 - 12 * ONE}, "onset_date",
        "2008-01-08 is before the participant's informed consent on 2008-01-10"),
    "onset_in_the_future": (
        "K01", {"onset_date": dt.date(2999, 1, 1)}, "onset_date", "2999-01-01 is in the future"),
    "recovered_without_resolution_date": (
        "K01", {"outcome": "recovered"}, "resolution_date",
        "outcome 'recovered' needs the resolution date"),
    "resolution_date_with_outcome_not_recovered": (
        "K01", {"outcome": "not_recovered", "resolution_date": DAY0 + 2 * ONE}, "outcome",
        "'not_recovered' does not go with a resolution date (2008-01-22)"),
}  # fmt: skip
PATHS = ["service_create", "service_update", "admin_add", "admin_change"]


@pytest.fixture
def safety(store: Any) -> dict[str, Any]:
    """K01 enrolled (screened and consented 2008-01-06); K05 screened 2008-01-06, consented
    2008-01-10; one adverse event each; a superuser client."""
    enrol(store, "K01")
    store.screen_participant(study_id="K05", site="S01", sex="F", year_of_birth=1970,
                             etiology="HCV", screening_date=DAY0 - 14 * ONE,
                             screening_data=ELIGIBLE)  # fmt: skip
    store.record_consent(participant="K05", version="1.0", date=DAY0 - 10 * ONE)
    events = {
        "K01": store.record_adverse_event(participant="K01", **BASE),
        "K05": store.record_adverse_event(participant="K05", **{**BASE,
                                                                "onset_date": DAY0 - 5 * ONE}),
    }  # fmt: skip
    root = store.create_user(username="root", password=None, superuser=True)
    c = Client()
    c.force_login(root)
    return {"events": events, "client": c}


def _form(values: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in values.items():
        if k == "serious":
            if v:
                out[k] = "on"  # an unticked checkbox is not posted
        else:
            out[k] = "" if v is None else str(v)
    return out


def _write(store: Any, fx: dict[str, Any], path: str, participant: str,
           values: dict[str, Any]) -> Any:  # fmt: skip
    from hepatrial.trials.models import Participant

    if path == "service_create":
        return store.record_adverse_event(participant=participant, **values)
    if path == "service_update":
        return store.update_adverse_event(fx["events"][participant], reason="follow-up",
                                          **values)  # fmt: skip
    if path == "admin_add":
        data = {**_form(values), "participant": Participant.objects.get(study_id=participant).pk}
        return fx["client"].post("/admin/trials/adverseevent/add/", data)
    ae = fx["events"][participant]
    data = {**_form(values), "change_reason": "follow-up"}
    return fx["client"].post(f"/admin/trials/adverseevent/{ae.pk}/change/", data)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", list(CASES))
def test_adverse_event_rules_on_every_path(store: Any, safety: Any, case: str,
                                           path: str) -> None:  # fmt: skip
    from hepatrial.trials import audit
    from hepatrial.trials.models import AdverseEvent
    from hepatrial.trials.validators import RuleViolation

    participant, over, field, reason = CASES[case]
    values = {**BASE, **over}
    n_hist = AdverseEvent.history.count()
    if path.startswith("service"):
        with pytest.raises(RuleViolation) as e:
            _write(store, safety, path, participant, values)
        assert any(reason in r for r in e.value.by_field()[field]), e.value.by_field()
        assert str(e.value).startswith(f"participant {participant} adverse event 'Fever' ")
    else:
        r = _write(store, safety, path, participant, values)
        assert r.status_code == 200, r.status_code
        assert reason in r.content.decode().replace("&#x27;", "'")
    # nothing written; the stored events are unchanged
    assert AdverseEvent.history.count() == n_hist
    assert list(AdverseEvent.objects.values_list("grade", "outcome", "resolution_date")) == [
        (2, "unknown", None), (2, "unknown", None)]
    assert audit.verify() == []


@pytest.mark.parametrize("path", PATHS)
def test_grade5_fatal_serious_is_accepted_on_every_path(store: Any, safety: Any,
                                                        path: str) -> None:  # fmt: skip
    from hepatrial.trials import audit
    from hepatrial.trials.models import AdverseEvent

    values = {**BASE, "term": "Hepatic failure", "grade": 5, "serious": True,
              "outcome": "fatal", "onset_date": DAY0 + 10 * ONE}  # fmt: skip
    r = _write(store, safety, path, "K01", values)
    if path.startswith("admin"):
        assert r.status_code == 302, r.content.decode()[:3000]
    ae = AdverseEvent.objects.get(term="Hepatic failure")
    assert (ae.grade, ae.serious, ae.outcome, ae.onset_date) == (5, True, "fatal",
                                                                 DAY0 + 10 * ONE)
    h = ae.history.order_by("-history_id").first()
    if path in ("service_update", "admin_change"):
        assert ae.pk == safety["events"]["K01"].pk
        assert h.history_type == "~" and h.history_change_reason == "follow-up"
    else:
        assert h.history_type == "+"
    if path.startswith("admin"):
        assert h.history_user.username == "root"
    assert audit.verify() == []


def test_every_problem_at_once_and_types_are_not_coerced(store: Any, safety: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as e:
        store.record_adverse_event(participant="K01", term=" ", grade=2.5, serious="yes",
                                   relatedness="maybe", onset_date="21/01/2008",
                                   resolution_date="2008-13-01", outcome="dead")  # fmt: skip
    assert e.value.by_field() == {
        "term": ["is required"],
        "grade": ["2.5 is not 1-5 (CTCAE grade)"],
        "serious": ["'yes' is not true or false"],
        "relatedness": ["'maybe' is not one of not_related, unlikely, possible, probable, "
                        "definite"],
        "outcome": ["'dead' is not one of recovered, recovering, not_recovered, "
                    "recovered_with_sequelae, fatal, unknown"],
        "onset_date": ["'21/01/2008' is not a date (YYYY-MM-DD)"],
        "resolution_date": ["'2008-13-01' is not a date (YYYY-MM-DD)"],
    }  # fmt: skip
    assert str(e.value).startswith("participant K01 adverse event term: is required")


def test_adverse_event_needs_a_consent_on_record(store: Any, safety: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    store.screen_participant(study_id="K06", site="S01", sex="M", year_of_birth=1960,
                             etiology="HBV", screening_date=DAY0, screening_data=ELIGIBLE)
    with pytest.raises(RuleViolation) as e:
        store.record_adverse_event(participant="K06", **BASE)
    assert e.value.by_field() == {"participant": [
        "K06 has no informed consent on record (adverse events are collected from consent on)"]}


def test_update_refuses_unknown_fields_and_needs_a_reason(store: Any, safety: Any) -> None:
    ae = safety["events"]["K01"]
    with pytest.raises(store.StoreError, match=r"field\(s\) participant cannot be changed"):
        store.update_adverse_event(ae, reason="x", participant="K05")
    with pytest.raises(store.ChangeReasonRequired):
        store.update_adverse_event(ae, reason="", grade=3)
    ae = store.update_adverse_event(ae, reason="follow-up", outcome="recovered",
                                    resolution_date="2008-01-24")  # fmt: skip
    assert (ae.outcome, ae.resolution_date) == ("recovered", dt.date(2008, 1, 24))
    n = ae.history.count()
    store.update_adverse_event(ae, reason="nothing new", outcome="recovered")
    assert ae.history.count() == n  # nothing changed: nothing written
    # the first entry of a value is data entry (no reason); a later change needs one
    death = store.record_adverse_event(participant="K01", term="Hepatic failure", grade=5,
                                       serious=True, relatedness="possible",
                                       onset_date=DAY0 + 5 * ONE, outcome="fatal")
    death = store.update_adverse_event(death, resolution_date=DAY0 + 6 * ONE)
    h = death.history.order_by("-history_id").first()
    assert h.history_change_reason == "data entry: resolution_date entered"
    with pytest.raises(store.ChangeReasonRequired, match="resolution_date"):
        store.update_adverse_event(death, resolution_date=DAY0 + 7 * ONE)


def test_admin_change_form_has_no_participant_and_needs_a_reason(store: Any,
                                                                  safety: Any) -> None:
    ae = safety["events"]["K01"]
    c = safety["client"]
    url = f"/admin/trials/adverseevent/{ae.pk}/change/"
    assert 'name="participant"' not in c.get(url).content.decode()
    r = c.post(url, {**_form({**BASE, "grade": 3}), "change_reason": ""})
    assert r.status_code == 200 and "A reason for change is required." in r.content.decode()
    ae.refresh_from_db()
    assert ae.grade == 2


def test_admin_first_entry_needs_no_reason(store: Any, safety: Any) -> None:
    death = store.record_adverse_event(participant="K01", term="Hepatic failure", grade=5,
                                       serious=True, relatedness="possible",
                                       onset_date=DAY0 + 5 * ONE, outcome="fatal")
    url = f"/admin/trials/adverseevent/{death.pk}/change/"
    values = {**BASE, "term": "Hepatic failure", "grade": 5, "serious": True,
              "onset_date": DAY0 + 5 * ONE, "outcome": "fatal"}  # fmt: skip
    r = safety["client"].post(url, {**_form({**values, "resolution_date": DAY0 + 6 * ONE}),
                                    "change_reason": ""})  # fmt: skip
    assert r.status_code == 302, r.content.decode()[:3000]
    death.refresh_from_db()
    h = death.history.order_by("-history_id").first()
    assert (death.resolution_date, h.history_change_reason, h.history_user.username) == (
        DAY0 + 6 * ONE, "data entry: resolution_date entered", "root")
    r = safety["client"].post(url, {**_form({**values, "resolution_date": DAY0 + 7 * ONE}),
                                    "change_reason": ""})  # fmt: skip
    assert r.status_code == 200 and "A reason for change is required." in r.content.decode()
