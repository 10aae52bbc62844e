# ruff: noqa: RUF012
"""Adverse events."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from hepatrial.trials.audit.base import AuditedModel
from hepatrial.trials.audit.locks import LockScope
from hepatrial.trials.models.choices import AEOutcome, Relatedness
from hepatrial.trials.models.participants import Participant


class AdverseEvent(AuditedModel):
    """An adverse event (CTCAE term and grade)."""

    lock_scope = LockScope(participant="participant_id")

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="adverse_events"
    )
    term = models.CharField(max_length=200)
    grade = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    serious = models.BooleanField(default=False)
    relatedness = models.CharField(max_length=20, choices=Relatedness.choices)
    onset_date = models.DateField()
    resolution_date = models.DateField(null=True, blank=True)
    outcome = models.CharField(max_length=30, choices=AEOutcome.choices, default=AEOutcome.UNKNOWN)

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "onset_date", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(grade__gte=1) & models.Q(grade__lte=5), name="ae_grade_1_5"
            )
        ]

    def __str__(self) -> str:
        return f"{self.participant} {self.term} G{self.grade}"
