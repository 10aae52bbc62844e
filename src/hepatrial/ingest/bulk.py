"""Fast bulk insert of lab results with history and audit ledger (a million rows).

``Model.objects.bulk_create`` + simple_history's ``bulk_history_create`` + ``audit.append``
build three ORM objects per row and compile every value through the SQL compiler, which caps
them at a few thousand rows/s once the ledger is included. :func:`fast_create_with_history`
writes exactly the same records with ``cursor.executemany`` on plain tuples, in the caller's
transaction:

1. the rows themselves (primary keys read back by their unique key);
2. one ``+`` history row each, with the columns simple_history writes (every tracked field,
   ``history_date``, ``history_user``, ``history_change_reason`` = the import reason,
   ``history_type``);
3. one audit-ledger entry per history row, chained exactly as ``hepatrial.trials.audit.append``
   does (digest of the row's canonical JSON, ``sha256(seq|model|pk|digest|prev)``); the first
   row of each import is cross-checked against ``audit.row_digest`` and the tests run
   ``audit.verify()`` over imported data.

Participants and visits (few rows) use the store's own ``audit.bulk_create``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from json.encoder import encode_basestring as _encode_str  # type: ignore[attr-defined]
from typing import Any

from django.apps import apps
from django.db import connection, models
from django.utils import timezone
from simple_history.utils import get_history_manager_for_model

__all__ = ["fast_create_with_history"]

CHUNK = 20_000


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


def _json_value(v: Any) -> str:
    """JSON text of ``audit._canon(v)`` (floats by repr as strings, dates ISO, UTC datetimes)."""
    t = type(v)
    if v is None:
        return "null"
    if t is str:
        return _encode_str(v)
    if t is int:
        return str(v)
    if t is float:
        return '"' + repr(v) + '"'
    if t is bool:
        return "true" if v else "false"
    if t is _dt.datetime:
        if v.tzinfo is not None and v.utcoffset() is not None:
            v = v.astimezone(_dt.UTC)
        return '"' + v.isoformat() + '"'
    if t is _dt.date:
        return '"' + v.isoformat() + '"'
    from hepatrial.trials.audit import _canon

    return json.dumps(_canon(v), ensure_ascii=False)


def _encoder(field: models.Field | None) -> Any:
    """JSON encoder for a column's values as the database gives them back (by field type)."""
    internal = field.get_internal_type() if field is not None else ""
    if internal in ("CharField", "TextField", "SlugField", "EmailField", "URLField"):
        enc = _encode_str
    elif internal in ("AutoField", "BigAutoField", "IntegerField", "BigIntegerField",
                      "SmallIntegerField", "PositiveIntegerField", "PositiveBigIntegerField",
                      "PositiveSmallIntegerField", "ForeignKey", "OneToOneField"):
        enc = str
    elif internal == "FloatField":
        def enc(v: Any) -> str:
            return '"' + repr(float(v)) + '"'
    elif internal == "DateField":
        def enc(v: Any) -> str:
            return '"' + v.isoformat() + '"'
    else:
        return _json_value
    if field is not None and field.null:
        def nullable(v: Any, _enc: Any = enc) -> str:
            return "null" if v is None else _enc(v)
        return nullable
    return enc


class _Digester:
    """Computes ``audit.row_digest`` of history rows from plain values, without ORM objects.

    ``row_digest`` is sha256 of ``canonical_json`` (sorted keys, compact separators, floats as
    repr strings, dates ISO, datetimes in UTC) of every concrete column plus ``__model__``; this
    builds the same text from a template with the per-import constants (history date, user,
    reason, type, model) filled in once. The first row of each chunk is cross-checked against
    ``audit.row_digest`` of the stored row.
    """

    def __init__(self, hmodel: type[models.Model], attnames: Sequence[str],
                 constants: dict[str, Any]) -> None:
        self.label = hmodel._meta.label_lower
        fields = {f.attname: f for f in hmodel._meta.concrete_fields}
        consts = {**constants, "__model__": self.label}
        pieces, self.positions, self.encoders = [], [], []
        for n, key in enumerate(sorted([*attnames, "__model__"])):
            pieces.append(("{" if n == 0 else ",") + _encode_str(key).replace("%", "%%") + ":")
            if key in consts:
                pieces.append(_json_value(consts[key]).replace("%", "%%"))
            else:
                pieces.append("%s")
                self.positions.append(list(attnames).index(key))
                self.encoders.append(_encoder(fields.get(key)))
        self.template = "".join(pieces) + "}"
        self.pairs = list(zip(self.encoders, self.positions, strict=True))

    def digest(self, values: Sequence[Any]) -> str:
        """Digest of one row."""
        text = self.template % tuple([enc(values[i]) for enc, i in self.pairs])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def digests(self, rows: Sequence[Sequence[Any]]) -> list[str]:
        """Digests of many rows (column-wise encoding: same result, less per-row work)."""
        encoded = [list(map(enc, [r[i] for r in rows])) for enc, i in self.pairs]
        template = self.template
        sha = hashlib.sha256
        return [sha((template % t).encode("utf-8")).hexdigest() for t in zip(*encoded, strict=True)]


def _fast_ledger(hmodel: type[models.Model], hattnames: Sequence[str],
                 hrows: Sequence[tuple], pk_att: str, check: bool) -> None:
    """Append history rows (plain values incl. ``history_id``) to the audit ledger.

    The history date, user, reason and type must be the same on every row (one import).

    Same entries as ``audit.append`` (seq, model, history pk, object pk, type, digest, previous
    and chain hash) written with ``executemany``; ``audit.verify`` recomputes them.
    """
    from hepatrial.trials import audit

    Ledger = apps.get_model("trials", "AuditLedger")
    audit._lock()
    consts = {k: hrows[0][hattnames.index(k)] for k in
              ("history_date", "history_user_id", "history_change_reason", "history_type")}
    dig = _Digester(hmodel, hattnames, consts)
    if check:
        first = hmodel._base_manager.get(pk=hrows[0][hattnames.index(hmodel._meta.pk.attname)])
        if audit.row_digest(first) != dig.digest(hrows[0]):
            raise RuntimeError(f"{hmodel._meta.label}: fast digest differs from audit.row_digest;"
                               " refusing to write an unverifiable ledger")
    last = Ledger.objects.order_by("-seq").values_list("seq", "chain_hash").first()
    seq, prev = last if last else (0, audit.GENESIS)
    label = dig.label
    hpk_pos = hattnames.index(hmodel._meta.pk.attname)
    opk_pos = hattnames.index(pk_att)
    type_pos = hattnames.index("history_type")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    out = []
    sha = hashlib.sha256
    for r, d in zip(hrows, dig.digests(hrows), strict=True):
        seq += 1
        hpk = r[hpk_pos]
        chain = sha(f"{seq}|{label}|{hpk}|{d}|{prev}".encode()).hexdigest()
        out.append((seq, label, hpk, str(r[opk_pos]), r[type_pos], d, prev, chain, now))
        prev = chain
    if check and out:
        assert audit._chain(out[0][0], label, out[0][2], out[0][5], out[0][6]) == out[0][7]
    lmeta = Ledger._meta
    cols = ["seq", "history_model", "history_pk", "object_pk", "history_type", "digest",
            "prev_hash", "chain_hash", "recorded_at"]
    _insert_many(lmeta.db_table, [lmeta.get_field(c).column for c in cols], out)


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
    """Insert ``rows`` (tuples of values for the *attnames* ``columns``) into ``model`` with one
    ``+`` history row each and the audit ledger appended. Returns the count.

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
    hpk_att = hmeta.pk.attname
    extra = {"history_date", "history_user_id", "history_change_reason", "history_type", hpk_att}
    unknown = {f.attname for f in hmeta.concrete_fields} - tracked - extra
    if unknown:  # pragma: no cover - custom historical fields would need values
        raise ValueError(f"{hmeta.label}: unexpected history columns {sorted(unknown)}")
    hdate_db = connection.ops.adapt_datetimefield_value(date)
    h_attnames = [pk_att, *columns, "history_date", "history_user_id", "history_change_reason",
                  "history_type"]
    hfields = {f.attname: f for f in hmeta.concrete_fields}
    h_cols = [hfields[a].column for a in h_attnames]

    with _big_cache():
        return _fast_create(model, columns, rows, key_columns=key_columns, reason=reason,
                            user_id=user_id, date=date, chunk=chunk, db_cols=db_cols,
                            adapters=adapters, hmodel=hmodel, h_attnames=h_attnames,
                            h_cols=h_cols, hdate_db=hdate_db)


#: SQLite page cache for a big import (KiB); the default 2 MiB makes index upkeep dominate.
SQLITE_IMPORT_CACHE_KIB = 512 * 1024


@contextmanager
def _big_cache() -> Iterator[None]:
    """Enlarge SQLite's page cache for the duration of an import, then restore it."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cur:
        cur.execute("PRAGMA cache_size")
        (old,) = cur.fetchone()
        cur.execute(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB:d}")
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute(f"PRAGMA cache_size = {int(old):d}")


def _fast_create(model: type[models.Model], columns: Sequence[str], rows: Sequence[tuple], *,
                 key_columns: Sequence[str], reason: str, user_id: int | None, date: Any,
                 chunk: int, db_cols: list[str], adapters: list[Any],
                 hmodel: type[models.Model], h_attnames: list[str], h_cols: list[str],
                 hdate_db: Any) -> int:
    meta = model._meta
    hmeta = hmodel._meta
    fields = {f.attname: f for f in meta.concrete_fields}
    hfields = {f.attname: f for f in hmeta.concrete_fields}
    pk_att = meta.pk.attname
    hpk_att = hmeta.pk.attname
    key_pos = [list(columns).index(k) for k in key_columns]
    qn = connection.ops.quote_name
    adapt_any = any(a is not None for a in adapters)
    total = 0
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        db_part = part
        if adapt_any:
            db_part = [tuple(a(v) if a is not None and v is not None else v
                             for a, v in zip(adapters, r, strict=True)) for r in part]
        before = _max_pk(model)
        _insert_many(meta.db_table, db_cols, db_part)
        key_sql = ", ".join(qn(fields[k].column) for k in key_columns)
        with connection.cursor() as cur:
            cur.execute(f"SELECT {qn(meta.pk.column)}, {key_sql} FROM {qn(meta.db_table)} "
                        f"WHERE {qn(meta.pk.column)} > %s", [before])
            ids = {tuple(r[1:]): r[0] for r in cur.fetchall()}
        pks = [ids[tuple(r[p] for p in key_pos)] for r in part]
        hbefore = _max_pk(hmodel)
        _insert_many(hmeta.db_table, h_cols,
                      [(pk, *r, hdate_db, user_id, reason, "+")
                       for pk, r in zip(pks, db_part, strict=True)])
        with connection.cursor() as cur:
            cur.execute(f"SELECT {qn(hmeta.pk.column)}, {qn(hfields[pk_att].column)} FROM "
                        f"{qn(hmeta.db_table)} WHERE {qn(hmeta.pk.column)} > %s "
                        f"ORDER BY {qn(hmeta.pk.column)}", [hbefore])
            mine = set(pks)
            hist_ids = [(hid, oid) for hid, oid in cur.fetchall() if oid in mine]
        by_obj = {oid: hid for hid, oid in hist_ids}
        hrows = [(pk, *r, date, user_id, reason, "+", by_obj[pk])
                 for pk, r in zip(pks, part, strict=True)]
        hrows.sort(key=lambda r: r[-1])  # ledger in history-id order, like audit.append
        _fast_ledger(hmodel, [*h_attnames, hpk_att], hrows, pk_att, check=True)
        total += len(part)
    return total
