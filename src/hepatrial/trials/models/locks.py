# ruff: noqa: RUF012
"""Locks (visit, casebook, trial) and electronic signatures (21 CFR Part 11 §11.50/§11.70).

Both are audited records: locking, unlocking and signing write history rows that are chained
into the ledger like every other change, so an edit by SQL is caught by ``audit verify``.
The rules (who may lock, what a lock covers, when a signature is invalidated) live in
:mod:`hepatrial.trials.audit.locks` and :mod:`hepatrial.trials.audit.signatures`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from hepatrial.trials.audit.base import AuditedModel
from hepatrial.trials.models.participants import Participant
from hepatrial.trials.models.visits import Visit


class LockLevel(models.TextChoices):
    VISIT = "visit"
    PARTICIPANT = "participant"
    TRIAL = "trial"


class Lock(AuditedModel):
    """A lock on one visit, one participant's casebook or the whole trial.

    Active while ``unlocked_at`` is empty; unlocking sets ``unlocked_at``/``unlocked_by``/
    ``unlock_reason`` (a change with a reason, kept in the history). A new lock after an unlock
    is a new row.
    """

    lock_scope = None

    level = models.CharField(max_length=20, choices=LockLevel.choices)
    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, null=True, blank=True, related_name="locks"
    )
    visit = models.ForeignKey(
        Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="locks"
    )
    locked_at = models.DateTimeField()
    locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    unlocked_at = models.DateTimeField(null=True, blank=True)
    unlocked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    unlock_reason = models.TextField(blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["locked_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(level="trial", participant__isnull=True, visit__isnull=True)
                    | models.Q(level="participant", participant__isnull=False, visit__isnull=True)
                    | models.Q(level="visit", participant__isnull=False, visit__isnull=False)
                ),
                name="lock_scope_matches_level",
            )
        ]

    def __str__(self) -> str:
        what = {
            "trial": "trial",
            "participant": f"casebook {self.participant}",
            "visit": f"visit {self.visit}",
        }[self.level]
        state = "unlocked" if self.unlocked_at else "locked"
        return f"{what} {state}"


class Signature(AuditedModel):
    """An electronic signature of a visit or a casebook (21 CFR 11.50, 11.70, 11.200).

    ``manifest`` lists every row the signature covers as ``[model label, pk, ledger seq,
    digest]`` of its latest history row at signing; ``manifest_digest`` is the sha256 of that
    list, and ``ledger_seq``/``ledger_hash`` the ledger head at signing. A later change to any
    covered row shows the signature as invalidated (computed, never stored).
    """

    lock_scope = None

    level = models.CharField(max_length=20, choices=LockLevel.choices)
    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="signatures"
    )
    visit = models.ForeignKey(
        Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="signatures"
    )
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(max_length=200)
    role = models.CharField(max_length=30)
    meaning = models.CharField(max_length=300)
    signed_at = models.DateTimeField()
    ledger_seq = models.PositiveBigIntegerField()
    ledger_hash = models.CharField(max_length=64)
    manifest = models.JSONField()
    manifest_digest = models.CharField(max_length=64)

    class Meta(AuditedModel.Meta):
        ordering = ["signed_at", "pk"]

    def __str__(self) -> str:
        what = f"visit {self.visit}" if self.visit_id else f"casebook {self.participant}"
        return f"{what} signed by {self.printed_name} ({self.meaning})"
