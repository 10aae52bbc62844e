"""Audited base model: history on every model, a reason for every change, a hash-chained ledger.

* :class:`AuditedModel` — abstract base. ``save()`` of an existing row without a reason raises
  :class:`ChangeReasonRequired`; ``delete()`` needs a reason too. A row of a locked visit,
  casebook or trial (``lock_scope``) cannot be saved or deleted (``RecordLocked``). Its manager's
  ``QuerySet.update()``/``delete()``/``bulk_update()`` refuse to run (they would bypass the
  history); use ``update_with_reason()``/``delete_with_reason()`` instead.
* :class:`LedgeredHistory` — abstract base of every *historical* model: history rows are
  insert-only and each inserted row is appended to the :class:`~hepatrial.trials.models.AuditLedger`
  hash chain in the same transaction (explicitly in ``save()``, not in a signal).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.apps import apps
from django.db import models, transaction
from simple_history.manager import HistoricalQuerySet
from simple_history.models import HistoricalRecords

from hepatrial.errors import AuditTrailImmutable, ChangeReasonRequired
from hepatrial.trials.audit.chain import append, write_block
from hepatrial.trials.audit.locks import (
    UNDECLARED,
    check_delete,
    check_objects,
    check_queryset,
    check_save,
)

__all__ = [
    "AuditTrailImmutable",
    "AuditedHistoricalRecords",
    "AuditedModel",
    "AuditedQuerySet",
    "ChangeReasonRequired",
    "LedgeredHistory",
    "require_reason",
]

_bulk_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "hepatrial_bulk_allowed", default=False
)


def require_reason(reason: object, what: str = "this change") -> str:
    """Return ``reason`` stripped, or raise :class:`ChangeReasonRequired` when it is empty."""
    text = "" if reason is None else str(reason).strip()
    if not text:
        raise ChangeReasonRequired(f"a reason for change is required for {what}")
    return text


@contextmanager
def bulk_writes_allowed() -> Iterator[None]:
    """Let ``QuerySet.bulk_update`` run inside (used only by :mod:`hepatrial.trials.audit`)."""
    token = _bulk_allowed.set(True)
    try:
        yield
    finally:
        _bulk_allowed.reset(token)


class _AppendOnlyMixin:
    def update(self, **kwargs: Any) -> int:
        raise AuditTrailImmutable(f"{self.model._meta.label}: history rows cannot be updated")  # type: ignore[attr-defined]

    def delete(self) -> Any:
        raise AuditTrailImmutable(f"{self.model._meta.label}: history rows cannot be deleted")  # type: ignore[attr-defined]

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise AuditTrailImmutable(f"{self.model._meta.label}: history rows cannot be updated")  # type: ignore[attr-defined]


class AppendOnlyQuerySet(_AppendOnlyMixin, models.QuerySet):
    """QuerySet of history rows: no ``update``/``delete``/``bulk_update`` (AT-1)."""


class AppendOnlyHistoricalQuerySet(_AppendOnlyMixin, HistoricalQuerySet):
    """``Model.history`` queryset without ``update``/``delete``/``bulk_update``."""


class LedgeredHistory(models.Model):
    """Base of every historical model: insert-only, each insert appended to the audit ledger."""

    objects = models.Manager.from_queryset(AppendOnlyQuerySet)()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditTrailImmutable(
                f"{self._meta.label} row {self.pk}: history rows cannot be changed"
            )
        with write_block():
            super().save(*args, **kwargs)
            append([self])

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AuditTrailImmutable(
            f"{self._meta.label} row {self.pk}: history rows cannot be deleted"
        )


class AuditedHistoricalRecords(HistoricalRecords):
    """``HistoricalRecords`` with ledgered, insert-only history rows and text change reasons."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("bases", [LedgeredHistory])
        kwargs.setdefault("historical_queryset", AppendOnlyHistoricalQuerySet)
        kwargs.setdefault("history_change_reason_field", models.TextField(null=True))
        kwargs.setdefault("cascade_delete_history", False)
        super().__init__(*args, **kwargs)


class AuditedQuerySet(models.QuerySet):
    """QuerySet whose bulk writes need a reason and go through ``save()``/``delete()``.

    Every write it allows is refused on locked records first
    (:mod:`hepatrial.trials.audit.locks`); ``update()``/``delete()`` on a locked record raise
    :class:`~hepatrial.errors.RecordLocked` rather than :class:`ChangeReasonRequired`.
    """

    def update(self, **kwargs: Any) -> int:
        if _bulk_allowed.get():  # inside audit.bulk_update (Django's bulk_update calls update)
            return super().update(**kwargs)  # bulk_update checked the locks
        check_queryset(self, kwargs)
        raise ChangeReasonRequired(
            f"{self.model._meta.label}: QuerySet.update() bypasses the audit trail; "
            "use update_with_reason(reason, user=..., **changes)"
        )

    def delete(self) -> Any:
        check_queryset(self)
        raise ChangeReasonRequired(
            f"{self.model._meta.label}: QuerySet.delete() needs a reason; "
            "use delete_with_reason(reason, user=...)"
        )

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        objs = list(objs)
        check_objects(self.model, objs, stored=True)
        if not _bulk_allowed.get():
            raise ChangeReasonRequired(
                f"{self.model._meta.label}: bulk_update() bypasses the audit trail; "
                "use hepatrial.trials.audit.bulk_update(model, objs, fields, reason=..., user=...)"
            )
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """``QuerySet.bulk_create``, refused for rows of locked records."""
        objs = list(objs)
        check_objects(self.model, objs, stored=bool(kwargs.get("update_conflicts")))
        return super().bulk_create(objs, *args, **kwargs)

    def update_with_reason(self, reason: str, user: Any = None, **changes: Any) -> int:
        """Set ``changes`` on every row, saving each with ``reason`` (one history row each)."""
        reason = require_reason(reason, f"updating {self.model._meta.verbose_name_plural}")
        n = 0
        with transaction.atomic():
            for obj in self.order_by("pk"):
                for key, value in changes.items():
                    setattr(obj, key, value)
                obj.save(reason=reason, user=user)
                n += 1
        return n

    def delete_with_reason(self, reason: str, user: Any = None) -> int:
        """Delete every row one by one with ``reason`` (one ``-`` history row each)."""
        reason = require_reason(reason, f"deleting {self.model._meta.verbose_name_plural}")
        n = 0
        with transaction.atomic():
            for obj in self.order_by("pk"):
                obj.delete(reason=reason, user=user)
                n += 1
        return n


AuditedManager = models.Manager.from_queryset(AuditedQuerySet)


class AuditedModel(models.Model):
    """Abstract base of every trial record: full history, reason for change, ledgered."""

    history = AuditedHistoricalRecords(inherit=True)
    objects = AuditedManager()

    #: which participant/visit a row belongs to, i.e. which locks refuse writing it: a
    #: :class:`~hepatrial.trials.audit.locks.LockScope`, or ``None`` for records no lock covers.
    #: Every concrete model says it explicitly (tests/store/test_locks.py checks).
    lock_scope: Any = UNDECLARED

    #: nullable columns added by a later migration: left out of history-row digests while NULL,
    #: so that history rows written before the column existed keep verifying
    #: (see :func:`hepatrial.trials.audit.row_digest`)
    audit_added_fields: tuple[str, ...] = ()

    class Meta:
        abstract = True
        base_manager_name = "objects"

    def save(self, *args: Any, reason: str | None = None, user: Any = None, **kwargs: Any) -> None:
        """Save; an existing row needs ``reason`` (or ``_change_reason`` set beforehand)."""
        if reason is not None:
            self._change_reason = require_reason(reason)
        if user is not None:
            self._history_user = user
        if not self._state.adding:
            require_reason(
                getattr(self, "_change_reason", None),
                f"changing {self._meta.verbose_name} {self.pk}",
            )
        try:
            with write_block():
                check_save(self)
                super().save(*args, **kwargs)
        finally:
            self._change_reason = None

    def delete(self, *args: Any, reason: str | None = None, user: Any = None, **kwargs: Any) -> Any:
        """Delete with a reason (kept in the ``-`` history row)."""
        if reason is not None:
            self._change_reason = require_reason(reason)
        if user is not None:
            self._history_user = user
        require_reason(
            getattr(self, "_change_reason", None), f"deleting {self._meta.verbose_name} {self.pk}"
        )
        try:
            with write_block():
                check_delete(self)
                return super().delete(*args, **kwargs)
        finally:
            self._change_reason = None


def audited_models() -> list[type[models.Model]]:
    """Every model with a ledgered history (trial records and the user model), stable order."""
    out = []
    for m in apps.get_models():
        h = getattr(m, "history", None)
        hm = getattr(getattr(h, "model", None), "__mro__", ())
        if LedgeredHistory in hm and not issubclass(m, LedgeredHistory):
            out.append(m)
    return sorted(out, key=lambda m: m._meta.label_lower)
