"""Tamper-evident audit trail: a hash-chained ledger over every history row.

django-simple-history writes a full copy of a row to its historical table on every create,
change and delete. This module chains those history rows together:

* :func:`append` — called in the same transaction as the history rows are written (by
  :class:`~hepatrial.trials.base.LedgeredHistory` for every ordinary save/delete, and by
  :func:`bulk_create` / :func:`bulk_update` for bulk writes). For each row it stores
  ``digest = sha256(canonical JSON of all the history row's columns)`` and
  ``chain_hash = sha256(seq | history model | history pk | digest | prev_hash)`` in
  :class:`~hepatrial.trials.models.AuditLedger`.
* :func:`verify` — recomputes everything from the database and reports each
  :class:`Problem`: ledger rows missing or edited (broken sequence or chain), history rows
  deleted, edited or not in the ledger, and live rows that differ from their latest history row
  (edited, inserted or deleted by raw SQL).
* :func:`bulk_create` / :func:`bulk_update` — the importer's fast path: bulk write + bulk
  history (simple_history's ``bulk_history_create``) + ledger, all in one transaction.
* :func:`history_entries` — the readable audit log (who, when, what changed old→new, why).

What it cannot see: someone with write access to the database who rewrites the history row,
the ledger row *and* every later chain hash consistently. Record :func:`head` (printed by
``hepatrial audit verify``) somewhere outside the database and pass it back as
``expected_head`` to close that gap.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from json.encoder import encode_basestring as _encode_str  # type: ignore[attr-defined]
from typing import Any

from django.apps import apps
from django.db import connection, models, transaction
from django.utils import timezone

from hepatrial.trials.base import (
    AuditedModel,
    LedgeredHistory,
    bulk_writes_allowed,
    require_reason,
)

__all__ = [
    "GENESIS",
    "Problem",
    "append",
    "audited_models",
    "bulk_create",
    "bulk_update",
    "canonical_json",
    "canonical_value",
    "chain_hash",
    "head",
    "history_entries",
    "json_text",
    "lock_ledger",
    "row_digest",
    "row_digests",
    "verify",
]

GENESIS = "0" * 64
_LOCK_KEY = 0x4E5041_4155_44  # pg_advisory_xact_lock key for ledger appends


@dataclass(frozen=True)
class Problem:
    """One integrity problem found by :func:`verify`.

    ``kind`` is one of: ``ledger_gap``, ``ledger_edited``, ``chain_broken``, ``head_mismatch``,
    ``history_missing``, ``history_edited``, ``history_unledgered``, ``live_edited``,
    ``live_unaudited``, ``live_deleted``, ``live_resurrected``.
    """

    kind: str
    model: str
    object_pk: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.model} {self.object_pk}: {self.detail}"


# --------------------------------------------------------------------------------- digests


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
        return json_text
    if field.null:
        def nullable(v: Any, _enc: Any = enc) -> str:
            return "null" if v is None else _enc(v)
        return nullable
    return enc


def row_digests(history_model: type[models.Model], columns: dict[str, Sequence[Any]],
                constants: dict[str, Any], rows: slice | None = None) -> list[str]:
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
        raise ValueError(f"{history_model._meta.label}: digest needs exactly the columns "
                         f"{sorted(fields)}")
    omit = _added_later(history_model)
    consts = {**constants, "__model__": label}
    keys = sorted(k for k in [*fields, "__model__"]
                  if not (k in consts and consts[k] is None and k in omit))
    sl = rows or slice(None)
    pieces: list[str] = []
    pairs: list[tuple[Any, str]] = []
    for n, key in enumerate(keys):
        sep = "{" if n == 0 else ","
        if key in consts:
            pieces.append((sep + _encode_str(key) + ":" + json_text(consts[key]))
                          .replace("%", "%%"))
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


def _digests_by_row(label: str, columns: dict[str, Sequence[Any]], consts: dict[str, Any],
                    omit: frozenset[str], sl: slice) -> list[str]:
    names = list(columns)
    out = []
    for values in zip(*(columns[c][sl] for c in names), strict=True):
        data = {**consts, **dict(zip(names, values, strict=True))}
        data = {k: v for k, v in data.items() if not (v is None and k in omit)}
        data["__model__"] = label
        out.append(hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest())
    return out


# --------------------------------------------------------------------------------- append


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


# --------------------------------------------------------------------------------- bulk writes


def _history_model(model: type[models.Model]) -> Any:
    return model.history.model  # type: ignore[attr-defined]


def _tracked_pk_attname(history_model: type[models.Model]) -> str:
    return history_model.instance_type._meta.pk.attname  # type: ignore[attr-defined]


def bulk_create(
    model: type[models.Model],
    objs: Sequence[models.Model],
    *,
    user: Any = None,
    reason: str | None = None,
    batch_size: int | None = 500,
) -> list[models.Model]:
    """Insert many new rows with their ``+`` history rows and ledger entries, atomically.

    For importers. ``model.objects.bulk_create`` (primary keys returned on PostgreSQL and
    SQLite ≥ 3.35), then simple_history's ``bulk_history_create``, then :func:`append`.
    Returns the created objects (with primary keys).
    """
    from hepatrial.trials.services import system_user

    objs = list(objs)
    if not objs:
        return []
    user = user or system_user()
    with transaction.atomic():
        created = model._default_manager.bulk_create(objs, batch_size=batch_size)
        missing = [o for o in created if o.pk is None]
        if missing:  # pragma: no cover - very old SQLite
            raise RuntimeError(f"{model._meta.label}: database did not return primary keys")
        hist = model.history.bulk_history_create(  # type: ignore[attr-defined]
            created,
            batch_size=batch_size,
            default_user=user,
            default_change_reason=reason or "",
        )
        append(hist)
    return created


def bulk_update(
    model: type[models.Model],
    objs: Sequence[models.Model],
    fields: Sequence[str],
    *,
    reason: str,
    user: Any = None,
    batch_size: int | None = 500,
) -> int:
    """Update many existing rows with a reason: bulk update + ``~`` history + ledger, atomically."""
    from hepatrial.trials.services import system_user

    reason = require_reason(reason, f"updating {model._meta.verbose_name_plural}")
    objs = list(objs)
    if not objs:
        return 0
    user = user or system_user()
    with transaction.atomic(), bulk_writes_allowed():
        n = model._default_manager.bulk_update(objs, list(fields), batch_size=batch_size)
        hist = model.history.bulk_history_create(  # type: ignore[attr-defined]
            objs,
            batch_size=batch_size,
            update=True,
            default_user=user,
            default_change_reason=reason,
        )
        for o in objs:  # bulk_history_create prefers an object's own _change_reason
            o._change_reason = None  # type: ignore[attr-defined]
        append(hist)
    return int(n)


# --------------------------------------------------------------------------------- verify


def audited_models() -> list[type[models.Model]]:
    """Every model with a ledgered history (trial records and the user model), stable order."""
    out = []
    for m in apps.get_models():
        h = getattr(m, "history", None)
        hm = getattr(getattr(h, "model", None), "__mro__", ())
        if LedgeredHistory in hm and not issubclass(m, LedgeredHistory):
            out.append(m)
    return sorted(out, key=lambda m: m._meta.label_lower)


def verify(expected_head: str | None = None) -> list[Problem]:
    """Recompute the ledger chain, the history digests and the live rows; list every problem.

    Checks, in order:

    1. ledger: ``seq`` runs 1..n without gaps, each ``prev_hash`` is the previous
       ``chain_hash``, and each ``chain_hash`` recomputes (``ledger_gap``, ``chain_broken``,
       ``ledger_edited``); optionally the last hash equals ``expected_head``;
    2. every ledgered history row exists and its digest recomputes (``history_missing``,
       ``history_edited``); every history row is in the ledger (``history_unledgered``);
    3. every live row equals its latest history row on every tracked column
       (``live_edited``), has a history (``live_unaudited``), and rows whose latest history is a
       live version exist (``live_deleted``), deleted ones do not (``live_resurrected``).
    """
    problems: list[Problem] = []
    Ledger = _ledger()
    ledger = list(
        Ledger.objects.order_by("seq").values_list(
            "seq", "history_model", "history_pk", "object_pk", "digest", "prev_hash", "chain_hash"
        )
    )
    prev = GENESIS
    expected_seq = 1
    for seq, model, hpk, _opk, digest, prev_hash, chain in ledger:
        if seq != expected_seq:
            problems.append(
                Problem(
                    "ledger_gap",
                    "ledger",
                    str(seq),
                    f"ledger rows {expected_seq}..{seq - 1} are missing",
                )
            )
        if prev_hash != prev:
            problems.append(
                Problem(
                    "chain_broken", "ledger", str(seq), "prev_hash is not the previous chain hash"
                )
            )
        if chain_hash(seq, model, hpk, digest, prev_hash) != chain:
            problems.append(
                Problem(
                    "ledger_edited",
                    "ledger",
                    str(seq),
                    f"chain hash does not recompute ({model}:{hpk})",
                )
            )
        prev = chain
        expected_seq = seq + 1
    if expected_head is not None and prev != expected_head:
        problems.append(
            Problem(
                "head_mismatch",
                "ledger",
                str(expected_seq - 1),
                "last chain hash differs from the expected head",
            )
        )

    ledgered: dict[str, dict[int, tuple[int, str, str]]] = defaultdict(dict)
    for seq, model, hpk, opk, digest, _p, _c in ledger:
        ledgered[model][int(hpk)] = (seq, digest, opk)

    for model in audited_models():
        hmodel = _history_model(model)
        hlabel = hmodel._meta.label_lower
        pk_att = _tracked_pk_attname(hmodel)
        in_ledger = ledgered.pop(hlabel, {})
        latest: dict[Any, Any] = {}
        seen: set[int] = set()
        for h in hmodel._base_manager.order_by("history_id").iterator():
            seen.add(h.pk)
            entry = in_ledger.get(h.pk)
            obj_pk = getattr(h, pk_att)
            if entry is None:
                problems.append(
                    Problem(
                        "history_unledgered",
                        hlabel,
                        str(obj_pk),
                        f"history row {h.pk} is not in the ledger",
                    )
                )
            elif row_digest(h) != entry[1]:
                problems.append(
                    Problem(
                        "history_edited",
                        hlabel,
                        str(obj_pk),
                        f"history row {h.pk} (ledger #{entry[0]}) was altered",
                    )
                )
            elif entry[2] != str(obj_pk):
                problems.append(
                    Problem(
                        "ledger_edited",
                        hlabel,
                        str(obj_pk),
                        f"ledger #{entry[0]} names object {entry[2]!r}, history row {h.pk} "
                        f"is of object {obj_pk!r}",
                    )
                )
            latest[obj_pk] = h
        for hpk, (seq, _d, opk) in sorted(in_ledger.items()):
            if hpk not in seen:
                problems.append(
                    Problem(
                        "history_missing",
                        hlabel,
                        opk,
                        f"history row {hpk} (ledger #{seq}) was deleted",
                    )
                )
        tracked = [f for f in hmodel.tracked_fields]
        live_pks: set[Any] = set()
        for obj in model._base_manager.order_by("pk").iterator():
            live_pks.add(obj.pk)
            label = model._meta.label_lower
            h = latest.get(obj.pk)
            if h is None:
                problems.append(Problem("live_unaudited", label, str(obj.pk), "row has no history"))
                continue
            if h.history_type == "-":
                problems.append(
                    Problem(
                        "live_resurrected",
                        label,
                        str(obj.pk),
                        "row exists although its history says deleted",
                    )
                )
                continue
            diffs = [
                f"{f.attname}: {_canon(getattr(h, f.attname))!r} → "
                f"{_canon(getattr(obj, f.attname))!r}"
                for f in tracked
                if _canon(getattr(obj, f.attname)) != _canon(getattr(h, f.attname))
            ]
            if diffs:
                problems.append(
                    Problem(
                        "live_edited",
                        label,
                        str(obj.pk),
                        "differs from its history: " + "; ".join(diffs),
                    )
                )
        for opk, h in sorted(latest.items(), key=lambda kv: str(kv[0])):
            if h.history_type != "-" and opk not in live_pks:
                problems.append(
                    Problem(
                        "live_deleted",
                        model._meta.label_lower,
                        str(opk),
                        "row was deleted without a history record",
                    )
                )
    for hlabel, rows in sorted(ledgered.items()):
        for hpk, (seq, _d, opk) in sorted(rows.items()):
            problems.append(
                Problem(
                    "history_missing",
                    hlabel,
                    opk,
                    f"history row {hpk} (ledger #{seq}) has no table/model",
                )
            )
    return problems


# --------------------------------------------------------------------------------- audit log


def _participant_filter(model: type[models.Model], participant: Any) -> dict[str, Any] | None:
    names = {f.name for f in model._meta.get_fields()}
    if model._meta.label_lower == "trials.participant":
        return {"id": participant.pk}
    if "participant" in names:
        return {"participant_id": participant.pk}
    return None


def history_entries(participant_id: str | None = None) -> list[dict[str, Any]]:
    """The audit log as plain dicts, oldest first (history_date, model, history id).

    Each entry: ``when`` (aware UTC datetime), ``who`` (username or ""), ``model``,
    ``object`` (str of the row), ``object_pk``, ``action`` (created/changed/deleted),
    ``changes`` (list of ``(field, old, new)``), ``reason``. With ``participant_id`` only the
    participant's own row and rows that point to the participant are included.
    """
    Participant = apps.get_model("trials", "Participant")
    participant = None
    if participant_id is not None:
        participant = Participant.objects.filter(study_id=participant_id).first()
        if participant is None:
            hp = Participant.history.filter(study_id=participant_id).first()
            if hp is None:
                raise LookupError(f"no participant {participant_id!r}")
            participant = Participant(pk=hp.id)
    actions = {"+": "created", "~": "changed", "-": "deleted"}
    out: list[dict[str, Any]] = []
    for model in audited_models():
        hmodel = _history_model(model)
        qs = hmodel._base_manager.select_related("history_user")
        if participant is not None:
            flt = _participant_filter(model, participant)
            if flt is None:
                continue
            qs = qs.filter(**flt)
        pk_att = _tracked_pk_attname(hmodel)
        prev_by_obj: dict[Any, Any] = {}
        tracked = list(hmodel.tracked_fields)
        for h in qs.order_by("history_id"):
            obj_pk = getattr(h, pk_att)
            prev = prev_by_obj.get(obj_pk)
            changes = []
            if h.history_type == "~" and prev is not None:
                for f in tracked:
                    old, new = getattr(prev, f.attname), getattr(h, f.attname)
                    if _canon(old) != _canon(new):
                        changes.append((f.attname, old, new))
            prev_by_obj[obj_pk] = h
            try:
                label = str(h.instance)
            except Exception:  # pragma: no cover - broken FK in an old row
                label = str(obj_pk)
            out.append(
                {
                    "when": h.history_date,
                    "who": h.history_user.get_username() if h.history_user_id else "",
                    "model": model._meta.model_name,
                    "object": label,
                    "object_pk": obj_pk,
                    "action": actions.get(h.history_type, h.history_type),
                    "changes": changes,
                    "reason": h.history_change_reason or "",
                    "_key": (h.history_date, model._meta.label_lower, h.history_id),
                }
            )
    out.sort(key=lambda e: e["_key"])
    for e in out:
        del e["_key"]
    return out


def is_audited(model: type[models.Model]) -> bool:
    """True for models that derive from :class:`AuditedModel` (reason enforced, ledgered)."""
    return issubclass(model, AuditedModel)
