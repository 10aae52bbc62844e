"""The chain of custody: append-only custody events, each in the audit ledger, and an event
edited behind the application's back is caught by ``audit.verify`` (and so by
``hepatrial audit verify``, tests/cli/test_product_cli.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from tests.store import _product as P
from tests.store.conftest import DAY0

PRODUCT_MODELS = ("trials.custodyevent", "trials.harvest", "trials.cellproductbatch",
                  "trials.qcresult", "trials.manufacturingstep", "trials.inprocesscontrolresult",
                  "trials.productsignature", "trials.batchrelease", "trials.administration")


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _problems() -> list[Any]:
    """verify()'s problems on the product records (live or history rows)."""
    from hepatrial.trials import audit

    return [p for p in audit.verify()
            if p.model.replace("historical", "") in PRODUCT_MODELS]


@pytest.fixture
def given(enrolled: Any, store: Any) -> Any:
    b = P.ready_batch(store, None, "K01", DAY0)
    P.administer(store, "K01", b.batch_id, DAY0)
    return b


def test_custody_events_are_append_only(given: Any, store: Any) -> None:
    from hepatrial.errors import AuditTrailImmutable, ChangeReasonRequired
    from hepatrial.trials.models.product import CustodyEvent

    ev = CustodyEvent.objects.filter(batch=given).order_by("seq").first()
    assert ev is not None
    ev.temperature_c = 30.0
    with pytest.raises(AuditTrailImmutable, match="the chain of custody is append-only"):
        ev.save(reason="correct the temperature")
    with pytest.raises(AuditTrailImmutable):
        ev.delete(reason="duplicate")
    qs = CustodyEvent.objects.filter(pk=ev.pk)
    with pytest.raises(ChangeReasonRequired):
        qs.update(temperature_c=30.0)
    with pytest.raises(ChangeReasonRequired):
        qs.delete()
    with pytest.raises(AuditTrailImmutable):
        qs.update_with_reason("correct the temperature", temperature_c=30.0)
    with pytest.raises(AuditTrailImmutable):
        qs.delete_with_reason("duplicate")
    with pytest.raises(AuditTrailImmutable):
        CustodyEvent.history.filter(id=ev.pk).update(temperature_c=30.0)
    ev.refresh_from_db()
    assert ev.temperature_c == 20.0 and ev.history.count() == 1


def test_every_custody_event_is_in_the_ledger_in_order(given: Any, store: Any) -> None:
    from hepatrial.trials.models import AuditLedger
    from hepatrial.trials.models.product import CustodyEvent

    events = list(CustodyEvent.objects.filter(harvest=given.harvest).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, 10))
    seqs = []
    for e in events:
        rows = list(AuditLedger.objects.filter(history_model="trials.historicalcustodyevent",
                                               object_pk=str(e.pk))
                    .values_list("seq", "history_type"))
        assert len(rows) == 1 and rows[0][1] == "+"
        seqs.append(rows[0][0])
    assert seqs == sorted(seqs)  # the ledger holds them in the order they happened
    assert _problems() == []


def test_verify_catches_a_custody_event_edited_by_sql(given: Any, store: Any) -> None:
    from hepatrial.trials.models.product import CustodyEvent

    ev = CustodyEvent.objects.get(batch=given, action="receive_at_bedside")
    assert _problems() == []
    with connection.cursor() as cur:
        cur.execute("UPDATE trials_custodyevent SET temperature_c = 12.5, location = 'car' "
                    "WHERE id = %s", [ev.pk])
    problems = _problems()
    assert [(p.kind, p.model, p.object_pk) for p in problems] == [
        ("live_edited", "trials.custodyevent", str(ev.pk))]
    assert "temperature_c" in problems[0].detail


def test_verify_catches_an_edited_or_deleted_custody_history(given: Any, store: Any) -> None:
    from hepatrial.trials.models.product import CustodyEvent

    ev = CustodyEvent.objects.get(batch=given, action="administer")
    with connection.cursor() as cur:
        cur.execute("UPDATE trials_historicalcustodyevent SET actor_name = 'someone else' "
                    "WHERE id = %s", [ev.pk])
    kinds = {(p.kind, p.model) for p in _problems()}
    assert ("history_edited", "trials.historicalcustodyevent") in kinds
    ev2 = CustodyEvent.objects.get(batch=given, action="dispatch")
    with connection.cursor() as cur:
        cur.execute("DELETE FROM trials_custodyevent WHERE id = %s", [ev2.pk])
    assert ("live_deleted", "trials.custodyevent", str(ev2.pk)) in {
        (p.kind, p.model, p.object_pk) for p in _problems()}
