# ruff: noqa: RUF012
"""The audit ledger (hash chain over every history row) and the audited user model."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import models
from simple_history import register

from hepatrial.errors import AuditTrailImmutable
from hepatrial.trials.audit.base import AuditedHistoricalRecords, LedgeredHistory


class AuditLedger(models.Model):
    """Append-only hash chain over every history row (see :mod:`hepatrial.trials.audit`).

    ``chain_hash = sha256(seq | history model | history pk | row digest | prev_hash)``. The ledger
    is the audit trail's own integrity record and so has no history of its own.
    """

    audit_exempt = True

    seq = models.PositiveBigIntegerField(unique=True)
    history_model = models.CharField(max_length=100)
    history_pk = models.BigIntegerField()
    object_pk = models.CharField(max_length=64)
    history_type = models.CharField(max_length=1)
    digest = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    chain_hash = models.CharField(max_length=64)
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["seq"]
        constraints = [
            models.UniqueConstraint(fields=["history_model", "history_pk"], name="uniq_ledger_row")
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.history_model}:{self.history_pk}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise AuditTrailImmutable(f"audit ledger row {self.seq} cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> None:
        raise AuditTrailImmutable(f"audit ledger row {self.seq} cannot be deleted")


# User accounts are audited too (ICH E6(R3) 4.2.2: account creation and changes).
register(
    get_user_model(),
    app="hepatrial.trials",
    records_class=AuditedHistoricalRecords,
    excluded_fields=["password"],
    bases=[LedgeredHistory],
)
