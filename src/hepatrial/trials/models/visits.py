# ruff: noqa: RUF012
"""Visits, protocol deviations, laboratory results and clinical assessments."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from hepatrial.trials.audit.base import AuditedModel
from hepatrial.trials.audit.locks import LockScope
from hepatrial.trials.models.choices import (
    Ascites,
    DeviationCategory,
    Edema,
    Encephalopathy,
    VisitStatus,
)
from hepatrial.trials.models.participants import Participant


class Visit(AuditedModel):
    """A scheduled protocol visit and, once done, its actual date and window status."""

    lock_scope = LockScope(participant="participant_id", visit="pk")

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="visits")
    code = models.CharField(max_length=20)
    label = models.CharField(max_length=100, blank=True)
    nominal_day = models.IntegerField()
    window_lower = models.IntegerField(default=0, help_text="days allowed before nominal day")
    window_upper = models.IntegerField(default=0, help_text="days allowed after nominal day")
    scheduled_date = models.DateField(null=True, blank=True)
    actual_date = models.DateField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=VisitStatus.choices, default=VisitStatus.SCHEDULED
    )

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "nominal_day", "code"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "code"], name="uniq_visit_code")
        ]

    def __str__(self) -> str:
        return f"{self.participant} {self.code}"


class ProtocolDeviation(AuditedModel):
    """A protocol deviation (created automatically for out-of-window visits)."""

    lock_scope = LockScope(participant="participant_id", visit="visit_id")

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="deviations"
    )
    visit = models.ForeignKey(
        Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="deviations"
    )
    category = models.CharField(max_length=30, choices=DeviationCategory.choices)
    description = models.TextField()
    date = models.DateField()
    major = models.BooleanField(default=False)
    detected_by = models.CharField(max_length=30, default="system")

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "date", "pk"]

    def __str__(self) -> str:
        return f"{self.participant} {self.category} {self.date}"


class LabResult(AuditedModel):
    """A laboratory value: as entered (text, unrounded) and converted to the canonical unit."""

    lock_scope = LockScope(participant="participant_id", visit="visit_id")

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="labs")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="labs")
    analyte = models.CharField(max_length=40)
    loinc = models.CharField(max_length=20, blank=True)
    value_as_entered = models.CharField(max_length=50)
    unit_as_entered = models.CharField(max_length=30)
    value = models.FloatField(help_text="value in the canonical unit")
    unit = models.CharField(max_length=30, help_text="canonical unit")
    laboratory = models.CharField(max_length=200, blank=True)
    specimen_date = models.DateField(null=True, blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "visit__nominal_day", "analyte"]
        constraints = [
            models.UniqueConstraint(fields=["visit", "analyte"], name="uniq_lab_visit_analyte")
        ]

    def __str__(self) -> str:
        return f"{self.visit} {self.analyte}={self.value_as_entered} {self.unit_as_entered}"


class ClinicalAssessment(AuditedModel):
    """Bedside assessment at a visit (Child-Pugh clinical items, dialysis, weight, and the
    physical signs and histology of the Mayo PBC data).

    Every item is optional: ``None`` means *not assessed* (never "absent"). ``ascites`` is the
    Child-Pugh grade (none/slight/moderate); ``ascites_present`` is ascites recorded only as
    present/absent (e.g. pbcseq 0/1), kept apart so that no grade is invented.
    """

    lock_scope = LockScope(participant="participant_id", visit="visit_id")

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="clinical_assessments"
    )
    visit = models.OneToOneField(Visit, on_delete=models.PROTECT, related_name="clinical")
    ascites = models.CharField(
        max_length=20,
        choices=Ascites.choices,
        null=True,
        blank=True,
        help_text="Child-Pugh ascites grade; empty = not graded",
    )
    encephalopathy = models.CharField(
        max_length=20,
        choices=Encephalopathy.choices,
        null=True,
        blank=True,
        help_text="empty = not assessed",
    )
    dialysis_last_week = models.BooleanField(default=False)
    weight_kg = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    ascites_present = models.BooleanField(
        null=True, blank=True, help_text="ascites present (yes/no); empty = not assessed"
    )
    hepatomegaly = models.BooleanField(null=True, blank=True, help_text="empty = not assessed")
    spider_angiomata = models.BooleanField(
        null=True, blank=True, help_text="spider angiomata (naevi); empty = not assessed"
    )
    edema = models.CharField(
        max_length=30,
        choices=Edema.choices,
        null=True,
        blank=True,
        help_text="oedema (Mayo PBC coding 0 / 0.5 / 1); empty = not assessed",
    )
    histologic_stage = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(4)],
        help_text="histologic stage 1-4 (biopsy); empty = not assessed",
    )

    #: added in migration 0002 (history rows of 0001 have them NULL; see audit.row_digest)
    audit_added_fields = (
        "ascites_present",
        "hepatomegaly",
        "spider_angiomata",
        "edema",
        "histologic_stage",
    )

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "visit__nominal_day"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(histologic_stage__isnull=True)
                | (models.Q(histologic_stage__gte=1) & models.Q(histologic_stage__lte=4)),
                name="clinical_histologic_stage_1_4",
            )
        ]

    def __str__(self) -> str:
        return f"{self.visit} clinical"
