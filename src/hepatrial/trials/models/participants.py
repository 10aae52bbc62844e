# ruff: noqa: RUF012
"""Participants, consent, eligibility and randomisation."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from hepatrial.errors import StoreError
from hepatrial.trials.audit.base import AuditedModel
from hepatrial.trials.audit.locks import LockScope
from hepatrial.trials.models.choices import Etiology, ParticipantStatus, Sex
from hepatrial.trials.models.trial import Arm, Site


class Participant(AuditedModel):
    """A screened or enrolled participant, identified only by a pseudonymous study id."""

    lock_scope = LockScope(participant="pk")

    study_id = models.CharField(max_length=40, unique=True)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="participants")
    sex = models.CharField(max_length=1, choices=Sex.choices)
    year_of_birth = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1900), MaxValueValidator(2100)]
    )
    etiology = models.CharField(max_length=20, choices=Etiology.choices)
    screening_date = models.DateField()
    screening_data = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=20, choices=ParticipantStatus.choices, default=ParticipantStatus.SCREENED
    )
    status_date = models.DateField()
    status_reason = models.TextField(blank=True)
    arm = models.ForeignKey(
        Arm, on_delete=models.PROTECT, null=True, blank=True, related_name="participants"
    )
    enrolment_date = models.DateField(null=True, blank=True, help_text="day 0")

    class Meta(AuditedModel.Meta):
        ordering = ["study_id"]

    def __str__(self) -> str:
        return self.study_id


class Consent(AuditedModel):
    """Informed consent given by a participant (document version and date)."""

    lock_scope = LockScope(participant="participant_id")

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="consents")
    version = models.CharField(max_length=50)
    date = models.DateField()

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "date", "pk"]

    def __str__(self) -> str:
        return f"{self.participant} consent {self.version} {self.date}"


class EligibilityAssessment(AuditedModel):
    """Result of the protocol's eligibility criteria on screening data, per criterion."""

    lock_scope = LockScope(participant="participant_id")

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="eligibility_assessments"
    )
    assessed_on = models.DateField()
    protocol_version = models.CharField(max_length=50)
    eligible = models.BooleanField(null=True, help_text="None: undecided (data missing)")
    criteria = models.JSONField(default=dict, help_text="criterion id -> {kind, met, value, text}")
    screening_data = models.JSONField(default=dict)

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "assessed_on", "pk"]

    def __str__(self) -> str:
        return f"{self.participant} eligible={self.eligible} ({self.assessed_on})"

    def save(self, *args: object, **kwargs: object) -> None:
        """Only ``services.assess_eligibility`` makes an assessment (by evaluating the
        protocol); a saved assessment is never changed nor moved to another participant (the
        one place of this rule: every write path saves through here)."""
        record = f"participant {self.participant_id and self.participant} eligibility"
        if not self._state.adding:
            raise StoreError(
                f"{record}: an eligibility assessment cannot be changed: it is the protocol's "
                "evaluation of the participant's screening data; correct the screening data "
                "and assess again (services.assess_eligibility)"
            )
        if not getattr(self, "_hepatrial_evaluated", False):
            raise StoreError(
                f"{record}: an eligibility assessment can only be made by evaluating the "
                "protocol on the participant's screening data (services.assess_eligibility)"
            )
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class RandomisationList(AuditedModel):
    """A generated allocation list (seeded permuted blocks, stratified by site)."""

    lock_scope = LockScope()

    protocol_version = models.CharField(max_length=50)
    seed = models.BigIntegerField()
    block_sizes = models.JSONField()
    ratio = models.JSONField(help_text="arm code -> allocation weight")
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"randomisation list seed={self.seed}"


class RandomisationEntry(AuditedModel):
    """One concealed allocation; revealed and used once by the ``enrol_participant`` service."""

    lock_scope = LockScope(participant="participant_id")

    allocation_list = models.ForeignKey(
        RandomisationList, on_delete=models.PROTECT, related_name="entries"
    )
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    sequence = models.PositiveIntegerField()
    block = models.PositiveIntegerField()
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="+")
    participant = models.OneToOneField(
        Participant,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="randomisation",
    )
    allocated_at = models.DateTimeField(null=True, blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["site", "sequence"]
        verbose_name_plural = "randomisation entries"
        constraints = [
            models.UniqueConstraint(
                fields=["allocation_list", "site", "sequence"], name="uniq_allocation_seq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.site} #{self.sequence}"
