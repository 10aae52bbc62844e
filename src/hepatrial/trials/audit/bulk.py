"""Bulk writes with history and ledger in one transaction (the importers' path)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import models, transaction

from hepatrial.trials.audit.actors import system_user
from hepatrial.trials.audit.base import (
    bulk_writes_allowed,
    require_reason,
)
from hepatrial.trials.audit.chain import (
    append,
)


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
