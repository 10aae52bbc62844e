"""The fast bulk path (:mod:`hepatrial.ingest.bulk`) on SQLite: many rows per ``INSERT OR FAIL``
statement, the whole write one savepoint. What it stores is what the ORM reads back and what
``audit.verify`` recomputes; a write that fails half-way leaves nothing of itself, even when
the caller's transaction goes on."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

FIELDS = ("participant_id", "visit_id", "analyte", "loinc", "value_as_entered",
          "unit_as_entered", "value", "unit", "laboratory", "specimen_date")


def _lab_data(visits: list[tuple[int, int]], analytes: list[str]) -> dict[str, list[Any]]:
    """One lab row per visit and analyte, every value distinct per row (columns by attname)."""
    rows = [(pid, vid, a, f"L-{a}", f"{k}.{k % 7}", "mg/dL", k + (k % 7) / 10 + 1e-9, "umol/L",
             f"lab {k % 3}", dt.date(2024, 1, 1) + dt.timedelta(days=k % 40) if k % 5 else None)
            for k, ((pid, vid), a) in enumerate(
                ((v, a) for v in visits for a in analytes), start=1)]
    return {f: [r[i] for r in rows] for i, f in enumerate(FIELDS)}


@pytest.fixture()
def lab_targets(kharaziha_store: Any) -> tuple[list[tuple[int, int]], list[str]]:
    """(participant id, visit id) of every scheduled visit of P01, P02 and P03, and the
    registry's analyte codes: 3 x 7 visits x 12 analytes = 252 lab rows."""
    from hepatrial.protocol import analytes as reg
    from hepatrial.trials import services
    from hepatrial.trials.models import Visit
    from tests.store.conftest import enrol

    enrol(services, "P03", day0=dt.date(2024, 1, 17))
    visits = list(Visit.objects.order_by("id").values_list("participant_id", "id"))
    assert len(visits) == 21
    return visits, sorted(reg.ANALYTES)


def _insert(data: dict[str, list[Any]]) -> int:
    from hepatrial.ingest.bulk import fast_create_with_history
    from hepatrial.trials.models import LabResult

    return fast_create_with_history(LabResult, data, key_columns=("visit_id", "analyte"),
                                    reason="bulk test", user_id=None, date=timezone.now(),
                                    chunk=100)


def test_many_rows_per_statement_store_exactly_the_values(lab_targets: Any) -> None:
    from hepatrial.ingest.bulk import MAX_ROWS_PER_INSERT
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger, LabResult

    visits, analytes = lab_targets
    data = _lab_data(visits, analytes)
    n = len(data["analyte"])
    # 11 bound values per lab row: 90 rows per statement (999 at most), a shorter last one
    per = min(MAX_ROWS_PER_INSERT, connection.features.max_query_params // 11)
    assert (per, n) == (90, 252)
    seq0 = audit.head()[0]
    with transaction.atomic():
        assert _insert(data) == n
    stored = list(LabResult.objects.order_by("id").values_list(*FIELDS))
    assert stored == list(zip(*(data[f] for f in FIELDS), strict=True))
    history = list(LabResult.history.order_by("history_id").values_list(
        "id", *FIELDS, "history_type", "history_change_reason"))
    ids = list(LabResult.objects.order_by("id").values_list("id", flat=True))
    assert history == [(i, *row, "+", "bulk test") for i, row in zip(ids, stored, strict=True)]
    ledger = list(AuditLedger.objects.filter(seq__gt=seq0).order_by("seq").values_list(
        "seq", "history_model", "object_pk", "history_type"))
    assert ledger == [(seq0 + k, "trials.historicallabresult", str(i), "+")
                      for k, i in enumerate(ids, start=1)]
    assert audit.verify() == []


def test_a_write_failing_half_way_leaves_nothing_of_itself(lab_targets: Any) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger, LabResult

    visits, analytes = lab_targets
    first = _lab_data(visits[:1], analytes)  # 12 rows of the first visit
    rest = _lab_data(visits[1:], analytes)
    # row 200 of the second write repeats (visit, analyte) of the first write: the unique
    # constraint fails in its second batch of 100, after the first batch (rows, history,
    # ledger) and 99 rows of the second were written
    for f in FIELDS:
        rest[f][199] = first[f][0]
    with transaction.atomic():  # the caller's transaction goes on after the failure
        assert _insert(first) == 12
        after_first = (LabResult.objects.count(), LabResult.history.count(),
                       AuditLedger.objects.count(), audit.head())
        with pytest.raises(IntegrityError, match="UNIQUE constraint failed"):
            _insert(rest)
        assert (LabResult.objects.count(), LabResult.history.count(),
                AuditLedger.objects.count(), audit.head()) == after_first
    assert LabResult.objects.count() == 12
    assert audit.verify() == []
