"""Compatibility: the audited base classes live in :mod:`hepatrial.trials.audit.base`."""

from hepatrial.trials.audit.base import (
    AuditedHistoricalRecords,
    AuditedModel,
    AuditedQuerySet,
    AuditTrailImmutable,
    ChangeReasonRequired,
    LedgeredHistory,
    bulk_writes_allowed,
    require_reason,
)

__all__ = [
    "AuditTrailImmutable",
    "AuditedHistoricalRecords",
    "AuditedModel",
    "AuditedQuerySet",
    "ChangeReasonRequired",
    "LedgeredHistory",
    "bulk_writes_allowed",
    "require_reason",
]
