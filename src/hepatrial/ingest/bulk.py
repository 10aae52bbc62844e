"""Fast bulk insert of lab results with history and audit ledger (a million rows).

``Model.objects.bulk_create`` + simple_history's ``bulk_history_create`` + ``audit.append``
build three ORM objects per row and compile every value through the SQL compiler, which caps
them at a few thousand rows/s once the ledger is included. :func:`fast_create_with_history`
writes exactly the same records from plain column values - on SQLite with multi-row
``INSERT OR FAIL ... VALUES`` statements (as many rows per statement as the bound-value limit
allows; no statement journal, the whole write one savepoint instead: :data:`SQLITE_INSERT`),
on PostgreSQL with ``COPY`` - in the caller's transaction:

1. the rows themselves (primary keys read back by their unique key);
2. one ``+`` history row each, with the columns simple_history writes (every tracked field,
   ``history_date``, ``history_user``, ``history_change_reason`` = the import reason,
   ``history_type``);
3. one audit-ledger entry per history row, with the store's own functions
   (``audit.row_digests`` - the columnar form of ``audit.row_digest`` -, ``audit.entry_hasher``
   - the chain hash of the current ledger format, over every ledger column -,
   ``audit.lock_ledger``); the first row of each import is cross-checked against
   ``audit.row_digest`` of the stored row and the tests run ``audit.verify()`` over imported
   data.

Participants and visits (few rows) use the store's own ``audit.bulk_create``.

Locks: each batch is checked once against the active locks before it is written
(:func:`hepatrial.trials.audit.locks.check_columns` / ``check_update_pks``): a row of a locked
visit, casebook or trial refuses the whole import with ``RecordLocked``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.apps import apps
from django.db import connection, models, transaction
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


def _insert_many(table: str, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> None:
    """Insert rows given column-wise (``values[j]`` = the values of ``columns[j]``, all the same
    length): many rows per ``INSERT ... VALUES`` statement (SQLite, :func:`_insert_values`),
    ``COPY ... FROM STDIN`` (PostgreSQL)."""
    qn = connection.ops.quote_name
    cols = ", ".join(qn(c) for c in columns)
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            raw = cur.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(f"COPY {qn(table)} ({cols}) FROM STDIN") as copy:
                for row in zip(*values, strict=True):
                    copy.write_row(row)
        return
    _insert_values(f"{SQLITE_INSERT} {qn(table)} ({cols})",
                   "(" + ", ".join(["%s"] * len(columns)) + ")", len(columns),
                   _interleave(values))


def _interleave(values: Sequence[Sequence[Any]]) -> list[Any]:
    """Column-wise values as one row-major list (row 0's values, then row 1's, ...)."""
    width = len(values)
    n = len(values[0]) if width else 0
    if any(len(v) != n for v in values):
        raise ValueError("insert: columns of different lengths")
    flat: list[Any] = [None] * (n * width)
    for j, col in enumerate(values):
        flat[j::width] = col  # one C-level slice assignment per column
    return flat


#: the SQLite inserts of the fast path. ``OR FAIL``: a constraint error stops the statement
#: without undoing its earlier rows, so SQLite keeps no statement journal (with the default
#: ``OR ABORT`` every multi-row statement inside a transaction copies each page it touches to
#: a journal file first: ~1 write syscall per row). Every fast write runs inside one savepoint
#: (:func:`_savepoint`), so an error still undoes all of it, as before.
SQLITE_INSERT = "INSERT OR FAIL INTO"

#: rows per multi-row INSERT at most (SQLite's compound-SELECT limit, which Django's own
#: bulk_create also stays under); fewer when the bound values would exceed max_query_params
MAX_ROWS_PER_INSERT = 500


def _insert_values(head: str, row: str, width: int, flat: Sequence[Any]) -> None:
    """``head VALUES row, row, ...``: as many rows per statement as the backend's limit of
    bound values allows (``connection.features.max_query_params``, 999 on SQLite), each
    statement run with ``executemany`` over equal-sized slices of ``flat`` (the rows'
    values, row-major). ``row`` is one row's ``(%s, ...)`` with ``width`` placeholders
    (literals allowed, ``%`` doubled). One statement inserting many rows costs SQLite half of
    what one statement per row does (the per-row statement reset and binding of
    ``executemany``)."""
    if width < 1:
        raise ValueError("insert: a row needs at least one bound value")
    if len(flat) % width:
        raise ValueError("insert: the values are not a whole number of rows")
    n = len(flat) // width
    per = max(1, min(MAX_ROWS_PER_INSERT, connection.features.max_query_params // width))
    step = per * width
    full = n // per
    with connection.cursor() as cur:
        if full:
            cur.executemany(f"{head} VALUES {', '.join([row] * per)}",
                            (flat[i:i + step] for i in range(0, full * step, step)))
        rest = n - full * per
        if rest:
            cur.execute(f"{head} VALUES {', '.join([row] * rest)}", flat[full * step:])


def _max_pk(model: type[models.Model]) -> int:
    qn = connection.ops.quote_name
    pk = model._meta.pk.column
    with connection.cursor() as cur:
        cur.execute(f"SELECT MAX({qn(pk)}) FROM {qn(model._meta.db_table)}")
        (value,) = cur.fetchone()
    return int(value or 0)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _fast_ledger(hmodel: type[models.Model], columns: dict[str, Sequence[Any]],
                 constants: dict[str, Any], pk_att: str, check: bool) -> None:
    """Append history rows to the audit ledger, in history-id order.

    ``columns`` holds the varying history columns (incl. the history id), ``constants`` the
    columns equal on every row of one import (history date, user, reason, type). Same entries
    as ``audit.append`` (seq, model, history pk, object pk, type, digest, previous and chain
    hash), written many rows per statement (:func:`_insert_values`; ``COPY`` on PostgreSQL);
    ``audit.verify`` recomputes them.
    """
    from hepatrial.trials import audit

    Ledger = apps.get_model("trials", "AuditLedger")
    audit.lock_ledger()
    hpk_att = hmodel._meta.pk.attname
    label = hmodel._meta.label_lower
    digests = audit.row_digests(hmodel, columns, constants)
    if check:  # the values written must be the values stored (types, rounding)
        first = hmodel._base_manager.get(pk=columns[hpk_att][0])
        if audit.row_digest(first) != digests[0]:
            raise RuntimeError(f"{hmodel._meta.label}: digest of the values written differs "
                               "from audit.row_digest of the stored row; refusing to write an "
                               "unverifiable ledger")
    last = Ledger.objects.order_by("-seq").values_list("seq", "chain_hash").first()
    seq, prev = last if last else (0, audit.GENESIS)
    first_prev = prev
    # entries of the current ledger format: the chain hash covers every ledger column
    # (audit.entry_hash; model, type and time are the same for every entry of the import)
    recorded = timezone.now()
    htype = str(constants["history_type"])
    fmt = audit.LEDGER_FORMAT
    chain_hash = audit.entry_hasher(label, htype, audit.canonical_time(recorded))
    hpks = columns[hpk_att]
    seqs = range(seq + 1, seq + 1 + len(hpks))
    opks = [str(o) for o in columns[pk_att]]
    chains = []
    for sq, hpk, sopk, d in zip(seqs, hpks, opks, digests, strict=True):
        prev = chain_hash(sq, hpk, sopk, d, prev)
        chains.append(prev)
    prevs = [first_prev, *chains[:-1]]
    varying = [seqs, hpks, opks, digests, prevs, chains]
    qn = connection.ops.quote_name
    lmeta = Ledger._meta

    def col(name: str) -> str:
        return qn(lmeta.get_field(name).column)

    now = connection.ops.adapt_datetimefield_value(recorded)
    if connection.vendor == "postgresql":
        names = ["seq", "history_pk", "object_pk", "digest", "prev_hash", "chain_hash",
                 "history_model", "history_type", "recorded_at", "format"]
        n = len(hpks)
        _insert_many(lmeta.db_table, [lmeta.get_field(c).column for c in names],
                     [*varying, *([v] * n for v in (label, htype, now, fmt))])
        return
    # per-import constants are SQL literals, so only the six varying values are bound per row
    if isinstance(now, str):
        now_sql = _sql_literal(now).replace("%", "%%")
    else:  # pragma: no cover - Django's SQLite backend adapts datetimes to text
        now_sql = "%s"
        varying.append([now] * len(hpks))
    head = (f"{SQLITE_INSERT} {qn(lmeta.db_table)} ({col('seq')}, {col('history_pk')}, "
            f"{col('object_pk')}, {col('digest')}, {col('prev_hash')}, {col('chain_hash')}, "
            f"{col('recorded_at')}, {col('history_model')}, {col('history_type')}, "
            f"{col('format')})")
    row = (f"(%s, %s, %s, %s, %s, %s, {now_sql}, {_sql_literal(label).replace('%', '%%')}, "
           f"{_sql_literal(htype).replace('%', '%%')}, {int(fmt):d})")
    _insert_values(head, row, len(varying), _interleave(varying))


def fast_create_with_history(
    model: type[models.Model],
    data: Mapping[str, Sequence[Any]],
    *,
    key_columns: Sequence[str],
    reason: str,
    user_id: int | None,
    date: Any,
    chunk: int = CHUNK,
) -> int:
    """Insert rows given column-wise (``data[attname]`` = that column's values, all the same
    length) into ``model``, each with one ``+`` history row (``reason``, ``user_id``, ``date``)
    and its audit-ledger entry. Returns the count.

    ``key_columns`` must be a unique key of the model (used to read primary keys back on
    backends where they cannot be reserved). Must run inside a transaction.
    """
    columns = list(data)
    n = len(data[columns[0]]) if columns else 0
    if n == 0:
        return 0
    if any(len(v) != n for v in data.values()):
        raise ValueError("fast_create_with_history: columns of different lengths")
    if not connection.in_atomic_block:
        raise RuntimeError("fast_create_with_history must run inside transaction.atomic()")
    meta = model._meta
    hmodel = get_history_manager_for_model(model).model
    tracked = {f.attname for f in hmodel.tracked_fields}
    missing = tracked - set(columns) - {meta.pk.attname}
    if missing:
        raise ValueError(f"{meta.label}: fast insert needs every tracked field; missing {missing}")
    hmeta = hmodel._meta
    extra = {"history_date", "history_user_id", "history_change_reason", "history_type",
             hmeta.pk.attname}
    unknown = {f.attname for f in hmeta.concrete_fields} - tracked - extra
    if unknown:  # pragma: no cover - custom historical fields would need values
        raise ValueError(f"{hmeta.label}: unexpected history columns {sorted(unknown)}")
    from hepatrial.trials.audit.locks import check_columns

    with _big_cache(), _savepoint():
        total = 0
        for start in range(0, n, chunk):
            part = {c: v[start:start + chunk] for c, v in data.items()}
            check_columns(model, part)  # RecordLocked: a locked visit/casebook/trial, per batch
            total += _fast_chunk(model, hmodel, part, key_columns=key_columns, reason=reason,
                                 user_id=user_id, date=date, check=start == 0)
        return total


#: SQLite page cache for a big import (KiB); the default 2 MiB makes index upkeep dominate.
SQLITE_IMPORT_CACHE_KIB = 512 * 1024


@contextmanager
def _savepoint() -> Iterator[None]:
    """SQLite: the block as one savepoint (``transaction.atomic``), undone as a whole when it
    raises - the inserts are ``OR FAIL`` (:data:`SQLITE_INSERT`). Pages the block adds to the
    file are never journaled for it, only the few it changes that existed before."""
    if connection.vendor != "sqlite":
        yield
        return
    with transaction.atomic():
        yield


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


def _allocate_ids(model: type[models.Model], n: int) -> Sequence[int] | None:
    """Reserve ``n`` primary keys for explicit inserts, or None when the backend has no way.

    SQLite: the importer's transaction holds the write lock (``BEGIN IMMEDIATE``), so the keys
    after ``max(MAX(pk), sqlite_sequence)`` are ours. PostgreSQL: ``nextval`` of the column's
    identity sequence, ``n`` times.
    """
    qn = connection.ops.quote_name
    table, pk = model._meta.db_table, model._meta.pk.column
    with connection.cursor() as cur:
        if connection.vendor == "sqlite":
            cur.execute(f"SELECT MAX({qn(pk)}) FROM {qn(table)}")
            top = cur.fetchone()[0] or 0
            cur.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'")
            if cur.fetchone():
                cur.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
                row = cur.fetchone()
                top = max(top, row[0] if row else 0)
            return range(top + 1, top + 1 + n)
        if connection.vendor == "postgresql":
            cur.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) "
                        "FROM generate_series(1, %s)", [qn(table), pk, n])
            return [r[0] for r in cur.fetchall()]
    return None


def _fast_chunk(model: type[models.Model], hmodel: type[models.Model],
                data: dict[str, Sequence[Any]], *, key_columns: Sequence[str], reason: str,
                user_id: int | None, date: Any, check: bool) -> int:
    meta, hmeta = model._meta, hmodel._meta
    fields = {f.attname: f for f in meta.concrete_fields}
    hfields = {f.attname: f for f in hmeta.concrete_fields}
    pk_att, hpk_att = meta.pk.attname, hmeta.pk.attname
    columns = list(data)
    n = len(data[columns[0]])
    qn = connection.ops.quote_name
    db_cols = [fields[c].column for c in columns]
    hist_meta = ("history_date", "history_user_id", "history_change_reason", "history_type")
    hdate_db = connection.ops.adapt_datetimefield_value(date)
    # values as the database driver wants them: dates adapted, each distinct value once
    db_data = []
    for c in columns:
        a = _adapter(fields[c])
        col = data[c]
        if a is not None:
            cache = {v: (a(v) if v is not None else None) for v in set(col)}
            col = list(map(cache.__getitem__, col))
        db_data.append(col)

    pks = _allocate_ids(model, n)
    if pks is not None:
        _insert_many(meta.db_table, [meta.pk.column, *db_cols], [pks, *db_data])
    else:  # pragma: no cover - other backends: insert, then read the keys back
        before = _max_pk(model)
        _insert_many(meta.db_table, db_cols, db_data)
        key_sql = ", ".join(qn(fields[k].column) for k in key_columns)
        with connection.cursor() as cur:
            cur.execute(f"SELECT {key_sql}, {qn(meta.pk.column)} FROM {qn(meta.db_table)} "
                        f"WHERE {qn(meta.pk.column)} > %s", [before])
            ids = {tuple(r[:-1]): r[-1] for r in cur.fetchall()}
        pks = [ids[k] for k in zip(*(data[k] for k in key_columns), strict=True)]

    hids = _allocate_ids(hmodel, n)
    h_cols = [hfields[pk_att].column, *(hfields[a].column for a in columns),
              *(hfields[a].column for a in hist_meta)]
    if isinstance(pks, range) and isinstance(hids, range):
        # contiguous keys (SQLite): copy the rows just written into the history table in SQL,
        # so each history row holds exactly what was stored
        main_cols = [qn(meta.pk.column), *(qn(c) for c in db_cols)]
        with connection.cursor() as cur:
            cur.execute(
                f"{SQLITE_INSERT} {qn(hmeta.db_table)} ({qn(hfields[hpk_att].column)}, "
                f"{', '.join(qn(c) for c in h_cols)}) "
                f"SELECT {qn(meta.pk.column)} + %s, {', '.join(main_cols)}, %s, %s, %s, %s "
                f"FROM {qn(meta.db_table)} WHERE {qn(meta.pk.column)} BETWEEN %s AND %s "
                f"ORDER BY {qn(meta.pk.column)}",
                [hids.start - pks.start, hdate_db, user_id, reason, "+", pks.start, pks[-1]])
    elif hids is not None:
        _insert_many(hmeta.db_table, [hfields[hpk_att].column, *h_cols],
                     [hids, pks, *db_data, *([v] * len(pks) for v in
                                             (hdate_db, user_id, reason, "+"))])
    else:  # pragma: no cover - read history keys back, ledger in history-id order
        hbefore = _max_pk(hmodel)
        _insert_many(hmeta.db_table, h_cols,
                     [pks, *db_data, *([v] * len(pks) for v in
                                       (hdate_db, user_id, reason, "+"))])
        with connection.cursor() as cur:
            cur.execute(f"SELECT {qn(hmeta.pk.column)}, {qn(hfields[pk_att].column)} FROM "
                        f"{qn(hmeta.db_table)} WHERE {qn(hmeta.pk.column)} > %s "
                        f"ORDER BY {qn(hmeta.pk.column)}", [hbefore])
            mine = set(pks)
            by_obj = {oid: hid for hid, oid in cur.fetchall() if oid in mine}
        order = sorted(range(n), key=lambda i: by_obj[pks[i]])
        data = {c: [v[i] for i in order] for c, v in data.items()}
        pks = [pks[i] for i in order]
        hids = [by_obj[pk] for pk in pks]
    cols: dict[str, Sequence[Any]] = dict(data)
    cols[pk_att] = pks
    cols[hpk_att] = hids
    consts = {"history_date": date, "history_user_id": user_id,
              "history_change_reason": reason, "history_type": "+"}
    _fast_ledger(hmodel, cols, consts, pk_att, check=check)
    return n


def fast_update_with_history(
    model: type[models.Model],
    pks: Sequence[int],
    changes: Mapping[str, Sequence[Any]],
    *,
    reason: str,
    user_id: int | None,
    date: Any,
    chunk: int = CHUNK,
) -> int:
    """Update ``changes[attname][i]`` on row ``pks[i]``, each with a ``~`` history row carrying
    ``reason`` and its audit-ledger entry (the history row is read back through the ORM, so it
    holds exactly what is stored). Must run inside a transaction. Returns the count."""
    if not pks:
        return 0
    if not reason or not str(reason).strip():
        raise ValueError("fast_update_with_history: a reason for change is required")
    if not connection.in_atomic_block:
        raise RuntimeError("fast_update_with_history must run inside transaction.atomic()")
    meta = model._meta
    hmodel = get_history_manager_for_model(model).model
    hmeta = hmodel._meta
    fields = {f.attname: f for f in meta.concrete_fields}
    hfields = {f.attname: f for f in hmeta.concrete_fields}
    tracked = [f.attname for f in hmodel.tracked_fields]
    qn = connection.ops.quote_name
    names = list(changes)
    sets = ", ".join(f"{qn(fields[a].column)} = %s" for a in names)
    sql = f"UPDATE {qn(meta.db_table)} SET {sets} WHERE {qn(meta.pk.column)} = %s"
    adapters = [_adapter(fields[a]) for a in names]
    hist_meta = ("history_date", "history_user_id", "history_change_reason", "history_type")
    hdate_db = connection.ops.adapt_datetimefield_value(date)
    from hepatrial.trials.audit.locks import check_update_pks

    with _savepoint():
        total = 0
        for start in range(0, len(pks), chunk):
            part = list(pks[start:start + chunk])
            check_update_pks(model, part, {a: changes[a][start:start + chunk] for a in names})
            vals = [[(a(v) if a is not None and v is not None else v) for v in
                     changes[name][start:start + chunk]] for name, a in zip(names, adapters,
                                                                           strict=True)]
            with connection.cursor() as cur:
                cur.executemany(sql, list(zip(*vals, part, strict=True)))
            stored = list(model._base_manager.filter(pk__in=part).order_by("pk")
                          .values_list(*tracked))
            n = len(stored)
            hids = _allocate_ids(hmodel, n)
            if hids is None:  # pragma: no cover - SQLite and PostgreSQL reserve keys
                raise RuntimeError(f"{hmeta.label}: cannot reserve history keys on this backend")
            cols: dict[str, Sequence[Any]] = dict(zip(tracked, zip(*stored, strict=True),
                                                       strict=True))
            h_att = [hmeta.pk.attname, *tracked]
            db_cols_data = []
            for a in tracked:
                ad = _adapter(hfields[a])
                db_cols_data.append([ad(v) if ad is not None and v is not None else v
                                     for v in cols[a]])
            _insert_many(hmeta.db_table, [hfields[a].column for a in (*h_att, *hist_meta)],
                         [hids, *db_cols_data, *([v] * n for v in
                                                 (hdate_db, user_id, reason, "~"))])
            cols[hmeta.pk.attname] = hids
            consts = {"history_date": date, "history_user_id": user_id,
                      "history_change_reason": reason, "history_type": "~"}
            _fast_ledger(hmodel, cols, consts, meta.pk.attname, check=start == 0)
            total += n
        return total
