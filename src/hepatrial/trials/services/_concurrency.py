"""Optimistic concurrency control of the edit forms (admin change forms, the eCRF's pages).

No version column: the version a form was loaded at is the latest django-simple-history
``history_id`` of what it shows (every trial record has a history, and every save of a record
inserts a history row, so the id changes exactly when the record does). A form covering several
records (the visit CRF: the visit, its lab results, clinical assessment and protocol deviations)
carries one token made of the latest history id of each *scope* (``"12.40.7.0"``), so a record
created or deleted since the form was loaded changes the token too.

:func:`check_version` is the one check every form path calls, inside the transaction that then
writes: it locks the record's row first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
transactions take the write lock at ``BEGIN IMMEDIATE``), so of two saves based on the same
version exactly one passes and the other is refused with
:class:`~hepatrial.errors.ConcurrentEditError` naming who changed what and when, before anything
is written. The policy is deliberately simple: **any** change since the form was loaded refuses
the save (also of fields the user did not touch); the user reloads, sees the change and edits
again. Merging non-overlapping field changes is not attempted.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import connection, models
from django.utils import timezone

from hepatrial.errors import ConcurrentEditError

__all__ = [
    "VERSION_FIELD",
    "Scope",
    "check_posted_version",
    "check_version",
    "form_version",
    "record_scopes",
    "version_of",
    "visit_scopes",
]

#: name of the hidden form field that carries the version token
VERSION_FIELD = "loaded_version"


@dataclass(frozen=True)
class Scope:
    """History rows of one model matching ``filters`` (e.g. one record, or the labs of a
    visit); ``describe()`` names them in messages - called only for a message, as naming a
    record may read its related rows (``str()`` of an adverse event names its participant)."""

    model: type[models.Model]
    filters: tuple[tuple[str, Any], ...]
    describe: Callable[[], str]

    @property
    def what(self) -> str:
        return self.describe()

    @property
    def history(self) -> Any:
        return self.model.history.model._base_manager.filter(**dict(self.filters))  # type: ignore[attr-defined]

    def latest(self) -> int:
        return int(self.history.aggregate(m=models.Max("history_id"))["m"] or 0)


def _label(record: models.Model) -> str:
    return f"{record._meta.verbose_name} {record}"


def record_scopes(record: models.Model) -> list[Scope]:
    """The one scope of a single record: its own history rows."""
    return [Scope(type(record), ((record._meta.pk.attname, record.pk),),
                  lambda: _label(record))]


def visit_scopes(visit: Any) -> list[Scope]:
    """The visit CRF: the visit, and the lab results, clinical assessment and protocol
    deviations (items recorded as not done) of the visit."""
    from hepatrial.trials import models as m

    def where(prefix: str = "") -> Callable[[], str]:
        return lambda: f"{prefix}participant {visit.participant.study_id} visit {visit.code}"

    return [
        Scope(m.Visit, (("id", visit.pk),), where()),
        Scope(m.LabResult, (("visit_id", visit.pk),), where("a lab result of ")),
        Scope(m.ClinicalAssessment, (("visit_id", visit.pk),),
              where("the clinical assessment of ")),
        Scope(m.ProtocolDeviation, (("visit_id", visit.pk),), where("a deviation of ")),
    ]


def version_of(record: models.Model | Iterable[Scope]) -> str:
    """The version token of a record (its latest history id) or of a list of scopes."""
    scopes = record_scopes(record) if isinstance(record, models.Model) else list(record)
    return ".".join(str(s.latest()) for s in scopes)


def _posted(post: Mapping[str, Any] | None, key: str = VERSION_FIELD) -> str:
    return str((post or {}).get(key) or "").strip()


def form_version(record: models.Model | Iterable[Scope],
                 post: Mapping[str, Any] | None = None) -> str:
    """The value of a form's hidden :data:`VERSION_FIELD`: the version ``post`` carries when
    the form is shown again after a refused save (it stays based on what was loaded), else
    the current :func:`version_of` ``record``."""
    return _posted(post) or version_of(record)


def check_posted_version(target: models.Model, post: Mapping[str, Any], *,
                         key: str = VERSION_FIELD, scopes: list[Scope] | None = None) -> None:
    """:func:`check_version` of a submitted form against the version in ``post[key]``; a POST
    without it (a hand-made request, not the page) is not checked."""
    expected = _posted(post, key)
    if expected:
        check_version(target, expected, scopes=scopes)


def _when(d: _dt.datetime) -> str:
    return timezone.localtime(d).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _what_changed(scope: Scope, since: int) -> str:
    """Who changed the scope's records after history id ``since``, when, and (one record)
    which fields: ``"changed by dm at 2026-12-02 10:41:07 UTC (grade: 1 -> 3)"``."""
    rows = list(scope.history.filter(history_id__gt=since).select_related("history_user")
                .order_by("history_id"))
    if not rows:
        return "changed"
    pk = scope.model._meta.pk.attname
    base = scope.history.filter(history_id=since).first() if since else None
    last = rows[-1]
    fields: list[str] = []
    if base is not None and {getattr(r, pk) for r in rows} == {getattr(base, pk)}:
        try:
            delta = last.diff_against(base)
        except Exception:  # the description is a courtesy, the refusal is not
            delta = None
        for c in delta.changes if delta is not None else ():
            try:
                name = str(scope.model._meta.get_field(c.field).verbose_name)
            except FieldDoesNotExist:
                name = c.field
            fields.append(f"{name}: {_show(c.old)} -> {_show(c.new)}")
    verb = {"+": "added", "~": "changed", "-": "deleted"}.get(last.history_type, "changed")
    who = sorted({r.history_user.get_username() if r.history_user_id else "an unknown user"
                  for r in rows})
    out = f"{verb} by {', '.join(who)} at {_when(last.history_date)}"
    if len(rows) > 1:
        out += f" ({len(rows)} saves)"
    if fields:
        out += " (" + "; ".join(fields) + ")"
    return out


def check_version(target: models.Model, expected: Any, *,
                  scopes: list[Scope] | None = None) -> None:
    """Refuse a save based on an out-of-date version of ``target``.

    ``expected`` is the token the form was loaded with (:func:`version_of`); ``scopes`` default
    to the record's own history (:func:`record_scopes`). Call inside the transaction that
    writes: the record's row is locked first, so a concurrent save waits and then sees this
    one's history row. Raises :class:`~hepatrial.errors.ConcurrentEditError` (nothing written)
    naming who changed what and when, e.g. "adverse event K01 Fever G3 was changed by dm at
    2026-12-02 10:41:07 UTC (term: ...) since you loaded this form. Nothing was saved: reload
    the page to see the change, then edit again."."""
    scopes = scopes if scopes is not None else record_scopes(target)
    if connection.in_atomic_block and target.pk is not None:
        # the store's lock order: the ledger (which the write takes anyway), then the row -
        # a row locked first could deadlock with a writer holding the ledger on PostgreSQL
        from hepatrial.trials.audit.chain import lock_ledger

        lock_ledger()
        list(type(target)._base_manager.select_for_update().filter(pk=target.pk)
             .values_list("pk", flat=True))
    text = str(expected if expected is not None else "").strip()
    parts = text.split(".")
    if len(parts) != len(scopes) or not all(p.isascii() and p.isdigit() for p in parts):
        what = scopes[0].what if scopes else _label(target)
        raise ConcurrentEditError(
            f"{what}: the form's version {text!r} is not a version of this record. Nothing "
            f"was saved: reload the page to see the current values, then edit again.")
    loaded = [int(p) for p in parts]
    current = [s.latest() for s in scopes]
    if current == loaded:
        return
    changes = [f"{scope.what} was {_what_changed(scope, was)}"
               for scope, was, now in zip(scopes, loaded, current, strict=True) if now != was]
    raise ConcurrentEditError(
        f"{'; '.join(changes)} since you loaded this form. Nothing was saved: reload the page "
        f"to see the change, then edit again.")
