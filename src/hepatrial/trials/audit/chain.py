"""Row digests and the hash-chained ledger: canonical JSON, digests, append, head."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
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
    tracked = getattr(history_model, "instance_type", history_model)
    return frozenset(getattr(tracked, "audit_added_fields", ()))


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
    """Ledger chain hash: ``sha256(seq | history model label | history pk | digest | prev)``."""
    text = f"{seq}|{model}|{pk}|{digest}|{prev}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: public name of the canonical form of one value (floats by repr, dates ISO, UTC datetimes)
canonical_value = _canon


def _column_encoder(field: models.Field) -> Any:
    """Encoder of a column's Python values (as the ORM gives them) to :func:`json_text`."""
    internal = field.get_internal_type()
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


def row_digests(
    history_model: type[models.Model],
    columns: dict[str, Sequence[Any]],
    constants: dict[str, Any],
    rows: slice | None = None,
) -> list[str]:
    """:func:`row_digest` of many history rows given as plain column values, without building
    ORM objects (for importers writing history rows with raw SQL).

    ``columns[attname]`` holds one column's values (the ORM's Python types: ``int``, ``str``,
    ``float``, ``bool``, ``datetime.date``, ``None``), ``constants`` the columns equal on every
    row (history date, user, reason, type). Together they must name every concrete column of
    ``history_model``. Same text as :func:`canonical_json`, built from one template per call.
    """
    label = history_model._meta.label_lower
    fields = {f.attname: f for f in history_model._meta.concrete_fields}
    if set(columns) | set(constants) != set(fields):
        raise ValueError(
            f"{history_model._meta.label}: digest needs exactly the columns {sorted(fields)}"
        )
    omit = _added_later(history_model)
    consts = {**constants, "__model__": label}
    keys = sorted(
        k for k in [*fields, "__model__"] if not (k in consts and consts[k] is None and k in omit)
    )
    sl = rows or slice(None)
    pieces: list[str] = []
    pairs: list[tuple[Any, str]] = []
    for n, key in enumerate(keys):
        sep = "{" if n == 0 else ","
        if key in consts:
            pieces.append(
                (sep + _encode_str(key) + ":" + json_text(consts[key])).replace("%", "%%")
            )
        elif key in omit:
            if n == 0:  # a leading optional key would need its own "{": compute row by row
                return _digests_by_row(label, columns, consts, omit, sl)
            prefix = "," + _encode_str(key) + ":"
            base = _column_encoder(fields[key])

            def optional(v: Any, _p: str = prefix, _e: Any = base) -> str:
                return "" if v is None else _p + _e(v)

            pieces.append("%s")
            pairs.append((optional, key))
        else:
            pieces.append((sep + _encode_str(key) + ":").replace("%", "%%") + "%s")
            pairs.append((_column_encoder(fields[key]), key))
    template = "".join(pieces) + "}"
    encoded = []
    for enc, key in pairs:
        col = columns[key][sl]
        distinct = set(col) if len(col) > 64 else None
        if distinct is not None and len(distinct) * 4 < len(col):
            cache = {v: enc(v) for v in distinct}  # repetitive column: encode once
            encoded.append(list(map(cache.__getitem__, col)))
        else:
            encoded.append(list(map(enc, col)))
    sha = hashlib.sha256
    return [sha((template % t).encode("utf-8")).hexdigest() for t in zip(*encoded, strict=True)]


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


def lock_ledger() -> None:
    """Serialise ledger appends for the current transaction (advisory lock on PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
    # SQLite: transactions are BEGIN IMMEDIATE (see conf.py), so writers are serialised.


def append(history_rows: Iterable[models.Model]) -> list[Any]:
    """Chain history rows into the audit ledger, in the given order, in the current transaction.

    The rows are re-read from the database first so that the digest is computed from exactly
    what was stored (and what :func:`verify` will read back). Returns the new ledger rows.
    """
    rows = [r for r in history_rows if r is not None]
    if not rows:
        return []
    Ledger = _ledger()
    with transaction.atomic():
        lock_ledger()
        by_model: dict[type[models.Model], list[Any]] = defaultdict(list)
        for r in rows:
            if r.pk is None:
                raise ValueError(f"{r._meta.label}: history row has no primary key (not saved?)")
            by_model[type(r)].append(r.pk)
        stored: dict[tuple[type[models.Model], Any], models.Model] = {}
        for model, pks in by_model.items():
            for obj in model._base_manager.filter(pk__in=pks):
                stored[(model, obj.pk)] = obj
        last = Ledger.objects.order_by("-seq").values_list("seq", "chain_hash").first()
        seq, prev = last if last else (0, GENESIS)
        now = timezone.now()
        entries = []
        for r in rows:
            obj = stored[(type(r), r.pk)]
            seq += 1
            label = obj._meta.label_lower
            digest = row_digest(obj)
            chain = chain_hash(seq, label, obj.pk, digest, prev)
            entries.append(
                Ledger(
                    seq=seq,
                    history_model=label,
                    history_pk=obj.pk,
                    object_pk=str(getattr(obj, _tracked_pk_attname(type(obj)))),
                    history_type=obj.history_type,
                    digest=digest,
                    prev_hash=prev,
                    chain_hash=chain,
                    recorded_at=now,
                )
            )
            prev = chain
        return Ledger.objects.bulk_create(entries)


def head() -> tuple[int, str]:
    """``(last seq, last chain hash)`` of the ledger (``(0, GENESIS)`` when empty)."""
    last = _ledger().objects.order_by("-seq").values_list("seq", "chain_hash").first()
    return (int(last[0]), str(last[1])) if last else (0, GENESIS)
