"""Locks on a visit, a casebook and the trial refuse every write mechanism (SQLite in process;
PostgreSQL through tests/_engines/test_store_on_postgresql.py; the CLI in test_e2e_locks.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from tests.store._trial import build, fast_passwords


@pytest.fixture
def trial(store: Any, settings: Any) -> dict[str, Any]:
    fast_passwords(settings)
    return build(store)


def _new_lab(lab: Any, analyte: str = "albumin") -> Any:
    from hepatrial.trials.models import LabResult

    return LabResult(
        participant_id=lab.participant_id,
        visit_id=lab.visit_id,
        analyte=analyte,
        loinc="",
        value_as_entered="30",
        unit_as_entered="g/L",
        value=30.0,
        unit="g/L",
        laboratory="",
        specimen_date=lab.specimen_date,
    )


def _fast_create(lab: Any) -> None:
    from hepatrial.ingest.bulk import fast_create_with_history
    from hepatrial.trials.models import LabResult

    new = _new_lab(lab)
    data = {
        f.attname: [getattr(new, f.attname)]
        for f in LabResult._meta.concrete_fields
        if not f.primary_key
    }
    with transaction.atomic():
        fast_create_with_history(
            LabResult, data, key_columns=("visit_id", "analyte"), reason="import",
            user_id=None, date=timezone.now(),
        )  # fmt: skip


def _fast_update(lab: Any) -> None:
    from hepatrial.ingest.bulk import fast_update_with_history
    from hepatrial.trials.models import LabResult

    with transaction.atomic():
        fast_update_with_history(
            LabResult, [lab.pk], {"laboratory": ["central"]}, reason="import correction",
            user_id=None, date=timezone.now(),
        )  # fmt: skip


def _save_change(lab: Any) -> None:
    lab.laboratory = "central"
    lab.save(reason="correction")


def _audit_bulk_update(lab: Any) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import LabResult

    lab.laboratory = "central"
    audit.bulk_update(LabResult, [lab], ["laboratory"], reason="correction")


def _model(name: str) -> Any:
    from hepatrial.trials import models

    return getattr(models, name)


#: every write mechanism, applied to a lab result of K01 visit W1 (or a new one beside it)
MECHANISMS: dict[str, Callable[[Any], Any]] = {
    "model save (change)": _save_change,
    "model save (create)": lambda lab: _new_lab(lab).save(),
    "objects.create": lambda lab: _model("LabResult").objects.create(
        **{f.attname: getattr(_new_lab(lab), f.attname)
           for f in _model("LabResult")._meta.concrete_fields if not f.primary_key}
    ),
    "model delete": lambda lab: lab.delete(reason="entered twice"),
    "queryset update": lambda lab: _model("LabResult").objects.filter(pk=lab.pk).update(
        laboratory="central"
    ),
    "queryset delete": lambda lab: _model("LabResult").objects.filter(pk=lab.pk).delete(),
    "queryset update_with_reason": lambda lab: _model("LabResult")
    .objects.filter(pk=lab.pk)
    .update_with_reason("correction", laboratory="central"),
    "queryset delete_with_reason": lambda lab: _model("LabResult")
    .objects.filter(pk=lab.pk)
    .delete_with_reason("entered twice"),
    "manager bulk_create": lambda lab: _model("LabResult").objects.bulk_create([_new_lab(lab)]),
    "audit.bulk_create": lambda lab: __import__(
        "hepatrial.trials.audit", fromlist=["bulk_create"]
    ).bulk_create(_model("LabResult"), [_new_lab(lab)], reason="import"),
    "audit.bulk_update": _audit_bulk_update,
    "fast import (raw SQL insert)": _fast_create,
    "fast import (raw SQL update)": _fast_update,
    "service record_lab": lambda lab: __import__(
        "hepatrial.trials.services", fromlist=["record_lab"]
    ).record_lab(participant="K01", visit_code="W1", analyte="albumin", value="30", unit="g/L"),
    "service update_lab": lambda lab: __import__(
        "hepatrial.trials.services", fromlist=["update_lab"]
    ).update_lab(lab, value="2.6", reason="correction"),
}

LEVELS = {
    "visit": {"level": "visit", "participant": "K01", "visit_code": "W1"},
    "participant": {"level": "participant", "participant": "K01"},
    "trial": {"level": "trial"},
}


def _locked_w1(trial: dict[str, Any], store: Any, level: str) -> tuple[Any, Any]:
    from hepatrial.trials.models import LabResult

    lock = store.lock(**LEVELS[level], user="dm", reason="monitoring done")
    return LabResult.objects.get(pk=trial["labs"]["W1"].pk), lock


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
@pytest.mark.parametrize("level", list(LEVELS))
def test_every_write_mechanism_refused_at_every_lock_level(
    trial: dict[str, Any], store: Any, level: str, mechanism: str
) -> None:
    from hepatrial.errors import RecordLocked
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger, LabResult

    lab, lock = _locked_w1(trial, store, level)
    before = (LabResult.objects.count(), AuditLedger.objects.count())
    values = list(LabResult.objects.order_by("pk").values_list())
    with pytest.raises(RecordLocked) as info:
        MECHANISMS[mechanism](lab)
    msg = str(info.value)
    assert f"(lock {lock.pk}, by dm at " in msg and "'monitoring done'" in msg
    assert "unlock it with a reason first" in msg
    target = {
        "visit": "visit W1 of participant K01 is locked",
        "participant": "the casebook of participant K01 is locked",
        "trial": "the trial is locked",
    }[level]
    assert target in msg
    assert info.value.lock_id == lock.pk and info.value.level == level  # type: ignore[attr-defined]
    # nothing was written
    assert (LabResult.objects.count(), AuditLedger.objects.count()) == before
    assert list(LabResult.objects.order_by("pk").values_list()) == values
    assert audit.verify() == []


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_every_write_mechanism_works_after_unlock(
    trial: dict[str, Any], store: Any, mechanism: str
) -> None:
    from hepatrial.trials import audit

    lab, _ = _locked_w1(trial, store, "visit")
    store.unlock(level="visit", participant="K01", visit_code="W1", user="dm",
                 reason="query on bilirubin")  # fmt: skip
    if mechanism in ("queryset update", "queryset delete"):
        from hepatrial.errors import ChangeReasonRequired

        with pytest.raises(ChangeReasonRequired):  # refused as before locks existed
            MECHANISMS[mechanism](lab)
        return
    if mechanism == "manager bulk_create":  # writes no history: verify would flag it
        MECHANISMS[mechanism](lab)
        assert {p.kind for p in audit.verify()} == {"live_unaudited"}
        return
    MECHANISMS[mechanism](lab)
    assert audit.verify() == []


def test_visit_lock_covers_only_that_visit(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import RecordLocked

    store.lock(level="visit", participant="K01", visit_code="W1", user="dm")
    # the visit row itself and its clinical assessment
    with pytest.raises(RecordLocked):
        store.record_visit(participant="K01", visit_code="W1",
                           actual_date=dt.date(2008, 1, 28), reason="typo")  # fmt: skip
    with pytest.raises(RecordLocked):
        store.update_clinical(trial["K01"].visits.get(code="W1").clinical, ascites="moderate",
                              reason="re-graded")  # fmt: skip
    # another visit of the same participant, another participant, casebook-level records
    store.update_lab(trial["labs"]["D0"], value="2.4", reason="correction")
    store.update_lab(trial["labs"]["K02"], value="2.0", reason="correction")
    store.record_consent(participant="K01", version="2.0", date="2008-02-01")


def test_casebook_lock_covers_every_record_of_the_participant(
    trial: dict[str, Any], store: Any
) -> None:
    from hepatrial.errors import RecordLocked
    from hepatrial.trials.models import Participant

    store.lock(level="participant", participant="K01", user="dm", reason="casebook complete")
    with pytest.raises(RecordLocked, match="casebook of participant K01"):
        store.record_consent(participant="K01", version="2.0", date="2008-02-01")
    with pytest.raises(RecordLocked):
        store.update_participant(Participant.objects.get(study_id="K01"), reason="typo",
                                 year_of_birth=1961)  # fmt: skip
    with pytest.raises(RecordLocked):
        store.update_lab(trial["labs"]["D0"], value="2.4", reason="correction")
    store.update_lab(trial["labs"]["K02"], value="2.0", reason="correction")  # not covered


def test_trial_lock_covers_every_record_but_accounts_sites_locks(
    trial: dict[str, Any], store: Any, settings: Any
) -> None:
    from hepatrial.errors import RecordLocked
    from tests.store._trial import _participant

    store.lock(level="trial", user="dm", reason="database lock before analysis")
    with pytest.raises(RecordLocked, match=r"trials.participant \(new row\): the trial is locked"):
        _participant(store, "K09", "S01")  # a new participant
    with pytest.raises(RecordLocked):
        store.update_lab(trial["labs"]["K02"], value="2.0", reason="correction")
    # not covered: sites, accounts, roles, locks and signatures themselves
    store.create_site(code="S03", name="third site")
    store.create_user(username="late", password=None, role="auditor")
    store.lock(level="visit", participant="K01", visit_code="W1", user="dm")
    store.unlock(level="visit", participant="K01", visit_code="W1", user="dm", reason="dup")


def test_import_into_a_locked_visit_is_refused_whole(
    trial: dict[str, Any], store: Any, tmp_path: Any
) -> None:
    from hepatrial.errors import RecordLocked
    from hepatrial.ingest.importer import import_labs
    from hepatrial.trials.models import LabResult

    store.lock(level="visit", participant="K01", visit_code="W1", user="dm")
    f = tmp_path / "labs.csv"
    f.write_text(
        "participant,visit,analyte,value,unit,date\n"
        "K02,D0,inr,1.4,1,2008-01-20\n"
        "K01,W1,albumin,30,g/L,2008-01-27\n"
    )
    n = LabResult.objects.count()
    with pytest.raises(RecordLocked, match="visit W1 of participant K01 is locked"):
        import_labs(f, today=dt.date(2030, 1, 1))
    assert LabResult.objects.count() == n  # all-or-nothing: K02's row is not written either


def test_lock_and_unlock_are_audited_workflow_events(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger, Lock

    lock = store.lock(level="participant", participant="K01", user="dm", reason="complete")
    again = store.unlock(level="participant", participant="K01", user="dm",
                         reason="late lab result")  # fmt: skip
    assert again.pk == lock.pk
    hist = list(Lock.history.filter(id=lock.pk).order_by("history_id"))
    assert [(h.history_type, h.history_user.username, h.history_change_reason) for h in hist] == [
        ("+", "dm", "locked: complete"),
        ("~", "dm", "unlocked: late lab result"),
    ]
    assert hist[1].unlocked_by_id == trial["users"]["dm"].pk and hist[1].unlocked_at
    ledger = AuditLedger.objects.filter(history_model="trials.historicallock").order_by("seq")
    assert [e.history_type for e in ledger] == ["+", "~"]
    assert audit.verify() == []
    # a new lock after an unlock is a new row
    second = store.lock(level="participant", participant="K01", user="dm")
    assert second.pk != lock.pk
    assert [lk.pk for lk in store.active_locks("K01")] == [second.pk]


def test_lock_refusals(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import ChangeReasonRequired, NotFoundError, StoreError

    store.lock(level="visit", participant="K01", visit_code="W1", user="dm")
    with pytest.raises(StoreError, match=r"visit W1 of participant K01 is already locked \(lock "):
        store.lock(level="visit", participant="K01", visit_code="W1", user="adm")
    with pytest.raises(ChangeReasonRequired, match="unlocking visit W1 of participant K01"):
        store.unlock(level="visit", participant="K01", visit_code="W1", user="dm", reason=" ")
    with pytest.raises(NotFoundError, match="the casebook of participant K01 is not locked"):
        store.unlock(level="participant", participant="K01", user="dm", reason="x")
    with pytest.raises(StoreError, match="no visit 'W9'"):
        store.lock(level="visit", participant="K01", visit_code="W9", user="dm")
    with pytest.raises(StoreError, match="level 'site'"):
        store.lock(level="site", user="dm")


def test_sql_edit_of_a_lock_row_is_caught_by_verify(trial: dict[str, Any], store: Any) -> None:
    from django.db import connection

    from hepatrial.trials import audit

    lock = store.lock(level="trial", user="dm", reason="database lock")
    with connection.cursor() as cur:  # someone unlocks behind the application's back
        cur.execute("UPDATE trials_lock SET unlocked_at = locked_at WHERE id = %s", [lock.pk])
    problems = audit.verify()
    assert [(p.kind, p.model, p.object_pk) for p in problems] == [
        ("live_edited", "trials.lock", str(lock.pk))
    ]


def test_every_audited_model_declares_its_lock_scope(db: Any) -> None:
    from hepatrial.trials.audit import locks
    from hepatrial.trials.audit.base import AuditedModel
    from hepatrial.trials.audit.locks import LockScope
    from hepatrial.trials.models import AuditLedger

    models = [m for m in AuditedModel.__subclasses__()]
    seen = set()
    stack = list(models)
    while stack:
        m = stack.pop()
        stack.extend(m.__subclasses__())
        if not m._meta.abstract and m.__module__.startswith("hepatrial."):
            seen.add(m)
    assert len(seen) >= 17
    for m in seen:
        assert "lock_scope" in m.__dict__, f"{m._meta.label} does not declare lock_scope"
        scope = m.__dict__["lock_scope"]
        assert scope is None or isinstance(scope, LockScope), m
        for att in (scope.participant, scope.visit) if scope else ():
            if att not in (None, "pk"):
                m._meta.get_field(att.removesuffix("_id"))  # the attribute exists
    assert AuditLedger not in seen
    covered = {m._meta.label for m in locks.locked_models()}
    assert {"trials.Lock", "trials.Signature", "trials.Site", "trials.UserProfile",
            "trials.SiteMembership"}.isdisjoint(covered)  # fmt: skip
    assert {"trials.Participant", "trials.Visit", "trials.LabResult", "trials.AdverseEvent",
            "trials.Administration", "trials.TrialConfig"} <= covered  # fmt: skip


def test_covering_lock_is_pure_and_picks_the_broadest() -> None:
    from hepatrial.trials.audit.locks import covering_lock

    locks = [(7, "visit", 1, 10), (5, "participant", 1, None), (9, "visit", 2, 20)]
    assert covering_lock(locks, {1}, {10}) == (5, "participant", 1, None)
    assert covering_lock(locks, {2}, {20}) == (9, "visit", 2, 20)
    assert covering_lock(locks, {2}, {21}) is None
    assert covering_lock([*locks, (11, "trial", None, None)], set(), set())[0] == 11
    assert covering_lock(locks, {3}, {None}) is None
