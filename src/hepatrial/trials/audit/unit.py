"""A unit of work: one transaction writing many records (one eCRF save writes a visit's date,
its whole lab panel and its clinical assessment), in which the checks every write repeats
read the same rows once.

Inside :func:`unit_of_work` (entered in an open transaction, left before it ends):

* the audit-ledger lock (:func:`~hepatrial.trials.audit.chain.lock_ledger`) is taken once, at
  the start, and held to the end of the transaction (:func:`~hepatrial.trials.audit.chain.
  ledger_held`). Every write of an audited record appends to the ledger under that lock, so
  no other transaction commits a change to an audited table while the unit runs: what the
  unit reads changes only by its own transaction's writes;
* :func:`remembered` answers a read of some models with what the same read returned earlier
  in the unit, as long as the unit has written none of those models. The first write of a
  model, by any mechanism (every one calls a lock check of :mod:`~hepatrial.trials.audit.locks`
  first, which calls :func:`written`), forgets what was read of it and stops remembering it
  for the rest of the unit - also when that write is then refused or rolled back to a
  savepoint. So nothing remembered can depend on a write of the unit, kept or undone.

* the records' saves, their history rows' saves and the ledger appends take no savepoint of
  their own (:func:`~hepatrial.trials.audit.chain.write_block`): each record is written by a
  service, whose block keeps its savepoint, and a refused save rolls back to it. A save
  refused outside a service and caught without a savepoint leaves the transaction unusable:
  the unit then ends with ``TransactionManagementError`` (nothing of it is kept), never with
  a silent rollback;

Outside a unit :func:`remembered` reads every time. The checks themselves still run for every
record (the lock check, the permission check, the validators); only their reads are shared.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import connection, models
from django.db.transaction import TransactionManagementError

from hepatrial.trials.audit.chain import ledger_held, one_savepoint_per_write

__all__ = ["in_unit", "remembered", "unit_of_work", "written"]

T = TypeVar("T")


@dataclass
class _Memo:
    values: dict[tuple[frozenset[str], Hashable], Any] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)


_memo: ContextVar[_Memo | None] = ContextVar("hepatrial_unit_of_work", default=None)


def _label(model: type[models.Model] | str) -> str:
    """``app.model`` of the table (a proxy model's is its concrete model's)."""
    return model if isinstance(model, str) else model._meta.concrete_model._meta.label_lower


@contextmanager
def unit_of_work() -> Iterator[None]:
    """Run the block as one unit of work (see the module docstring). Must be entered inside
    ``transaction.atomic()`` (raises ``TransactionManagementError`` otherwise); a unit entered
    inside another is part of it."""
    if _memo.get() is not None:
        yield
        return
    with ledger_held(), one_savepoint_per_write():
        token = _memo.set(_Memo())
        try:
            yield
        finally:
            _memo.reset(token)
        if connection.needs_rollback:
            raise TransactionManagementError(
                "unit of work: a write inside it failed and its error was caught without a "
                "savepoint, so its transaction can only be rolled back - nothing of the unit "
                "was saved (catch a write's errors around transaction.atomic())")


def in_unit() -> bool:
    """Whether a unit of work is running (in this thread/context)."""
    return _memo.get() is not None


def remembered(depends_on: Iterable[type[models.Model] | str], key: Hashable,
               read: Callable[[], T]) -> T:
    """``read()``, or inside a unit of work the value it returned for ``key`` earlier in the
    unit, when the unit has not written any of the models ``depends_on`` (the value is read
    from). A read that raises is not remembered."""
    memo = _memo.get()
    if memo is None:
        return read()
    deps = frozenset(_label(m) for m in depends_on)
    if deps & memo.written:
        return read()
    k = (deps, key)
    if k in memo.values:
        return memo.values[k]
    value = read()
    memo.values[k] = value
    return value


def written(model: type[models.Model] | str) -> None:
    """Called before any write of ``model``: inside a unit of work, forget what was read of it
    and read it again from now on until the unit ends."""
    memo = _memo.get()
    if memo is None:
        return
    label = _label(model)
    if label in memo.written:
        return
    memo.written.add(label)
    for k in [k for k in memo.values if label in k[0]]:
        del memo.values[k]
