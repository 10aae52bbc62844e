"""Tamper-evident audit trail: a hash-chained ledger over every history row.

Modules: ``base`` (audited model base classes, reason for change), ``chain`` (digests,
ledger append, head), ``bulk`` (bulk writes with history), ``verify``, ``log`` (readable audit
log), ``actors`` (the system account). This package re-exports their public names.

django-simple-history writes a full copy of a row to its historical table on every create,
change and delete. This module chains those history rows together:

* :func:`append` — called in the same transaction as the history rows are written (by
  :class:`~hepatrial.trials.base.LedgeredHistory` for every ordinary save/delete, and by
  :func:`bulk_create` / :func:`bulk_update` for bulk writes). For each row it stores
  ``digest = sha256(canonical JSON of all the history row's columns)`` and the chain hash
  :func:`entry_hash` over every column of the entry (seq, history model, history pk, object
  pk, history type, recorded at, digest, prev_hash; ledger format 2 — entries written before
  migration 0004 keep format 1, which left out object pk, type and time) in
  :class:`~hepatrial.trials.models.AuditLedger`.
* :func:`verify` — recomputes everything from the database (columnar and streaming: plain
  tuples in pages, template digests, one SQL comparison per live table) and reports each
  :class:`Problem`: ledger rows missing or edited (broken sequence or chain), history rows
  deleted, edited or not in the ledger, live rows that differ from their latest history row
  (edited, inserted or deleted by raw SQL), accounts whose password hash, permissions or
  groups differ from their audited copy, renamed permissions, and rows that cannot be read.
* :func:`bulk_create` / :func:`bulk_update` — the importer's fast path: bulk write + bulk
  history (simple_history's ``bulk_history_create``) + ledger, all in one transaction.
* :func:`history_entries` — the readable audit log (who, when, what changed old→new, why).

What it cannot see: someone with write access to the database who rewrites the history row,
the ledger row *and* every later chain hash consistently, or appends forged entries after the
head (the chain has no key). Record checkpoints (``hepatrial audit checkpoint``,
:mod:`~hepatrial.trials.audit.checkpoint`) outside the database and pass them back to
``verify --checkpoint`` to detect a rewrite of anything up to a checkpoint, an emptied store
or an older backup restored.
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
    APPEND_CHUNK,
    GENESIS,
    LEDGER_FORMAT,
    append,
    canonical_json,
    canonical_time,
    canonical_value,
    chain_hash,
    digest_template,
    entry_hash,
    entry_hasher,
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
    "APPEND_CHUNK",
    "GENESIS",
    "LEDGER_FORMAT",
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
    "canonical_time",
    "canonical_value",
    "chain_hash",
    "digest_template",
    "entry_hash",
    "entry_hasher",
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
