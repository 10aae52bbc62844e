"""Bulk writes with history and audit ledger, fast enough for a million lab rows.

Two paths, same records:

* :func:`create_with_history` - ``Model.objects.bulk_create`` then simple_history's
  ``bulk_history_create`` (``+`` rows carrying the reason and user), then
  ``hepatrial.trials.audit.append`` on the history rows, all in the caller's transaction.
  Used for participants, visits and clinical assessments (few rows).
* :func:`fast_create_with_history` - for lab results: the same three inserts done with
  ``cursor.executemany`` on pre-adapted tuples, skipping the per-value SQL compilation of the ORM
  (which caps ``bulk_create`` at ~15 000 rows/s on SQLite). The history rows have exactly the
  columns simple_history writes (every tracked field + ``history_date``, ``history_user``,
  ``history_change_reason``, ``history_type='+'``); they are read back as history model instances
  for the audit ledger.

Updates go through :func:`update_with_history` (``bulk_update`` + ``~`` history rows with the
reason + ledger).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models
from simple_history.utils import get_history_manager_for_model

__all__ = ["create_with_history", "fast_create_with_history", "update_with_history"]

CHUNK = 20_000


def _ledger(history_rows: Sequence[Any]) -> None:
    if not history_rows:
        return
    from hepatrial.trials import audit

    audit.append(list(history_rows))


def create_with_history(model: type[models.Model], objs: list[models.Model], *, reason: str,
                        user: Any, date: Any, batch_size: int = 2000) -> list[models.Model]:
    """``bulk_create`` + ``bulk_history_create`` + ledger; returns the objects with their pks."""
    if not objs:
        return []
    created = model._default_manager.bulk_create(objs, batch_size=batch_size)
    if not created or created[0].pk is None:  # pragma: no cover - SQLite >= 3.35 and PG return pks
        raise RuntimeError(f"{model._meta.label}: database did not return primary keys")
    history = get_history_manager_for_model(model).bulk_history_create(
        created, batch_size=batch_size, default_user=user, default_change_reason=reason,
        default_date=date)
    _ledger(history)
    return created


def update_with_history(model: type[models.Model], objs: list[models.Model], fields: list[str],
                        *, reason: str, user: Any, date: Any, batch_size: int = 2000) -> int:
    """``bulk_update`` of ``fields`` + ``~`` history rows carrying ``reason`` + ledger."""
    if not objs:
        return 0
    from hepatrial.trials.base import bulk_writes_allowed

    with bulk_writes_allowed():
        n = model._default_manager.bulk_update(objs, fields, batch_size=batch_size)
    history = get_history_manager_for_model(model).bulk_history_create(
        objs, batch_size=batch_size, update=True, default_user=user,
        default_change_reason=reason, default_date=date)
    _ledger(history)
    return n


def _adapter(field: models.Field) -> Any:
    ops = connection.ops
    internal = field.get_internal_type()
    if internal == "DateField":
        return ops.adapt_datefield_value
    if internal == "DateTimeField":
        return ops.adapt_datetimefield_value
    return None


def _insert_many(table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    qn = connection.ops.quote_name
    cols = ", ".join(qn(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {qn(table)} ({cols}) VALUES ({marks})"
    with connection.cursor() as cur:
        cur.executemany(sql, rows)


def _max_pk(model: type[models.Model]) -> int:
    qn = connection.ops.quote_name
    pk = model._meta.pk.column
    with connection.cursor() as cur:
        cur.execute(f"SELECT MAX({qn(pk)}) FROM {qn(model._meta.db_table)}")
        (value,) = cur.fetchone()
    return int(value or 0)


def fast_create_with_history(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Sequence[tuple],
    *,
    key_columns: Sequence[str],
    reason: str,
    user_id: int | None,
    date: Any,
    chunk: int = CHUNK,
) -> int:
    """Insert ``rows`` (tuples of *attnames* ``columns``, already DB-ready except dates) into
    ``model`` with one ``+`` history row each and the audit ledger appended. Returns the count.

    ``key_columns`` must be a unique key of the model (used to read the new primary keys back).
    Must run inside a transaction (the caller's ``atomic``).
    """
    if not rows:
        return 0
    if not connection.in_atomic_block:
        raise RuntimeError("fast_create_with_history must run inside transaction.atomic()")
    meta = model._meta
    fields = {f.attname: f for f in meta.concrete_fields}
    db_cols = [fields[c].column for c in columns]
    adapters = [_adapter(fields[c]) for c in columns]
    hmodel = get_history_manager_for_model(model).model
    hmeta = hmodel._meta
    tracked = {f.attname for f in hmodel.tracked_fields}
    pk_att = meta.pk.attname
    missing = tracked - set(columns) - {pk_att}
    if missing:
        raise ValueError(f"{meta.label}: fast insert needs every tracked field; missing {missing}")
    extra = {"history_date", "history_user_id", "history_change_reason", "history_type",
             hmeta.pk.attname}
    unknown = {f.attname for f in hmeta.concrete_fields} - tracked - extra
    if unknown:  # pragma: no cover - custom historical fields would need values
        raise ValueError(f"{hmeta.label}: unexpected history columns {sorted(unknown)}")
    hdate = connection.ops.adapt_datetimefield_value(date)
    reason_text = reason
    h_attnames = [pk_att, *columns, "history_date", "history_user_id", "history_change_reason",
                  "history_type"]
    hfields = {f.attname: f for f in hmeta.concrete_fields}
    h_cols = [hfields[a].column for a in h_attnames]
    key_pos = [list(columns).index(k) for k in key_columns]
    qn = connection.ops.quote_name

    total = 0
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        if any(adapters):
            part = [tuple(a(v) if a is not None and v is not None else v
                          for a, v in zip(adapters, r, strict=True)) for r in part]
        before = _max_pk(model)
        _insert_many(meta.db_table, db_cols, part)
        key_sql = ", ".join(qn(fields[k].column) for k in key_columns)
        with connection.cursor() as cur:
            cur.execute(f"SELECT {qn(meta.pk.column)}, {key_sql} FROM {qn(meta.db_table)} "
                        f"WHERE {qn(meta.pk.column)} > %s", [before])
            ids = {tuple(r[1:]): r[0] for r in cur.fetchall()}
        hrows = []
        for r in part:
            pk = ids[tuple(r[p] for p in key_pos)]
            hrows.append((pk, *r, hdate, user_id, reason_text, "+"))
        hbefore = _max_pk(hmodel)
        _insert_many(hmeta.db_table, h_cols, hrows)
        history = list(hmodel._default_manager.filter(pk__gt=hbefore).order_by("pk"))
        _ledger(history)
        total += len(part)
    return total
