"""The query workflow in the store: automatic queries on each trigger, manual queries, answer,
close, re-open, every rule on every path, permissions, locks, the audit trail, the selectors.

The trial (``tests/store/_trial.py``): K01 and K02 at S01, K03 at S02; K01's D0 and W1 done
(bilirubin 2.3 mg/dL and INR 1.5 at each; a clinical assessment at W1); accounts coord, inv,
mon (S01), inv2 (S02), dm, qa, aud, adm.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store._trial import build, fast_passwords
from tests.store.conftest import DAY0


@pytest.fixture
def trial(store: Any, settings: Any) -> dict[str, Any]:
    fast_passwords(settings)
    return build(store)


def _ledger_len() -> int:
    from hepatrial.trials.models import AuditLedger

    return int(AuditLedger.objects.count())


def _u(trial: dict[str, Any], name: str) -> Any:
    return trial["users"][name]


def _queries(**kw: Any) -> list[Any]:
    from hepatrial.trials.models import Query

    return list(Query.objects.filter(**kw).order_by("pk"))


def _thread(q: Any) -> list[tuple[str, str]]:
    return [(m.step, m.author.get_username()) for m in q.messages.order_by("at", "pk")]


def _manual(trial: dict[str, Any], by: str = "mon", **kw: Any) -> Any:
    from hepatrial.trials.services import queries

    lab = trial["labs"]["W1"]
    args = {"participant": "K01", "model": "labresult", "object_pk": lab.pk,
            "field": "value_as_entered", "text": "Please check bilirubin against the lab "
            "report.", "user": _u(trial, by)}
    args.update(kw)
    return queries.raise_query(**args)


# ---------------------------------------------------------------------- soft range
def test_soft_range_value_is_refused_without_confirmation_and_writes_nothing(
        trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.models import LabResult
    from hepatrial.trials.validators import RuleViolation

    before = _ledger_len()
    with pytest.raises(RuleViolation) as e:
        store.record_lab(participant="K01", visit_code="W1", analyte="creatinine",
                         value="1100", unit="umol/L", user=_u(trial, "coord"))
    assert e.value.by_field() == {"value": [
        "1100 umol/L is higher than expected for creatinine (20-1000 umol/L): check it "
        "against the source and confirm it (confirmed_out_of_range) to save it; a confirmed "
        "value opens a query"]}
    assert e.value.problems[0].record == "participant K01 visit W1 lab creatinine"
    assert not LabResult.objects.filter(analyte="creatinine").exists()
    assert _ledger_len() == before and _queries() == []


def test_soft_range_confirmed_is_stored_and_raises_a_query(trial: dict[str, Any],
                                                           store: Any) -> None:
    from hepatrial.trials.models import AuditLedger

    before = _ledger_len()
    lab = store.record_lab(participant="K01", visit_code="W1", analyte="creatinine",
                           value="12.5", unit="mg/dL", user=_u(trial, "coord"),
                           confirmed_out_of_range=True)
    assert (lab.value_as_entered, lab.unit_as_entered, lab.value) == ("12.5", "mg/dL", 1105.0)
    [q] = _queries()
    assert (q.origin, q.status, q.model_label, q.object_pk, q.field_name, q.item,
            q.value_at_raise, q.visit.code, q.raised_by.get_username()) == (
        "soft_range", "open", "trials.labresult", str(lab.pk), "value_as_entered",
        "creatinine", "12.5 mg/dL", "W1", "system")
    assert q.text == ("W1 Creatinine: 12.5 mg/dL = 1105 umol/L is higher than expected "
                      "(20-1000 umol/L); confirmed at entry by coord. Please check it against "
                      "the source document and answer.")
    assert _thread(q) == [("raised", "system")]
    # lab + query + message: one history row and one ledger entry each, one transaction
    models = list(AuditLedger.objects.filter(seq__gt=before).order_by("seq").values_list(
        "history_model", flat=True))
    assert models == ["trials.historicallabresult", "trials.historicalquery",
                      "trials.historicalquerymessage"]


@pytest.mark.parametrize(("value", "unit", "refused"), [
    ("2", "umol/L", False), ("1.99", "umol/L", True), ("700", "umol/L", False),
    ("700.01", "umol/L", True), ("40.9", "mg/dL", False), ("41", "mg/dL", True)])
def test_soft_range_bounds_are_inclusive_in_the_canonical_unit(
        trial: dict[str, Any], store: Any, value: str, unit: str, refused: bool) -> None:
    """Bilirubin's expected range is 2-700 umol/L (inclusive); 41 mg/dL = 701.1 umol/L."""
    from hepatrial.trials.validators import RuleViolation

    k02_d0 = trial["labs"]["K02"]
    if refused:
        with pytest.raises(RuleViolation) as e:
            store.update_lab(k02_d0, value=value, unit=unit, reason="re-typed")
        assert "than expected for bilirubin (2-700 umol/L)" in str(e.value)
        side = "lower" if value.startswith("1") and unit == "umol/L" else "higher"
        assert f"is {side} than expected" in str(e.value)
    else:
        store.update_lab(k02_d0, value=value, unit=unit, reason="re-typed")
        assert _queries() == []


def test_check_lab_applies_the_same_soft_range_rule(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as e:
        store.check_lab(participant="K01", visit_code="W1", analyte="albumin", value="5.5",
                        unit="g/L")
    assert list(e.value.by_field()) == ["value"]
    assert "5.5 g/L is lower than expected for albumin (10-60 g/L)" in str(e.value)
    c = store.check_lab(participant="K01", visit_code="W1", analyte="albumin", value="5.5",
                        unit="g/L", confirmed_out_of_range=True)
    assert c.value == 5.5
    assert _queries() == []  # a check writes nothing


def test_update_lab_soft_range_raises_once_then_notes_then_raises_after_close(
        trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.services import queries
    from hepatrial.trials.validators import RuleViolation

    lab = trial["labs"]["W1"]
    with pytest.raises(RuleViolation):
        store.update_lab(lab, value="45", unit="mg/dL", reason="typo")
    lab.refresh_from_db()
    assert lab.value_as_entered == "2.3"
    store.update_lab(lab, value="45", unit="mg/dL", reason="typo", user=_u(trial, "coord"),
                     confirmed_out_of_range=True)
    [q] = _queries()
    assert q.value_at_raise == "45 mg/dL"
    # a further out-of-range value: the open query gets a note, no second query
    store.update_lab(lab, value="50", unit="mg/dL", reason="re-read the report",
                     user=_u(trial, "coord"), confirmed_out_of_range=True)
    assert len(_queries()) == 1
    assert _thread(q) == [("raised", "system"), ("note", "system")]
    assert q.messages.order_by("pk").last().text == (
        "value changed to 50 mg/dL = 855 umol/L, confirmed by coord")
    # the CRF's hook calling again for the same value adds nothing
    assert queries.raise_soft_range_query(lab=lab, user=_u(trial, "coord")) is None
    assert len(_thread(q)) == 2
    # a stored out-of-range value needs no confirmation when only the laboratory changes
    store.update_lab(lab, laboratory="central lab", reason="lab named")
    # closed, then a new out-of-range value: a new query
    queries.answer_query(q, text="Confirmed against the lab report.", user=_u(trial, "coord"))
    queries.close_query(q, user=_u(trial, "mon"))
    store.update_lab(lab, value="60", unit="mg/dL", reason="re-measured",
                     user=_u(trial, "coord"), confirmed_out_of_range=True)
    assert [(x.status, x.value_at_raise) for x in _queries()] == [
        ("closed", "45 mg/dL"), ("open", "60 mg/dL")]
    # an in-range correction raises nothing
    store.update_lab(lab, value="2.4", unit="mg/dL", reason="typo", user=_u(trial, "coord"))
    assert len(_queries()) == 2


def test_soft_range_refusal_keeps_every_problem(trial: dict[str, Any], store: Any) -> None:
    """A bad specimen date and an unconfirmed soft-range value are both reported."""
    from hepatrial.trials.validators import RuleViolation

    future = dt.date.today() + dt.timedelta(days=30)
    with pytest.raises(RuleViolation) as e:
        store.record_lab(participant="K01", visit_code="W1", analyte="albumin", value="70",
                         unit="g/L", specimen_date=future)
    assert sorted(e.value.by_field()) == ["specimen_date", "value"]


# ---------------------------------------------------------------------- visit window
def test_out_of_window_visit_date_raises_a_query_and_a_new_date_adds_a_note(
        trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.models import ProtocolDeviation, Visit

    store.record_visit(participant="K02", visit_code="W1",
                       actual_date=DAY0 + dt.timedelta(days=7))  # in window: nothing
    assert _queries() == []
    store.record_visit(participant="K01", visit_code="W2",
                       actual_date=DAY0 + dt.timedelta(days=18), user=_u(trial, "coord"))
    w2 = Visit.objects.get(participant__study_id="K01", code="W2")
    [q] = _queries()
    assert (q.origin, q.model_label, q.object_pk, q.field_name, q.value_at_raise,
            q.visit_id) == ("visit_window", "trials.visit", str(w2.pk), "actual_date",
                            "2008-02-07", w2.pk)
    assert q.text == ("W2 done on 2008-02-07 (day 18) is late: the window is day 11 to 17 "
                      "(target 14). Please confirm the date against the source document.")
    assert ProtocolDeviation.objects.filter(visit=w2, category="visit_window").count() == 1
    store.record_visit(participant="K01", visit_code="W2",
                       actual_date=DAY0 + dt.timedelta(days=19), reason="date corrected")
    assert len(_queries()) == 1
    assert q.messages.order_by("pk").last().text == (
        "date changed to 2008-02-08 (day 19), still late")
    store.record_visit(participant="K01", visit_code="W2",
                       actual_date=DAY0 + dt.timedelta(days=14), reason="date corrected")
    assert len(_queries()) == 1  # back in window: the open query stays for the monitor


def test_early_visit_raises_a_window_query(trial: dict[str, Any], store: Any) -> None:
    store.record_visit(participant="K02", visit_code="W1",
                       actual_date=DAY0 + dt.timedelta(days=4))
    [q] = _queries()
    assert q.origin == "visit_window" and "is early: the window is day 5 to 9" in q.text


# ---------------------------------------------------------------------- raise_auto_queries
def test_missing_items_raise_queries_when_the_form_is_marked_complete(
        trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.services import queries

    assert queries.raise_auto_queries(participant="K01", visit_code="W1") == []
    store.record_deviation(participant="K01", category="other", visit_code="W1",
                           date=DAY0 + dt.timedelta(days=7),
                           description="item not done: albumin - sample haemolysed")
    new = queries.raise_auto_queries(participant="K01", visit_code="W1", completing=True,
                                     user=_u(trial, "coord"))
    assert [(q.origin, q.model_label, q.object_pk, q.field_name, q.item) for q in new] == [
        ("missing_item", "trials.labresult", "", "value_as_entered", "creatinine")]
    assert new[0].text == ("W1: creatinine is required at this visit and was neither entered "
                           "nor recorded as not done when coord marked the form complete. "
                           "Please enter it, or record it as not done with the reason.")
    assert queries.raise_auto_queries(participant="K01", visit_code="W1",
                                      completing=True) == []
    # a visit not done has no required items to query
    assert queries.raise_auto_queries(participant="K01", visit_code="W4",
                                      completing=True) == []


def test_raise_auto_queries_finds_a_value_loaded_without_confirmation(
        trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import LabResult
    from hepatrial.trials.services import queries

    w1 = trial["labs"]["W1"]
    row = LabResult(participant_id=w1.participant_id, visit_id=w1.visit_id, analyte="sodium",
                    loinc="2951-2", value_as_entered="105", unit_as_entered="mmol/L",
                    value=105.0, unit="mmol/L", specimen_date=w1.specimen_date)
    audit.bulk_create(LabResult, [row], reason="import")  # an importer's path
    [q] = queries.raise_auto_queries(participant="K01", visit_code="W1")
    assert (q.origin, q.item, q.value_at_raise) == ("soft_range", "sodium", "105 mmol/L")
    assert "found by the automatic checks" in q.text and "lower than expected" in q.text
    queries.answer_query(q, text="checked", user=_u(trial, "coord"))
    queries.close_query(q, user=_u(trial, "mon"))
    assert queries.raise_auto_queries(participant="K01", visit_code="W1") == []


# ---------------------------------------------------------------------- manual queries
def test_monitor_raises_a_query_on_any_field(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.models import ClinicalAssessment, Participant, Visit

    q = _manual(trial)
    assert (q.origin, q.status, q.item, q.value_at_raise, q.raised_by.get_username(),
            q.visit.code) == ("manual", "open", "bilirubin", "2.3 mg/dL", "mon", "W1")
    assert _thread(q) == [("raised", "mon")]
    c = ClinicalAssessment.objects.get(visit__code="W1", participant__study_id="K01")
    q2 = _manual(trial, model="clinicalassessment", object_pk=c.pk, field="ascites",
                 text="Ascites grade per the physician's note?")
    assert (q2.item, q2.value_at_raise, q2.visit.code) == ("ascites", "slight", "W1")
    k01 = Participant.objects.get(study_id="K01")
    q3 = _manual(trial, by="dm", model="trials.participant", object_pk=k01.pk,
                 field="year_of_birth", text="Year of birth per the ID?")
    assert (q3.visit, q3.value_at_raise, q3.item) == (None, "1960", "")
    w1 = Visit.objects.get(participant=k01, code="W1")
    q4 = _manual(trial, model="visit", object_pk=w1.pk, field="actual_date",
                 text="Visit date?", visit_code="W1")
    assert q4.value_at_raise == "2008-01-27"
    # an item never entered: no object, the visit and the analyte
    q5 = _manual(trial, object_pk=None, item="albumin", visit_code="W1",
                 text="Albumin was due at W1: please enter it.")
    assert (q5.object_pk, q5.item, q5.visit.code) == ("", "albumin", "W1")


@pytest.mark.parametrize(("kw", "fields"), [
    ({"text": "  "}, ["text"]),
    ({"model": "user"}, ["model"]),
    ({"model": "lock"}, ["model"]),
    ({"field": "nope"}, ["field"]),
    ({"object_pk": 999999}, ["object_pk"]),
    ({"object_pk": "abc"}, ["object_pk"]),
    ({"text": "", "field": "nope"}, ["text", "field"]),
    ({"visit_code": "D0"}, ["visit"]),
    ({"object_pk": None, "item": "bilirubin", "visit_code": "W1"}, ["object_pk"]),
    ({"object_pk": None, "item": "nonsense", "visit_code": "W1"}, ["item"]),
    ({"object_pk": None, "item": "albumin"}, ["object_pk"]),
    ({"text": "x" * 4001}, ["text"]),
])
def test_raise_query_rules(trial: dict[str, Any], store: Any, kw: dict[str, Any],
                           fields: list[str]) -> None:
    from hepatrial.trials.validators import RuleViolation

    before = _ledger_len()
    with pytest.raises(RuleViolation) as e:
        _manual(trial, **kw)
    assert list(e.value.by_field()) == fields
    assert _ledger_len() == before


def test_a_record_of_another_participant_is_refused(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as e:
        _manual(trial, object_pk=trial["labs"]["K02"].pk)
    assert str(e.value) == (f"participant K01 query object_pk: participant K01 has no "
                            f"trials.labresult {trial['labs']['K02'].pk}")


@pytest.mark.parametrize("who", ["coord", "inv", "qa", "aud", "adm"])
def test_only_monitors_and_data_managers_raise(trial: dict[str, Any], store: Any,
                                              who: str) -> None:
    from hepatrial.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        _manual(trial, by=who)
    assert _queries() == []


def test_site_scope_of_raising(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.models import Participant

    k03 = Participant.objects.get(study_id="K03")
    args = {"participant": "K03", "model": "participant", "object_pk": k03.pk,
            "field": "sex", "text": "Sex per the source?"}
    with pytest.raises(PermissionDenied, match="not a member of site S02"):
        _manual(trial, by="mon", **args)
    assert _manual(trial, by="dm", **args).participant == k03  # data manager: every site


def test_system_account_raises_only_automatic_queries(trial: dict[str, Any],
                                                      store: Any) -> None:
    from hepatrial.trials.services import queries
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation, match="raised by a named person"):
        queries.raise_query(participant="K01", model="labresult",
                            object_pk=trial["labs"]["W1"].pk, field="value_as_entered",
                            text="check", user=None)


@pytest.mark.parametrize("level", ["visit", "participant", "trial"])
def test_no_query_on_locked_data(trial: dict[str, Any], store: Any, level: str) -> None:
    from hepatrial.trials.validators import RuleViolation

    target = {"visit": {"participant": "K01", "visit_code": "W1"},
              "participant": {"participant": "K01"}, "trial": {}}[level]
    store.lock(level=level, user="dm", reason="monitoring done", **target)
    with pytest.raises(RuleViolation) as e:
        _manual(trial)
    assert "locked" in str(e.value)
    assert _queries() == []


def test_a_lock_of_another_visit_does_not_stop_a_query(trial: dict[str, Any],
                                                       store: Any) -> None:
    store.lock(level="visit", participant="K01", visit_code="D0", user="dm", reason="done")
    assert _manual(trial).status == "open"


# ---------------------------------------------------------------------- answer, close, reopen
def test_full_thread_is_audited_and_verifies(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.services import queries

    q = _manual(trial)
    queries.answer_query(q, text="Checked: 2.3 mg/dL on the report.", user=_u(trial, "coord"))
    q.refresh_from_db()
    assert q.status == "answered"
    queries.reopen_query(q, text="The report says 3.2: please correct.", user=_u(trial, "mon"))
    q.refresh_from_db()
    assert q.status == "open"
    queries.answer_query(q, text="Corrected to 3.2 (transcription).", user=_u(trial, "inv"))
    queries.close_query(q, user=_u(trial, "mon"), text="Thanks.")
    q.refresh_from_db()
    assert (q.status, q.closed_by.get_username()) == ("closed", "mon")
    assert q.closed_at is not None
    assert _thread(q) == [("raised", "mon"), ("answered", "coord"), ("reopened", "mon"),
                          ("answered", "inv"), ("closed", "mon")]
    assert [m.text for m in q.messages.order_by("pk")][-1] == "Thanks."
    reasons = [(h.history_type, h.status, h.history_change_reason, h.history_user.username)
               for h in q.history.order_by("history_date", "history_id")]
    assert reasons == [
        ("+", "open", None, "mon"),
        ("~", "answered", "query answered: Checked: 2.3 mg/dL on the report.", "coord"),
        ("~", "open", "query reopened: The report says 3.2: please correct.", "mon"),
        ("~", "answered", "query answered: Corrected to 3.2 (transcription).", "inv"),
        ("~", "closed", "query closed: Thanks.", "mon"),
    ]
    queries.reopen_query(q, text="One more check.", user=_u(trial, "mon"))
    q.refresh_from_db()
    assert (q.status, q.closed_by, q.closed_at) == ("open", None, None)
    assert audit.verify() == []


def test_answer_rules(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.services import queries
    from hepatrial.trials.validators import RuleViolation

    q = _manual(trial)
    for who in ("mon", "dm", "qa", "aud", "inv2"):
        with pytest.raises(PermissionDenied):
            queries.answer_query(q, text="x", user=_u(trial, who))
    with pytest.raises(RuleViolation) as e:
        queries.answer_query(q, text=" ", user=_u(trial, "coord"))
    assert list(e.value.by_field()) == ["text"]
    queries.answer_query(q, text="first", user=_u(trial, "coord"))
    queries.answer_query(q, text="and a follow-up", user=_u(trial, "coord"))  # still answered
    queries.close_query(q, user=_u(trial, "mon"))
    with pytest.raises(RuleViolation) as e:
        queries.answer_query(q, text="late", user=_u(trial, "coord"))
    assert str(e.value) == (f"participant K01 query {q.pk} status: the query is closed: "
                            "cannot answer it (re-open it first)")


def test_close_and_reopen_rules(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.services import queries
    from hepatrial.trials.validators import RuleViolation

    q = _manual(trial)
    with pytest.raises(PermissionDenied):
        queries.close_query(q, user=_u(trial, "coord"))
    with pytest.raises(RuleViolation, match="only the person who raised the query may close"):
        queries.close_query(q, user=_u(trial, "dm"))
    with pytest.raises(RuleViolation, match="still open"):
        queries.reopen_query(q, text="x", user=_u(trial, "mon"))
    queries.answer_query(q, text="ok", user=_u(trial, "coord"))
    with pytest.raises(RuleViolation) as e:
        queries.reopen_query(q, text="", user=_u(trial, "mon"))
    assert list(e.value.by_field()) == ["text"]
    with pytest.raises(RuleViolation, match="only the person who raised the query may reopen"):
        queries.reopen_query(q, text="no", user=_u(trial, "dm"))
    queries.close_query(q, user=_u(trial, "mon"))
    with pytest.raises(RuleViolation, match="already closed"):
        queries.close_query(q, user=_u(trial, "mon"))
    # the raiser may withdraw an open query before any answer
    q2 = _manual(trial)
    queries.close_query(q2, user=_u(trial, "mon"), text="raised by mistake")
    q2.refresh_from_db()
    assert q2.status == "closed"


def test_automatic_query_is_closed_by_any_monitor_or_data_manager(
        trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.services import queries
    from hepatrial.trials.validators import RuleViolation

    store.record_lab(participant="K01", visit_code="W1", analyte="albumin", value="62",
                     unit="g/L", user=_u(trial, "coord"), confirmed_out_of_range=True)
    [q] = _queries()
    queries.answer_query(q, text="Confirmed on the report.", user=_u(trial, "coord"))
    with pytest.raises(PermissionDenied):
        queries.close_query(q, user=_u(trial, "inv"))
    with pytest.raises(RuleViolation, match="named person"):
        queries.close_query(q, user=None)
    queries.close_query(q, user=_u(trial, "dm"))
    queries.reopen_query(q, text="Report not in the file.", user=_u(trial, "mon"))
    q.refresh_from_db()
    assert q.status == "open"


def test_steps_under_locks(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.services import queries
    from hepatrial.trials.validators import RuleViolation

    q = _manual(trial)
    store.lock(level="visit", participant="K01", visit_code="W1", user="dm", reason="done")
    queries.answer_query(q, text="Confirmed: no change needed.", user=_u(trial, "coord"))
    queries.close_query(q, user=_u(trial, "mon"))  # the conversation can end on locked data
    with pytest.raises(RuleViolation, match="locked"):
        queries.reopen_query(q, text="again", user=_u(trial, "mon"))
    store.unlock(level="visit", participant="K01", visit_code="W1", user="dm",
                 reason="query re-opened")
    queries.reopen_query(q, text="again", user=_u(trial, "mon"))
    store.lock(level="trial", user="dm", reason="database lock")
    for fn, who in ((queries.answer_query, "coord"), (queries.close_query, "mon")):
        with pytest.raises(RuleViolation, match="the trial is locked"):
            fn(q, text="x", user=_u(trial, who))


def test_unknown_query_is_not_found(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import NotFoundError
    from hepatrial.trials.services import queries

    with pytest.raises(NotFoundError, match="query 424242 does not exist"):
        queries.answer_query(424242, text="x", user=_u(trial, "coord"))


def test_queries_and_sdv_leave_a_signature_valid(trial: dict[str, Any], store: Any) -> None:
    """A query is about the data, not the data: raising, answering, closing it (and an SDV
    mark) does not invalidate the investigator's signature of the visit."""
    from hepatrial.trials.services import queries, sdv, signing
    from tests.store._trial import PASSWORD

    sig = signing.sign(level="visit", participant="K01", visit_code="W1",
                       meaning="I reviewed and approve these data", user="inv",
                       password=PASSWORD)
    q = _manual(trial)
    queries.answer_query(q, text="ok", user=_u(trial, "coord"))
    queries.close_query(q, user=_u(trial, "mon"))
    sdv.verify_source(participant="K01", visit_code="W1", form="labs", user=_u(trial, "mon"))
    assert str(signing.signature_status(sig)) == "valid"


# ---------------------------------------------------------------------- selectors
def test_addressed_to_each_role(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.services import queries

    manual = _manual(trial)
    by_dm = _manual(trial, by="dm", text="DM question")
    store.record_lab(participant="K01", visit_code="W1", analyte="albumin", value="62",
                     unit="g/L", user=_u(trial, "coord"), confirmed_out_of_range=True)
    auto = _queries(origin="soft_range")[0]

    def ids(who: str) -> list[int]:
        return [q.pk for q in queries.addressed_to(_u(trial, who))]

    assert ids("coord") == ids("inv") == [manual.pk, by_dm.pk, auto.pk]
    assert ids("inv2") == ids("mon") == ids("dm") == ids("aud") == ids("qa") == []
    for q in (manual, by_dm, auto):
        queries.answer_query(q, text="answered", user=_u(trial, "coord"))
    assert ids("coord") == []
    assert ids("mon") == [manual.pk, auto.pk]
    assert ids("dm") == [by_dm.pk, auto.pk]
    assert [queries.waiting_for(q) for q in queries.queries(status="answered")] == [
        "mon", "dm", "a monitor or data manager"]
    assert queries.addressed_to(None) == []


def test_open_counts_by_age_and_per_visit(trial: dict[str, Any], store: Any) -> None:
    from django.utils import timezone

    from hepatrial.trials.models import Participant, Query, Site, Visit
    from hepatrial.trials.services import queries

    today = dt.date(2024, 3, 31)
    ages = (0, 7, 8, 14, 15, 30, 31, 400)
    made = [_manual(trial, text=f"age {a}") for a in ages]
    for q, age in zip(made, ages, strict=True):
        at = timezone.make_aware(dt.datetime.combine(today - dt.timedelta(days=age),
                                                     dt.time(23, 59)), dt.UTC)
        Query.objects.filter(pk=q.pk).update_with_reason("test: raised earlier", raised_at=at)
    queries.answer_query(made[0], text="ok", user=_u(trial, "coord"))
    queries.close_query(made[-1], user=_u(trial, "mon"))  # closed: not counted
    s01 = Site.objects.get(code="S01").pk
    got = [(r["bucket"], r["n"], r["open"], r["answered"])
           for r in queries.open_counts_by_age([s01], today)]
    assert got == [("0-7 days", 2, 1, 1), ("8-14 days", 2, 2, 0), ("15-30 days", 2, 2, 0),
                   ("over 30 days", 1, 1, 0)]
    s02 = Site.objects.get(code="S02").pk
    assert [r["n"] for r in queries.open_counts_by_age([s02], today)] == [0, 0, 0, 0]
    made[3].refresh_from_db()
    assert queries.age_days(made[3], today) == 14
    k01 = Participant.objects.get(study_id="K01")
    w1 = Visit.objects.get(participant=k01, code="W1")
    assert queries.open_counts([k01.pk]) == {(k01.pk, w1.pk): 7}


# ---------------------------------------------------------------------- the pure rules
@pytest.mark.parametrize(("step", "status", "ok"), [
    ("answer", "open", "answered"), ("answer", "answered", "answered"), ("answer", "closed", None),
    ("close", "open", "closed"), ("close", "answered", "closed"), ("close", "closed", None),
    ("reopen", "open", None), ("reopen", "answered", "open"), ("reopen", "closed", "open"),
])
def test_check_query_step_transitions(step: str, status: str, ok: str | None) -> None:
    from hepatrial.trials.validators import RuleViolation
    from hepatrial.trials.validators.query import check_query_step

    facts = {"record": "q", "step": step, "status": status, "origin": "manual",
             "is_raiser": True, "may_raise": True, "may_answer": True, "named_person": True,
             "lock": None}
    if ok is None:
        with pytest.raises(RuleViolation) as e:
            check_query_step(**facts)
        assert list(e.value.by_field()) == ["status"]
    else:
        assert check_query_step(**facts) == ok


def test_check_query_step_collects_every_reason() -> None:
    from hepatrial.trials.validators import RuleViolation
    from hepatrial.trials.validators.query import check_query_step

    with pytest.raises(RuleViolation) as e:
        check_query_step(record="q 1", step="reopen", status="open", origin="manual",
                         is_raiser=False, may_raise=True, may_answer=False,
                         named_person=False, lock="trial")
    assert [str(p) for p in e.value.problems] == [
        "q 1: the trial is locked (database lock): no query step can be taken",
        "q 1: reopen: a named person must reopen a query (not the system account)",
        "q 1 status: the query is open: cannot reopen it (it is still open (waiting for the "
        "site))",
        "q 1: only the person who raised the query may reopen it",
    ]
    assert check_query_step(record="q", step="raise", status="", origin="manual",
                            is_raiser=True, may_raise=True, may_answer=False,
                            named_person=True, lock=None) == "open"
    with pytest.raises(KeyError):
        check_query_step(record="q", step="delete", status="open", origin="manual",
                         is_raiser=True, may_raise=True, may_answer=True, named_person=True,
                         lock=None)


def test_soft_range_problem_is_pure_and_inclusive() -> None:
    from hepatrial.trials.validators.query import soft_range_problem

    def p(value: float, confirmed: bool = False) -> str | None:
        got = soft_range_problem(record="r", analyte="inr", value_text=str(value), unit="1",
                                 canonical=value, canonical_unit="1", expected=(0.8, 8.0),
                                 confirmed=confirmed)
        return None if got is None else got.reason

    assert p(0.8) is None and p(8.0) is None and p(8.01, confirmed=True) is None
    assert p(0.79) == ("0.79 1 is lower than expected for inr (0.8-8 1): check it against "
                       "the source and confirm it (confirmed_out_of_range) to save it; a "
                       "confirmed value opens a query")
    assert p(8.01).startswith("8.01 1 is higher than expected for inr (0.8-8 1)")
