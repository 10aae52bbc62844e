"""Issue 7 §1 for visits and protocol deviations: every case refused on every write path, the
first entry of a visit date needs no reason (every later change does), and the window status
is the protocol's classification."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from tests.store._rules_helpers import (
    FUTURE,
    assert_problem,
    assert_refused_on_page,
    page,
    root_client,
)
from tests.store.conftest import DAY0

#: (case, visit, date, field, reason)
DATE_CASES = [
    ("visit date in the future", "W1", FUTURE, "actual_date", f"{FUTURE} is in the future"),
    ("before enrolment", "W1", DAY0 - dt.timedelta(days=1), "actual_date",
     f"{DAY0 - dt.timedelta(days=1)} is before enrolment (day 0 = {DAY0}); only a screening "
     "visit"),
    ("day-0 visit before day 0", "D0", DAY0 - dt.timedelta(days=3), "actual_date",
     "is before enrolment"),
    ("not a date", "W1", "soon", "actual_date", "not a date (YYYY-MM-DD)"),
]
IDS = [c[0] for c in DATE_CASES]


def _visit(code: str) -> Any:
    from hepatrial.trials.models import Visit

    return Visit.objects.get(participant__study_id="K01", code=code)


def _form(v: Any, **over: Any) -> dict[str, Any]:
    data = {"label": v.label, "scheduled_date": v.scheduled_date.isoformat(),
            "actual_date": v.actual_date.isoformat() if v.actual_date else "",
            "change_reason": ""}
    data.update({k: (x.isoformat() if isinstance(x, dt.date) else x) for k, x in over.items()})
    return data


@pytest.mark.parametrize(("case", "code", "date", "field", "reason"), DATE_CASES, ids=IDS)
def test_visit_date_refused_on_first_entry(
    enrolled: Any, store: Any, case: str, code: str, date: Any, field: str, reason: str
) -> None:
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as exc:
        store.record_visit(participant="K01", visit_code=code, actual_date=date)
    assert_problem(exc.value, f"participant K01 visit {code}", field, reason)
    v = _visit(code)
    r = root_client(store).post(f"/admin/trials/visit/{v.pk}/change/", _form(v, actual_date=date))
    if case == "not a date":  # the admin's date field refuses text it cannot read
        assert r.status_code == 200 and "Enter a valid date." in page(r)
    else:
        assert_refused_on_page(r, f"participant K01 visit {code}", field, reason)
    v.refresh_from_db()
    assert (v.actual_date, v.status, v.history.count()) == (None, "scheduled", 1)


@pytest.mark.parametrize(("case", "code", "date", "field", "reason"), DATE_CASES, ids=IDS)
def test_visit_date_refused_on_change(
    enrolled: Any, store: Any, case: str, code: str, date: Any, field: str, reason: str
) -> None:
    from hepatrial.trials.validators import RuleViolation

    first = DAY0 + dt.timedelta(days=7 if code == "W1" else 0)
    store.record_visit(participant="K01", visit_code=code, actual_date=first)
    with pytest.raises(RuleViolation) as exc:
        store.record_visit(participant="K01", visit_code=code, actual_date=date,
                           reason="wrong date typed")
    assert_problem(exc.value, f"participant K01 visit {code}", field, reason)
    v = _visit(code)
    r = root_client(store).post(f"/admin/trials/visit/{v.pk}/change/",
                                _form(v, actual_date=date, change_reason="wrong date typed"))
    if case == "not a date":
        assert r.status_code == 200 and "Enter a valid date." in page(r)
    else:
        assert_refused_on_page(r, f"participant K01 visit {code}", field, reason)
    v.refresh_from_db()
    assert v.actual_date == first and v.history.count() == 2


def test_visits_cannot_be_added_in_the_admin(enrolled: Any, store: Any) -> None:
    r = root_client(store).get("/admin/trials/visit/add/")
    assert r.status_code == 403  # visits are scheduled by enrolment (services.schedule_visits)


def test_screening_visit_may_precede_day0(enrolled: Any, store: Any) -> None:
    v = store.record_visit(participant="K01", visit_code="SCR",
                           actual_date=DAY0 - dt.timedelta(days=14))
    assert (v.status, v.actual_date) == ("in_window", DAY0 - dt.timedelta(days=14))


def test_first_entry_of_a_visit_date_needs_no_reason_later_changes_do(
    enrolled: Any, store: Any
) -> None:
    """Issue 7: the admin demanded a reason for change for the first entry of a visit date."""
    from hepatrial.trials.models import ProtocolDeviation

    client = root_client(store)
    w1 = _visit("W1")
    r = client.post(f"/admin/trials/visit/{w1.pk}/change/", _form(w1, actual_date="2008-02-05"))
    assert r.status_code == 302, page(r)[:3000]
    w1.refresh_from_db()
    assert (w1.actual_date, w1.status) == (dt.date(2008, 2, 5), "late")
    h = w1.history.order_by("-history_id").first()
    assert (h.history_change_reason, h.history_user.username) == ("visit recorded", "root")
    assert ProtocolDeviation.objects.get(visit=w1).category == "visit_window"
    # a later change needs a reason, in the admin and in the service
    r = client.post(f"/admin/trials/visit/{w1.pk}/change/", _form(w1, actual_date="2008-01-27"))
    assert r.status_code == 200 and "A reason for change is required." in page(r)
    with pytest.raises(store.ChangeReasonRequired, match="participant K01 visit W1"):
        store.record_visit(participant="K01", visit_code="W1", actual_date="2008-01-27")
    r = client.post(f"/admin/trials/visit/{w1.pk}/change/",
                    _form(w1, actual_date="2008-01-27", change_reason="date typed wrongly"))
    assert r.status_code == 302
    w1.refresh_from_db()
    assert (w1.actual_date, w1.status) == (dt.date(2008, 1, 27), "in_window")
    # service: first entry without a reason
    w2 = store.record_visit(participant="K01", visit_code="W2", actual_date="2008-02-03")
    assert w2.history.order_by("-history_id").first().history_change_reason == "visit recorded"
    # a label (already set) needs a reason; a scheduled date entered for the first time not
    with pytest.raises(store.ChangeReasonRequired):
        store.update_visit(w2, label="Week two")
    r = client.post(f"/admin/trials/visit/{w2.pk}/change/", _form(w2, label="Week two"))
    assert r.status_code == 200 and "A reason for change is required." in page(r)


def test_a_date_for_a_visit_marked_missed_needs_a_reason(enrolled: Any, store: Any) -> None:
    store.mark_visit_not_done(participant="K01", visit_code="W1", reason="patient travelling")
    client = root_client(store)
    w1 = _visit("W1")
    r = client.post(f"/admin/trials/visit/{w1.pk}/change/", _form(w1, actual_date="2008-01-27"))
    assert r.status_code == 200 and "A reason for change is required." in page(r)
    with pytest.raises(store.ChangeReasonRequired):
        store.record_visit(participant="K01", visit_code="W1", actual_date="2008-01-27")


def test_a_recorded_visit_date_cannot_be_cleared_in_the_admin(enrolled: Any, store: Any) -> None:
    store.record_visit(participant="K01", visit_code="W1", actual_date="2008-01-27")
    w1 = _visit("W1")
    r = root_client(store).post(f"/admin/trials/visit/{w1.pk}/change/",
                                _form(w1, actual_date="", change_reason="not done"))
    assert_refused_on_page(r, "participant K01 visit W1", "actual_date",
                           "a recorded visit date cannot be cleared")


def test_a_visit_with_results_cannot_be_marked_missed(enrolled: Any, store: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    store.record_visit(participant="K01", visit_code="D0", actual_date=DAY0)
    store.record_lab(participant="K01", visit_code="D0", analyte="inr", value="1.2", unit="1")
    with pytest.raises(RuleViolation) as exc:
        store.mark_visit_not_done(participant="K01", visit_code="D0", reason="x")
    assert_problem(exc.value, "participant K01 visit D0", "status",
                   "the visit has 1 result(s)")


@pytest.mark.parametrize("code", ["SCR", "D0", "W1", "W2", "W4", "W8", "W24"])
def test_window_status_is_the_protocols_classification(enrolled: Any, store: Any,
                                                       code: str) -> None:
    """One implementation: the store classifies with hepatrial.protocol.models.Visit.classify
    (bounds inclusive) for every study day around the window."""
    from hepatrial.protocol import load_protocol
    from hepatrial.trials.services.visits import _classify
    from hepatrial.trials.validators.visit import window_status_columns

    pv = load_protocol("kharaziha2009").visit(code)
    v = _visit(code)
    days = list(range(pv.earliest_day - 3, pv.latest_day + 4))
    want = [pv.classify(d) for d in days]
    got = [_classify(v, DAY0 + dt.timedelta(days=d), DAY0) for d in days]
    assert [s for s, _day in got] == want and [day for _s, day in got] == days
    assert want[:3] == ["early"] * 3 and want[-3:] == ["late"] * 3 and want[3] == "in_window"
    cols = window_status_columns(v.nominal_day, v.window_lower, v.window_upper, days)
    assert list(cols) == want


def test_visit_date_rules_column_wise() -> None:
    """The importers' form of the same rules (one element per row)."""
    from hepatrial.trials.validators.visit import visit_date_columns, visit_done_columns

    day0 = np.array(["2008-01-20", "2008-01-20", None, "2008-01-20", "2008-01-20"], dtype=object)
    dates, problems = visit_date_columns(
        actual_date=["2008-01-27", FUTURE.isoformat(), "2008-01-27", "2008-01-19", "2008-01-06"],
        enrolment_date=day0, nominal_day=[7, 7, 7, 7, -14])
    assert dates[0] == np.datetime64("2008-01-27")
    got = {(i, f): r for i, f, r in problems.items()}
    assert list(got) == [(1, "actual_date"), (2, "actual_date"), (3, "actual_date")]
    assert "is in the future" in got[(1, "actual_date")]
    assert "not enrolled" in got[(2, "actual_date")]
    assert "before enrolment" in got[(3, "actual_date")]
    done = visit_done_columns(["2008-01-27", None, None], ["in_window", "scheduled", "missed"])
    assert [(i, r.split(":")[0]) for i, _f, r in done.items()] == [
        (1, "the visit has not been done yet (no actual date)"), (2, "the visit is missed")]


# ---------------------------------------------------------------------- deviations
def test_deviation_refused_on_every_path(enrolled: Any, store: Any) -> None:
    from hepatrial.trials.models import ProtocolDeviation
    from hepatrial.trials.services import visits as svc
    from hepatrial.trials.validators import RuleViolation

    record = "participant K01 deviation"
    with pytest.raises(RuleViolation) as exc:  # service create
        store.record_deviation(participant="K01", category="consent", description="v0.9 used",
                               date=FUTURE)
    assert_problem(exc.value, record, "date", f"{FUTURE} is in the future")
    d = store.record_deviation(participant="K01", category="consent", description="v0.9 used",
                               date=DAY0)
    with pytest.raises(RuleViolation) as exc:  # service update
        svc.update_deviation(d, reason="typo", date=FUTURE, description=" ")
    assert_problem(exc.value, record, "date", f"{FUTURE} is in the future")
    assert_problem(exc.value, record, "description", "missing")
    client = root_client(store)
    form = {"participant": d.participant_id, "visit": "", "category": "consent",
            "description": "v0.9 used", "date": FUTURE.isoformat(), "major": ""}
    r = client.post("/admin/trials/protocoldeviation/add/", form)  # admin add
    assert_refused_on_page(r, record, "date", f"{FUTURE} is in the future")
    r = client.post(f"/admin/trials/protocoldeviation/{d.pk}/change/",  # admin change
                    {**form, "change_reason": "typo"})
    assert_refused_on_page(r, record, "date", f"{FUTURE} is in the future")
    assert ProtocolDeviation.objects.count() == 1
    r = client.post("/admin/trials/protocoldeviation/add/", {**form, "date": "2008-01-21"})
    assert r.status_code == 302
    new = ProtocolDeviation.objects.order_by("-pk").first()
    assert (new.detected_by, new.date) == ("root", dt.date(2008, 1, 21))
    r = client.post(f"/admin/trials/protocoldeviation/{new.pk}/change/",
                    {**form, "date": "2008-01-22", "change_reason": ""})
    assert "A reason for change is required." in page(r)
    r = client.post(f"/admin/trials/protocoldeviation/{new.pk}/change/",
                    {**form, "date": "2008-01-22", "change_reason": "date corrected"})
    assert r.status_code == 302
    new.refresh_from_db()
    assert new.date == dt.date(2008, 1, 22)
    assert new.history.order_by("-history_id").first().history_change_reason == "date corrected"


def test_dates_of_a_long_column_are_read_as_one_at_a_time() -> None:
    """The column fast path (long arrays) gives the same dates and refusals as the row path."""
    from hepatrial.trials.validators._common import as_dates

    cells = ["2008-01-20", "2008-02-30", "", None, dt.date(2008, 1, 3), "20/01/2008",
             " 2008-01-21", "2008-1-2", np.datetime64("2008-03-01"), "NaT"]
    one = [as_dates([c]) for c in cells]
    dates, bad = as_dates(np.array(cells * 50, dtype=object))
    assert [str(d[0]) for d, _b in one] == [str(x) for x in dates[:10]] == [
        str(x) for x in dates[-10:]]
    assert [bool(b[0]) for _d, b in one] == list(bad[:10]) == [
        False, True, False, False, False, True, False, True, False, True]
