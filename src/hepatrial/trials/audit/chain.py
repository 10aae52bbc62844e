"""Row digests and the hash-chained ledger: canonical JSON, digests, append, head."""

from __future__ import annotations

import contextvars
import datetime as _dt
import hashlib
import json
import operator
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from json.encoder import encode_basestring as _encode_str  # type: ignore[attr-defined]
from typing import Any

from django.apps import apps
from django.db import connection, models, transaction
from django.utils import timezone

GENESIS = "0" * 64
_LOCK_KEY = 0x4E5041_4155_44  # pg_advisory_xact_lock key for ledger appends


def _canon(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, _dt.datetime):
        if timezone.is_aware(value):
            value = value.astimezone(_dt.UTC)
        return value.isoformat()
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(data: dict[str, Any]) -> str:
    """Deterministic JSON (sorted keys, no spaces, floats by repr, datetimes in UTC ISO)."""
    return _dumps({k: _canon(v) for k, v in data.items()})


def json_text(value: Any) -> str:
    """JSON text of one value exactly as it appears inside :func:`canonical_json`
    (``_dumps(canonical_value(value))``), with fast paths for the common column types."""
    t = type(value)
    if value is None:
        return "null"
    if t is str:
        return _encode_str(value)
    if t is int:
        return str(value)
    if t is float:
        return '"' + repr(value) + '"'
    if t is bool:
        return "true" if value else "false"
    if t is _dt.date:
        return '"' + value.isoformat() + '"'
    return _dumps(_canon(value))


def _added_later(history_model: type[models.Model]) -> frozenset[str]:
    """Columns left out of a digest while NULL: the tracked model's ``audit_added_fields`` and
    the history model's own (the user history's snapshot columns, migration 0004)."""
    tracked = getattr(history_model, "instance_type", history_model)
    return frozenset(getattr(tracked, "audit_added_fields", ())) | frozenset(
        getattr(history_model, "audit_added_fields", ())
    )


def _digest_data(row: models.Model) -> dict[str, Any]:
    """The columns a row's digest covers: every concrete column plus ``__model__``, except a
    column the model lists in ``audit_added_fields`` while its value is NULL (so that history
    rows written before the column existed keep their digest; a value set later, or a value
    removed, still changes the digest)."""
    omit = _added_later(type(row))
    data = {
        f.attname: v
        for f in row._meta.concrete_fields
        if not ((v := getattr(row, f.attname)) is None and f.attname in omit)
    }
    data["__model__"] = row._meta.label_lower
    return data


def row_digest(row: models.Model) -> str:
    """sha256 of the canonical JSON of every concrete column of a (history) row (columns added
    after the first migration are left out while NULL; see ``audit_added_fields``)."""
    return hashlib.sha256(canonical_json(_digest_data(row)).encode("utf-8")).hexdigest()


def chain_hash(seq: int, model: str, pk: Any, digest: str, prev: str) -> str:
    """Ledger chain hash of format 1 (entries written before migration 0004, ``format`` NULL):
    ``sha256(seq | history model label | history pk | digest | prev)``."""
    text = f"{seq}|{model}|{pk}|{digest}|{prev}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: format of the ledger entries written now (column ``AuditLedger.format``; NULL = format 1)
LEDGER_FORMAT = 2
#: formats :func:`entry_hash` knows (``None`` is format 1)
LEDGER_FORMATS = (None, 2)


def canonical_time(value: _dt.datetime) -> str:
    """The text of a ledger ``recorded_at`` in the chain hash: UTC ISO 8601 (as in digests)."""
    return str(_canon(value))


def entry_hash(
    fmt: int | None,
    seq: int,
    model: str,
    pk: Any,
    object_pk: str,
    history_type: str,
    recorded_at: str,
    digest: str,
    prev: str,
) -> str:
    """Chain hash of one ledger entry in its format.

    Format 2 covers every column of the entry (except the table's surrogate ``id``):
    ``sha256("2" | seq | model | history pk | object pk | history type | recorded at |
    digest | prev)``, the texts (model, object pk, type) JSON-quoted so that no value can
    imitate a separator, ``recorded_at`` by :func:`canonical_time`. Format 1 (``None``) is
    :func:`chain_hash`. Raises ``ValueError`` for an unknown format.
    """
    if fmt is None:
        return chain_hash(seq, model, pk, digest, prev)
    if fmt != 2:
        raise ValueError(f"unknown ledger format {fmt!r}")
    text = (f"2|{seq}|{_encode_str(model)}|{pk}|{_encode_str(object_pk)}|"
            f"{_encode_str(history_type)}|{recorded_at}|{digest}|{prev}")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_hasher(model: str, history_type: str, recorded_at: str) -> Any:
    """``f(seq, pk, object_pk, digest, prev) -> chain hash`` of format :data:`LEDGER_FORMAT`
    for many entries sharing model, type and time (the importers' fast path); equal to
    :func:`entry_hash`."""
    qmodel = _encode_str(model)
    mid = f"|{_encode_str(history_type)}|{recorded_at}|"
    sha = hashlib.sha256
    enc = _encode_str

    def one(seq: int, pk: Any, object_pk: str, digest: str, prev: str) -> str:
        text = f"2|{seq}|{qmodel}|{pk}|{enc(object_pk)}{mid}{digest}|{prev}"
        return sha(text.encode("utf-8")).hexdigest()

    return one


#: public name of the canonical form of one value (floats by repr, dates ISO, UTC datetimes)
canonical_value = _canon


def _column_encoder(field: models.Field) -> Any:
    """Encoder of a column's Python values (as the ORM gives them) to :func:`json_text`."""
    target = field
    while target.is_relation and (target.many_to_one or target.one_to_one):
        target = target.target_field  # a foreign key holds the key it points to
    internal = target.get_internal_type()
    enc: Any
    if internal in ("CharField", "TextField", "SlugField", "EmailField", "URLField"):
        enc = _encode_str
    elif internal in (
        "AutoField",
        "BigAutoField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
        "ForeignKey",
        "OneToOneField",
    ):
        enc = str
    elif internal == "FloatField":

        def enc(v: Any) -> str:
            return '"' + repr(float(v)) + '"'
    elif internal == "DateField":

        def enc(v: Any) -> str:
            return '"' + v.isoformat() + '"'
    else:
        return json_text
    if field.null:

        def nullable(v: Any, _enc: Any = enc) -> str:
            return "null" if v is None else _enc(v)

        return nullable
    return enc


def digest_template(
    history_model: type[models.Model],
    varying: Sequence[str],
    constants: dict[str, Any],
    encoders: dict[str, Any] | None = None,
) -> tuple[str, list[tuple[str, Any]]] | None:
    """The ``%``-template of :func:`canonical_json` for rows of ``history_model`` whose columns
    ``varying`` differ per row and ``constants`` do not, with one encoder per varying column
    (value → its JSON text; default :func:`_column_encoder` of the column, ``encoders``
    overrides it). Returns ``(template, [(column, encoder), ...])``, or ``None`` when the
    first key is an optional column (then digests are computed row by row).

    A column the model lists in ``audit_added_fields`` is left out while NULL: its encoder
    returns ``""`` for NULL and ``,"key":value`` otherwise (the template holds only ``%s``).
    """
    label = history_model._meta.label_lower
    fields = {f.attname: f for f in history_model._meta.concrete_fields}
    if set(varying) | set(constants) != set(fields):
        raise ValueError(
            f"{history_model._meta.label}: digest needs exactly the columns {sorted(fields)}"
        )
    omit = _added_later(history_model)
    consts = {**constants, "__model__": label}
    keys = sorted(
        k for k in [*fields, "__model__"] if not (k in consts and consts[k] is None and k in omit)
    )
    encoders = encoders or {}
    pieces: list[str] = []
    pairs: list[tuple[str, Any]] = []
    for n, key in enumerate(keys):
        sep = "{" if n == 0 else ","
        if key in consts:
            pieces.append(
                (sep + _encode_str(key) + ":" + json_text(consts[key])).replace("%", "%%")
            )
            continue
        base = encoders.get(key) or _column_encoder(fields[key])
        if key in omit:
            if n == 0:  # a leading optional key would need its own "{"
                return None
            prefix = "," + _encode_str(key) + ":"

            def optional(v: Any, _p: str = prefix, _e: Any = base) -> str:
                return "" if v is None else _p + _e(v)

            pieces.append("%s")
            pairs.append((key, optional))
        else:
            pieces.append((sep + _encode_str(key) + ":").replace("%", "%%") + "%s")
            pairs.append((key, base))
    return "".join(pieces) + "}", pairs


def encode_column(enc: Any, col: Sequence[Any]) -> list[str]:
    """``[enc(v) for v in col]``, encoding each distinct value once when the column repeats."""
    distinct: set[Any] | None = None
    if len(col) > 64:
        try:
            distinct = set(col)
        except TypeError:  # unhashable values (JSON objects)
            distinct = None
    if distinct is not None and len(distinct) * 4 < len(col):
        cache = {v: enc(v) for v in distinct}
        return list(map(cache.__getitem__, col))
    return list(map(enc, col))


_HEX = operator.methodcaller("hexdigest")


def digests_of(template: str, encoded: Sequence[Sequence[str]]) -> list[str]:
    """sha256 hex digest of ``template % row`` (UTF-8) for each row of the encoded columns
    (C-level ``map`` all the way: the hot loop of the importers and of ``verify``)."""
    rows = zip(*encoded, strict=True)
    return list(map(_HEX, map(hashlib.sha256, map(str.encode, map(template.__mod__, rows)))))


def row_digests(
    history_model: type[models.Model],
    columns: dict[str, Sequence[Any]],
    constants: dict[str, Any],
    rows: slice | None = None,
) -> list[str]:
    """:func:`row_digest` of many history rows given as plain column values, without building
    ORM objects (for importers writing history rows with raw SQL, and for ``verify``).

    ``columns[attname]`` holds one column's values (the ORM's Python types: ``int``, ``str``,
    ``float``, ``bool``, ``datetime.date``, ``None``), ``constants`` the columns equal on every
    row (history date, user, reason, type). Together they must name every concrete column of
    ``history_model``. Same text as :func:`canonical_json`, built from one template per call
    (:func:`digest_template`).
    """
    sl = rows or slice(None)
    made = digest_template(history_model, list(columns), constants)
    if made is None:
        label = history_model._meta.label_lower
        consts = {**constants, "__model__": label}
        return _digests_by_row(label, columns, consts, _added_later(history_model), sl)
    template, pairs = made
    encoded = [encode_column(enc, columns[key][sl]) for key, enc in pairs]
    return digests_of(template, encoded)


def _digests_by_row(
    label: str,
    columns: dict[str, Sequence[Any]],
    consts: dict[str, Any],
    omit: frozenset[str],
    sl: slice,
) -> list[str]:
    names = list(columns)
    out = []
    for values in zip(*(columns[c][sl] for c in names), strict=True):
        data = {**consts, **dict(zip(names, values, strict=True))}
        data = {k: v for k, v in data.items() if not (v is None and k in omit)}
        data["__model__"] = label
        out.append(hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest())
    return out


def _history_model(model: type[models.Model]) -> Any:
    return model.history.model  # type: ignore[attr-defined]


def _tracked_pk_attname(history_model: type[models.Model]) -> str:
    return history_model.instance_type._meta.pk.attname  # type: ignore[attr-defined]


def _ledger() -> type[models.Model]:
    return apps.get_model("trials", "AuditLedger")


#: set inside :func:`ledger_held`: the current transaction holds the ledger lock already
_held: contextvars.ContextVar[bool] = contextvars.ContextVar("hepatrial_ledger_held",
                                                             default=False)


def lock_ledger() -> None:
    """Serialise ledger appends for the current transaction (advisory lock on PostgreSQL).

    Inside :func:`ledger_held` the transaction holds the lock already: nothing to do."""
    if _held.get():
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
    # SQLite: transactions are BEGIN IMMEDIATE (see conf.py), so writers are serialised.


#: set inside a unit of work (:func:`hepatrial.trials.audit.unit.unit_of_work`): the writes'
#: own transaction blocks take no savepoint (see :func:`write_block`)
_one_savepoint: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "hepatrial_one_savepoint", default=False)


def write_block() -> Any:
    """The transaction block of a record's save, its history row's save and a ledger append:
    ``transaction.atomic()``, except inside a unit of work, where it takes no savepoint of its
    own (``atomic(savepoint=False)``). There every record is written by a service, whose own
    block keeps its savepoint: a refused or failed save rolls back to it, so the three nested
    savepoints per record (2 statements each, 6 of the 17 statements per lab result of an
    eCRF save) bought nothing. Outside a unit a caller may catch a refusal of a direct
    ``save()`` and go on in the same transaction, which needs the save's own savepoint; a
    unit in which that happened refuses to end (:func:`~hepatrial.trials.audit.unit.
    unit_of_work`) instead of being rolled back silently."""
    return transaction.atomic(savepoint=not _one_savepoint.get())


@contextmanager
def one_savepoint_per_write() -> Iterator[None]:
    """Inside the block, :func:`write_block` takes no savepoint (the unit of work's rule)."""
    token = _one_savepoint.set(True)
    try:
        yield
    finally:
        _one_savepoint.reset(token)


@contextmanager
def ledger_held() -> Iterator[None]:
    """Take the ledger lock now, in the open transaction, and skip taking it again inside the
    block (the transaction-level lock is held until the transaction ends, which is after the
    block: the block is inside the transaction). Raises ``TransactionManagementError`` outside
    ``transaction.atomic()``."""
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "ledger_held: must run inside transaction.atomic()")
    lock_ledger()
    token = _held.set(True)
    try:
        yield
    finally:
        _held.reset(token)


#: history rows re-read per query by :func:`append`: below 999, the smallest limit of bound
#: variables SQLite builds have had (32,766 by default since 3.32, 250,000 in Debian's;
#: PostgreSQL allows 65,535)
APPEND_CHUNK = 900


def append(history_rows: Iterable[models.Model], *, chunk: int = APPEND_CHUNK) -> list[Any]:
    """Chain history rows into the audit ledger, in the given order, in the current transaction.

    The rows are re-read from the database first (``chunk`` primary keys per query) so that
    the digest is computed from exactly what was stored (and what :func:`verify` will read
    back). Entries are written in :data:`LEDGER_FORMAT` (:func:`entry_hash`). Returns the new
    ledger rows.
    """
    rows = [r for r in history_rows if r is not None]
    if not rows:
        return []
    if chunk < 1:
        raise ValueError("append: chunk must be at least 1")
    Ledger = _ledger()
    with write_block():
        lock_ledger()
        by_model: dict[type[models.Model], list[Any]] = defaultdict(list)
        for r in rows:
            if r.pk is None:
                raise ValueError(f"{r._meta.label}: history row has no primary key (not saved?)")
            by_model[type(r)].append(r.pk)
        stored: dict[tuple[type[models.Model], Any], models.Model] = {}
        for model, pks in by_model.items():
            for start in range(0, len(pks), chunk):
                for obj in model._base_manager.filter(pk__in=pks[start:start + chunk]):
                    stored[(model, obj.pk)] = obj
        last = Ledger.objects.order_by("-seq").values_list("seq", "chain_hash").first()
        seq, prev = last if last else (0, GENESIS)
        now = timezone.now()
        when = canonical_time(now)
        entries = []
        for r in rows:
            obj = stored[(type(r), r.pk)]
            seq += 1
            label = obj._meta.label_lower
            digest = row_digest(obj)
            opk = str(getattr(obj, _tracked_pk_attname(type(obj))))
            htype = obj.history_type
            chain = entry_hash(LEDGER_FORMAT, seq, label, obj.pk, opk, htype, when, digest, prev)
            entries.append(
                Ledger(
                    seq=seq,
                    history_model=label,
                    history_pk=obj.pk,
                    object_pk=opk,
                    history_type=htype,
                    digest=digest,
                    prev_hash=prev,
                    chain_hash=chain,
                    recorded_at=now,
                    format=LEDGER_FORMAT,
                )
            )
            prev = chain
        return Ledger.objects.bulk_create(entries, batch_size=2000)


def head() -> tuple[int, str]:
    """``(last seq, last chain hash)`` of the ledger (``(0, GENESIS)`` when empty)."""
    last = _ledger().objects.order_by("-seq").values_list("seq", "chain_hash").first()
    return (int(last[0]), str(last[1])) if last else (0, GENESIS)
