"""Tamper-evident audit trail: a hash-chained ledger over every history row.

Modules: ``base`` (audited model base classes, reason for change), ``chain`` (digests,
ledger append, head), ``bulk`` (bulk writes with history), ``verify``, ``log`` (readable audit
log), ``actors`` (the system account). This package re-exports their public names.

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

from hepatrial.trials.audit.actors import (
    SYSTEM_USERNAME,
    system_user,
)
from hepatrial.trials.audit.base import (
    AppendOnlyHistoricalQuerySet,
    AppendOnlyQuerySet,
    AuditedHistoricalRecords,
    AuditedModel,
    AuditedQuerySet,
    AuditTrailImmutable,
    ChangeReasonRequired,
    LedgeredHistory,
    audited_models,
    bulk_writes_allowed,
    require_reason,
)
from hepatrial.trials.audit.bulk import (
    bulk_create,
    bulk_update,
)
from hepatrial.trials.audit.chain import (
    GENESIS,
    append,
    canonical_json,
    canonical_value,
    chain_hash,
    head,
    json_text,
    lock_ledger,
    row_digest,
    row_digests,
)
from hepatrial.trials.audit.log import (
    history_entries,
    is_audited,
)
from hepatrial.trials.audit.verify import (
    Problem,
    verify,
)

__all__ = [
    "GENESIS",
    "SYSTEM_USERNAME",
    "AppendOnlyHistoricalQuerySet",
    "AppendOnlyQuerySet",
    "AuditTrailImmutable",
    "AuditedHistoricalRecords",
    "AuditedModel",
    "AuditedQuerySet",
    "ChangeReasonRequired",
    "LedgeredHistory",
    "Problem",
    "append",
    "audited_models",
    "bulk_create",
    "bulk_update",
    "bulk_writes_allowed",
    "canonical_json",
    "canonical_value",
    "chain_hash",
    "head",
    "history_entries",
    "is_audited",
    "json_text",
    "lock_ledger",
    "require_reason",
    "row_digest",
    "row_digests",
    "system_user",
    "verify",
]
