"""A unit of work (``services.unit_of_work``, :mod:`hepatrial.trials.audit.unit`; issue 10)
shares the reads of the checks every write repeats - active locks, site membership, the
visit as stored - and still refuses exactly what the checks refuse: a lock, a membership
removed or a visit date recorded inside the unit are seen by the next write of the unit, and
nothing remembered outlives a write that a savepoint undid. The ledger stays verifiable.

Real SQLite through pytest-django (the ``db`` fixture runs each test in a transaction, so
``transaction.atomic()`` here opens a savepoint, as in a view run by the test client).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from tests.store._trial import build, fast_passwords
from tests.store.conftest import DAY0


@pytest.fixture
def trial(store: Any, settings: Any) -> dict[str, Any]:
    fast_passwords(settings)
    return build(store)


def _count(captured: list[dict[str, Any]], table: str) -> int:
    """Statements reading ``table`` (SELECT ... FROM "table")."""
    return sum(1 for q in captured if q["sql"].startswith("SELECT")
               and f'FROM "{table}"' in q["sql"])


def _labs(services: Any, user: Any, analytes: dict[str, tuple[str, str]]) -> list[Any]:
    """Record labs of K01's W2, participant and visit given as instances (as the eCRF does),
    so that the only visit read is the check's own (the visit as stored now)."""
    from hepatrial.trials.models import Participant, Visit

    p = Participant.objects.get(study_id="K01")
    v = Visit.objects.get(participant=p, code="W2")
    with CaptureQueriesContext(connection) as q:
        out = [services.record_lab(participant=p, visit_code=v, analyte=a, value=val,
                                   unit=u, user=user) for a, (val, u) in analytes.items()]
    _last.clear()
    _last.extend(q.captured_queries)
    return out


#: the statements of the last :func:`_labs`
_last: list[dict[str, Any]] = []


PANEL = {"creatinine": ("1.0", "mg/dL"), "albumin": ("32", "g/L"), "sodium": ("138", "mmol/L")}


def _w2_done(services: Any) -> None:
    services.record_visit(participant="K01", visit_code="W2",
                          actual_date=DAY0 + dt.timedelta(days=14))


def test_outside_a_unit_every_write_reads_again(trial: dict[str, Any]) -> None:
    from hepatrial.trials import services

    _w2_done(services)
    with transaction.atomic():
        _labs(services, trial["users"]["coord"], PANEL)
    assert _count(_last, "trials_lock") == 3
    assert _count(_last, "trials_sitemembership") == 3
    assert _count(_last, "trials_visit") == 3


def test_inside_a_unit_the_checks_read_once_and_every_write_is_audited(
        trial: dict[str, Any]) -> None:
    from hepatrial.trials import audit, services
    from hepatrial.trials.models import AuditLedger, LabResult

    _w2_done(services)
    before = AuditLedger.objects.count()
    with transaction.atomic(), services.unit_of_work():
        labs = _labs(services, trial["users"]["coord"], PANEL)
    assert _count(_last, "trials_lock") == 1
    assert _count(_last, "trials_sitemembership") == 1
    assert _count(_last, "trials_visit") == 1
    # each write still has its history row and ledger entry, and the chain verifies
    assert AuditLedger.objects.count() == before + 3
    assert [LabResult.history.filter(id=lab.pk).count() for lab in labs] == [1, 1, 1]
    assert audit.verify() == []


def test_a_lock_taken_inside_the_unit_refuses_the_next_write(trial: dict[str, Any]) -> None:
    from hepatrial.errors import RecordLocked
    from hepatrial.trials import services
    from hepatrial.trials.models import LabResult

    _w2_done(services)
    users = trial["users"]
    with transaction.atomic(), services.unit_of_work():
        _labs(services, users["coord"], {"creatinine": ("1.0", "mg/dL")})
        services.lock(level="visit", participant="K01", visit_code="W2", user=users["dm"],
                      reason="monitoring done")
        with pytest.raises(RecordLocked, match="visit W2 of participant K01 is locked"):
            _labs(services, users["coord"], {"albumin": ("32", "g/L")})
    assert set(LabResult.objects.filter(visit__code="W2").values_list(
        "analyte", flat=True)) == {"creatinine"}


def test_a_direct_save_refused_and_caught_without_a_savepoint_ends_the_unit_loudly(
        trial: dict[str, Any]) -> None:
    """Inside a unit a record's own save takes no savepoint (the service around it has one):
    a refusal of a *direct* ``save()`` caught without a savepoint leaves the transaction
    unusable. The unit then ends with an error, nothing of it kept - not a silent rollback of
    the writes before the refusal (which is what Django does to an atomic block left normally
    with such an error inside). The same through the service goes on: its savepoint."""
    from hepatrial.errors import RecordLocked
    from hepatrial.trials import services
    from hepatrial.trials.models import AuditLedger, LabResult

    _w2_done(services)
    users = trial["users"]
    services.lock(level="visit", participant="K01", visit_code="W1", user=users["dm"],
                  reason="monitoring done")
    w1 = LabResult.objects.get(visit__code="W1", analyte="bilirubin")
    before = (LabResult.objects.count(), AuditLedger.objects.count())
    with pytest.raises(transaction.TransactionManagementError,
                       match="caught without a savepoint.*nothing of the unit was saved"):
        with transaction.atomic(), services.unit_of_work():
            _labs(services, users["coord"], {"creatinine": ("1.0", "mg/dL")})
            w1.value_as_entered = "9.9"
            with pytest.raises(RecordLocked):
                w1.save(reason="typo", user=users["coord"])  # no savepoint of its own here
    assert (LabResult.objects.count(), AuditLedger.objects.count()) == before
    w1 = LabResult.objects.get(pk=w1.pk)
    assert w1.value_as_entered != "9.9"
    # through the service the refusal rolls back to the service's savepoint; the unit goes on
    with transaction.atomic(), services.unit_of_work():
        _labs(services, users["coord"], {"creatinine": ("1.0", "mg/dL")})
        with pytest.raises(RecordLocked):
            services.update_lab(w1, value="9.9", unit="mg/dL", reason="typo",
                                user=users["coord"])
        _labs(services, users["coord"], {"albumin": ("32", "g/L")})
    assert set(LabResult.objects.filter(visit__code="W2").values_list(
        "analyte", flat=True)) == {"creatinine", "albumin"}
    assert LabResult.objects.get(pk=w1.pk).value_as_entered != "9.9"
    from hepatrial.trials import audit

    assert audit.verify() == []


def test_a_lock_undone_by_a_savepoint_is_not_remembered(trial: dict[str, Any]) -> None:
    from hepatrial.trials import services
    from hepatrial.trials.models import Lock

    _w2_done(services)
    users = trial["users"]
    with transaction.atomic(), services.unit_of_work():
        try:
            with transaction.atomic():
                services.lock(level="trial", user=users["dm"], reason="dry run")
                with pytest.raises(Exception, match="locked"):
                    _labs(services, users["coord"], {"creatinine": ("1.0", "mg/dL")})
                raise RuntimeError("roll the lock back")
        except RuntimeError:
            pass
        assert not Lock.objects.filter(unlocked_at__isnull=True).exists()
        labs = _labs(services, users["coord"], {"albumin": ("32", "g/L")})
    assert labs[0].pk is not None and labs[0].value == 32.0


def test_a_membership_removed_inside_the_unit_refuses_the_next_write(
        trial: dict[str, Any]) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials import services
    from hepatrial.trials.models import SiteMembership

    _w2_done(services)
    coord = trial["users"]["coord"]
    with transaction.atomic(), services.unit_of_work():
        _labs(services, coord, {"creatinine": ("1.0", "mg/dL")})
        SiteMembership.objects.filter(user=coord).delete_with_reason(
            "left the site", user=trial["users"]["adm"])
        with pytest.raises(PermissionDenied, match="is not a member of site S01"):
            _labs(services, coord, {"albumin": ("32", "g/L")})


def test_a_visit_date_recorded_inside_the_unit_is_seen_by_the_next_lab(
        trial: dict[str, Any]) -> None:
    from hepatrial.trials import services
    from hepatrial.trials.validators import RuleViolation

    coord = trial["users"]["coord"]
    with transaction.atomic(), services.unit_of_work():
        with pytest.raises(RuleViolation, match="W2"):  # W2 not done yet: refused
            _labs(services, coord, {"creatinine": ("1.0", "mg/dL")})
        when = DAY0 + dt.timedelta(days=14)
        services.record_visit(participant="K01", visit_code="W2", actual_date=when,
                              user=coord)
        lab = _labs(services, coord, {"creatinine": ("1.0", "mg/dL")})[0]
    assert lab.specimen_date == when  # the visit's date as recorded inside the unit


def test_a_unit_needs_a_transaction(transactional_db: Any) -> None:
    from hepatrial.trials import services

    with pytest.raises(transaction.TransactionManagementError, match="atomic"), \
            services.unit_of_work():
        pass
