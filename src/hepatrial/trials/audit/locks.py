"""Locks on a visit, a participant's casebook or the whole trial, enforced in the store.

ICH E6(R3) 3.16.1(o),(r) (restrict edit access before the final analysis; investigator
endorsement at milestones) and 21 CFR 11.10(d),(f) (limited access, operational checks).

What a lock covers is said by each audited model itself, in one class attribute
``lock_scope`` (a :class:`LockScope`, or ``None`` for records that no lock covers):

* ``LockScope(participant="participant_id", visit="visit_id")`` — a row of a participant's
  visit (lab result, clinical assessment, deviation): refused while its visit, its
  participant's casebook or the trial is locked;
* ``LockScope(participant="participant_id")`` — a row of a casebook outside visits (consent,
  adverse event, cell-product batch, ...): refused while the casebook or the trial is locked;
* ``LockScope()`` — a trial-level record (protocol, arms, randomisation list): refused while
  the trial is locked;
* ``None`` — not covered by any lock (sites, accounts and roles, and the :class:`Lock` and
  ``Signature`` rows themselves, so that locking, unlocking and signing a locked record work).

``"pk"`` names the row's own key (``Participant``: ``LockScope(participant="pk")``; ``Visit``:
``LockScope(participant="participant_id", visit="pk")``).

Every write mechanism calls :func:`refuse_if_locked` (through the helpers below) before it
writes: ``AuditedModel.save()``/``delete()`` (old and new owner of the row), the audited
querysets' ``update()``/``delete()``/``bulk_create()``/``bulk_update()`` (so also
:func:`hepatrial.trials.audit.bulk_create`/``bulk_update``) and the raw-SQL fast import path
(:mod:`hepatrial.ingest.bulk`, once per batch). A refusal raises
:class:`~hepatrial.errors.RecordLocked` naming the record and the lock (id, level, who, when,
why). The check runs after :func:`~hepatrial.trials.audit.chain.lock_ledger` in the writer's
transaction, and locking takes the same lock, so a write and a lock are serialised (a write
never slips in after a lock it did not see). Inside a unit of work
(:mod:`~hepatrial.trials.audit.unit`, e.g. one eCRF save) that lock is taken once at its start
and the active locks of the same participants/visits are read once, until the unit writes a
lock; every check still runs. The checks tell the unit which model is about to be written.

This module reads the ``Lock`` model through the app registry (the audit layer imports no
models). The pure part is :func:`covering_lock`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.utils import timezone

from hepatrial.errors import ChangeReasonRequired, NotFoundError, RecordLocked, StoreError
from hepatrial.trials.audit.chain import lock_ledger
from hepatrial.trials.audit.unit import remembered, written

__all__ = [
    "LEVELS",
    "LockScope",
    "active_lock",
    "check_columns",
    "check_delete",
    "check_objects",
    "check_queryset",
    "check_save",
    "check_update_pks",
    "covering_lock",
    "create_lock",
    "describe_lock",
    "locked_models",
    "refuse_if_locked",
    "release_lock",
    "scope_of",
]

#: lock levels, broadest first (the order a refusal names the lock in)
LEVELS = ("trial", "participant", "visit")

#: above this many ids a check reads every active lock instead of filtering by id (no huge IN)
_IN_LIMIT = 500


@dataclass(frozen=True)
class LockScope:
    """Which participant and visit a row belongs to: attribute names on the model.

    ``participant``/``visit`` name the attribute holding the participant's/visit's primary key
    (``"pk"`` for the row's own key); ``None`` when the row has no such owner.
    """

    participant: str | None = None
    visit: str | None = None

    def attnames(self) -> tuple[str | None, str | None]:
        """``(participant attname, visit attname)`` with ``"pk"`` kept as is."""
        return self.participant, self.visit


class _Undeclared:
    """Default of ``AuditedModel.lock_scope``: the model did not say (treated as trial-level;
    ``tests/store/test_locks.py`` fails for such a model)."""

    def __repr__(self) -> str:
        return "UNDECLARED"


UNDECLARED: Any = _Undeclared()


def scope_of(model: type[models.Model]) -> LockScope | None:
    """The model's :class:`LockScope` (``None``: no lock covers it)."""
    scope = getattr(model, "lock_scope", None)
    if scope is UNDECLARED:
        return LockScope()
    return scope


def locked_models() -> list[type[models.Model]]:
    """Audited models that some lock covers (``lock_scope`` not ``None``), stable order."""
    out = [
        m
        for m in apps.get_models()
        if hasattr(m, "lock_scope") and scope_of(m) is not None
    ]
    return sorted(out, key=lambda m: m._meta.label_lower)


def _lock_model() -> Any:
    return apps.get_model("trials", "Lock")


def _value(obj: models.Model, att: str | None) -> Any:
    if att is None:
        return None
    return obj.pk if att == "pk" else getattr(obj, att)


def _field(model: type[models.Model], att: str) -> str:
    return model._meta.pk.attname if att == "pk" else att


def covering_lock(
    locks: Iterable[tuple[int, str, int | None, int | None]],
    participant_ids: Iterable[Any],
    visit_ids: Iterable[Any],
    *,
    trial_level: bool = True,
) -> tuple[int, str, int | None, int | None] | None:
    """The active lock that covers rows owned by these participants/visits, or ``None``.

    Pure. ``locks`` are ``(lock id, level, participant id, visit id)`` of active locks. A trial
    lock covers every row (when ``trial_level``), a participant lock the rows of that
    participant, a visit lock the rows of that visit. When several cover, the broadest level
    wins, then the lowest lock id (so the message is the same on every run).
    """
    pids = {p for p in participant_ids if p is not None}
    vids = {v for v in visit_ids if v is not None}
    best: tuple[int, str, int | None, int | None] | None = None
    for lock in locks:
        _pk, level, pid, vid = lock
        hit = (
            (level == "trial" and trial_level)
            or (level == "participant" and pid in pids)
            or (level == "visit" and vid in vids)
        )
        if hit and (best is None or (LEVELS.index(level), lock[0]) < (
            LEVELS.index(best[1]), best[0]
        )):
            best = lock
    return best


def active_lock(
    participant_ids: Iterable[Any] = (), visit_ids: Iterable[Any] = ()
) -> Any | None:
    """The active ``Lock`` covering rows of these participants/visits (or any trial lock).

    One query: filtered by id for a few ids, all active locks (matched in Python) for many;
    inside a unit of work (:mod:`hepatrial.trials.audit.unit`) the rows read for the same ids
    earlier in the unit, until the unit writes a lock.
    """
    pids = {p for p in participant_ids if p is not None}
    vids = {v for v in visit_ids if v is not None}
    Lock = _lock_model()
    rows = remembered((Lock,), ("active_lock", frozenset(pids), frozenset(vids)),
                      lambda: _active_rows(Lock, pids, vids))
    if not rows:
        return None
    hit = covering_lock(rows, pids, vids)
    if hit is None:
        return None
    return Lock._base_manager.select_related("participant", "visit", "locked_by").get(pk=hit[0])


def _active_rows(Lock: Any, pids: set[Any], vids: set[Any]) -> tuple[Any, ...]:
    """``(lock id, level, participant id, visit id)`` of the active locks that may cover rows
    of these participants/visits (every active lock for many ids)."""
    qs = Lock._base_manager.filter(unlocked_at__isnull=True)
    if len(pids) + len(vids) <= _IN_LIMIT:
        q = models.Q(level="trial")
        if pids:
            q |= models.Q(level="participant", participant_id__in=pids)
        if vids:
            q |= models.Q(level="visit", visit_id__in=vids)
        qs = qs.filter(q)
    return tuple(qs.values_list("pk", "level", "participant_id", "visit_id"))


def _target(level: str, participant: Any, visit: Any) -> str:
    if level == "trial":
        return "the trial"
    if level == "participant":
        return f"the casebook of participant {participant}"
    return f"visit {visit.code} of participant {participant}"


def describe_lock(lock: Any) -> str:
    """``"visit W1 of participant K01 is locked (lock 3, by dm at 2024-05-01 10:00:00 UTC:
    'monitoring done')"`` — the lock named for a refusal message."""
    when = lock.locked_at.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    why = f": {lock.reason!r}" if lock.reason else ""
    who = lock.locked_by.get_username() if lock.locked_by_id else "?"
    target = _target(lock.level, lock.participant, lock.visit)
    return f"{target} is locked (lock {lock.pk}, by {who} at {when} UTC{why})"


def refuse_if_locked(
    model: type[models.Model],
    participant_ids: Iterable[Any],
    visit_ids: Iterable[Any],
    what: str | Callable[[], str],
) -> None:
    """Raise :class:`RecordLocked` when an active lock covers rows of ``model`` owned by these
    participants/visits (a trial lock covers every row of a covered model).

    Takes the ledger lock first (see the module docstring). ``what`` names the record(s)
    (or is called to name them when a lock is found).
    """
    if scope_of(model) is None:
        return
    lock_ledger()
    lock = active_lock(participant_ids, visit_ids)
    if lock is None:
        return
    name = what() if callable(what) else what
    exc = RecordLocked(f"{name}: {describe_lock(lock)}; unlock it with a reason first")
    exc.lock_id = lock.pk  # type: ignore[attr-defined]
    exc.level = lock.level  # type: ignore[attr-defined]
    raise exc


def _what(model: type[models.Model], pk: Any = None, n: int | None = None) -> str:
    label = model._meta.label_lower
    if n is not None:
        return f"{label}: {n} row{'s' if n != 1 else ''}"
    return f"{label} {pk}" if pk is not None else f"{label} (new row)"


def _owners(
    model: type[models.Model], qs: models.QuerySet, scope: LockScope
) -> tuple[set[Any], set[Any]]:
    """Participant and visit ids stored now for the rows of ``qs``."""
    p_att, v_att = scope.attnames()
    names = [a for a in (p_att, v_att) if a is not None]
    pids: set[Any] = set()
    vids: set[Any] = set()
    if not names:
        return pids, vids
    for row in qs.order_by().values_list(*[_field(model, a) for a in names]).distinct():
        values = dict(zip(names, row, strict=True))
        if p_att is not None:
            pids.add(values[p_att])
        if v_att is not None:
            vids.add(values[v_att])
    return pids, vids


def _stored_owners(
    model: type[models.Model], pks: Sequence[Any], scope: LockScope
) -> tuple[set[Any], set[Any]]:
    """Participant and visit ids stored now for rows ``pks`` (their owner before a write)."""
    pids: set[Any] = set()
    vids: set[Any] = set()
    pk_list = list(pks)
    for start in range(0, len(pk_list), _IN_LIMIT):
        part = pk_list[start : start + _IN_LIMIT]
        p, v = _owners(model, model._base_manager.filter(pk__in=part), scope)
        pids |= p
        vids |= v
    return pids, vids


def check_save(obj: models.Model) -> None:
    """Refuse saving ``obj`` when its owner now (or, for a stored row, before) is locked."""
    model = type(obj)
    written(model)
    scope = scope_of(model)
    if scope is None:
        return
    p_att, v_att = scope.attnames()
    pids = {_value(obj, p_att)}
    vids = {_value(obj, v_att)}
    movable = any(a not in (None, "pk") for a in (p_att, v_att))
    if movable and not obj._state.adding and obj.pk is not None:
        old_p, old_v = _stored_owners(model, [obj.pk], scope)
        pids |= old_p
        vids |= old_v
    refuse_if_locked(model, pids, vids, _what(model, obj.pk))


def check_delete(obj: models.Model) -> None:
    """Refuse deleting ``obj`` when its owner (as stored) is locked."""
    model = type(obj)
    written(model)
    scope = scope_of(model)
    if scope is None:
        return
    p_att, v_att = scope.attnames()
    pids, vids = _stored_owners(model, [obj.pk], scope) if obj.pk is not None else (set(), set())
    pids.add(_value(obj, p_att))
    vids.add(_value(obj, v_att))
    refuse_if_locked(model, pids, vids, _what(model, obj.pk))


def check_objects(
    model: type[models.Model], objs: Sequence[models.Model], *, stored: bool = False
) -> None:
    """Refuse a bulk write of ``objs`` (new values; with ``stored``, also their stored owners)."""
    written(model)
    scope = scope_of(model)
    if scope is None or not objs:
        return
    p_att, v_att = scope.attnames()
    pids = {_value(o, p_att) for o in objs}
    vids = {_value(o, v_att) for o in objs}
    if stored:
        old_p, old_v = _stored_owners(model, [o.pk for o in objs if o.pk is not None], scope)
        pids |= old_p
        vids |= old_v
    refuse_if_locked(model, pids, vids, _what(model, n=len(objs)))


def check_queryset(qs: models.QuerySet, changes: Mapping[str, Any] | None = None) -> None:
    """Refuse ``qs.update(**changes)``/``qs.delete()`` when a lock covers any of its rows (as
    stored, or as ``changes`` would make them)."""
    model = qs.model
    written(model)
    scope = scope_of(model)
    if scope is None:
        return
    pids, vids = _owners(model, qs, scope)
    for att, ids in zip(scope.attnames(), (pids, vids), strict=True):
        if att is None or not changes:
            continue
        for key in {att, att.removesuffix("_id")}:
            if key in changes:
                value = changes[key]
                ids.add(getattr(value, "pk", value))
    refuse_if_locked(model, pids, vids, lambda: _what(model, n=qs.count()))


def check_columns(model: type[models.Model], data: Mapping[str, Sequence[Any]]) -> None:
    """Refuse inserting rows given column-wise (``data[attname]``) into locked owners (the
    fast import path: call once per batch)."""
    written(model)
    scope = scope_of(model)
    if scope is None:
        return
    p_att, v_att = scope.attnames()
    n = len(next(iter(data.values()))) if data else 0
    pids = set(data[p_att]) if p_att and p_att in data else set()
    vids = set(data[v_att]) if v_att and v_att in data else set()
    refuse_if_locked(model, pids, vids, _what(model, n=n))


def check_update_pks(
    model: type[models.Model], pks: Sequence[Any], changes: Mapping[str, Sequence[Any]]
) -> None:
    """Refuse updating rows ``pks`` (stored owners, and owners ``changes`` would give them)."""
    written(model)
    scope = scope_of(model)
    if scope is None or not pks:
        return
    pids, vids = _stored_owners(model, pks, scope)
    p_att, v_att = scope.attnames()
    if p_att and p_att in changes:
        pids |= set(changes[p_att])
    if v_att and v_att in changes:
        vids |= set(changes[v_att])
    refuse_if_locked(model, pids, vids, _what(model, n=len(pks)))


# --- locking and unlocking (the workflow; permissions are checked by the services) ----------


def create_lock(
    *, level: str, participant: Any = None, visit: Any = None, user: Any, reason: str = ""
) -> Any:
    """Lock a visit, a casebook or the trial: a new ``Lock`` row (history + ledger: the
    workflow event "locked"). Refuses a second active lock on the same target.

    ``participant``/``visit`` are model instances (``visit`` of ``participant``). The caller
    checks that ``user`` may lock (:func:`hepatrial.trials.services.require_permission`).
    """
    if level not in LEVELS:
        raise StoreError(f"lock: level {level!r} is not one of {', '.join(LEVELS)}")
    if level == "trial":
        participant = visit = None
    elif participant is None:
        raise StoreError(f"lock {level}: a participant is required")
    if level == "visit" and visit is None:
        raise StoreError("lock visit: a visit is required")
    if level == "participant":
        visit = None
    if visit is not None and visit.participant_id != participant.pk:
        raise StoreError(f"lock: visit {visit} does not belong to participant {participant}")
    Lock = _lock_model()
    text = str(reason or "").strip()
    with transaction.atomic():
        lock_ledger()
        existing = _active_on(level, participant, visit)
        if existing is not None:
            text = describe_lock(existing).replace(" is locked (", " is already locked (", 1)
            raise StoreError(text)
        lock = Lock(
            level=level,
            participant=participant,
            visit=visit,
            locked_at=timezone.now(),
            locked_by=user,
            reason=text,
        )
        lock.save(user=user, reason=f"locked: {text}" if text else "locked")
    return lock


def _active_on(level: str, participant: Any, visit: Any) -> Any | None:
    Lock = _lock_model()
    return (
        Lock._base_manager.select_related("participant", "visit", "locked_by")
        .filter(
            level=level,
            participant=participant,
            visit=visit,
            unlocked_at__isnull=True,
        )
        .order_by("pk")
        .first()
    )


def release_lock(
    *, level: str, participant: Any = None, visit: Any = None, user: Any, reason: str
) -> Any:
    """Unlock: the active lock on the target gets ``unlocked_at``/``unlocked_by``/
    ``unlock_reason`` (a change with the reason: the workflow event "unlocked")."""
    if level not in LEVELS:
        raise StoreError(f"unlock: level {level!r} is not one of {', '.join(LEVELS)}")
    if level == "trial":
        participant = visit = None
    elif level == "participant":
        visit = None
    target = _target(level, participant, visit)
    why = str(reason or "").strip()
    if not why:
        raise ChangeReasonRequired(f"a reason is required for unlocking {target}")
    with transaction.atomic():
        lock_ledger()
        lock = _active_on(level, participant, visit)
        if lock is None:
            raise NotFoundError(f"{target} is not locked")
        lock.unlocked_at = timezone.now()
        lock.unlocked_by = user
        lock.unlock_reason = why
        lock.save(user=user, reason=f"unlocked: {why}")
    return lock
