# ruff: noqa: RUF012
"""Trial records (Django models). Every model here keeps a full history (django-simple-history).

All writes go through :mod:`hepatrial.trials.services`; reads through
:mod:`hepatrial.trials.selectors`. Every model derives from
:class:`~hepatrial.trials.base.AuditedModel`: a change or deletion of a saved row needs a
reason for change, and every history row is chained into :class:`AuditLedger`.
Foreign keys are ``PROTECT`` so that clinical data are never deleted by a cascade.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history import register

from hepatrial.trials.base import (
    AuditedHistoricalRecords,
    AuditedModel,
    AuditTrailImmutable,
    LedgeredHistory,
)

# --------------------------------------------------------------------------------- choices


class Sex(models.TextChoices):
    FEMALE = "F", "female"
    MALE = "M", "male"


class Etiology(models.TextChoices):
    HBV = "HBV", "hepatitis B"
    HCV = "HCV", "hepatitis C"
    ALCOHOL = "alcohol", "alcohol-related"
    MASLD = "MASLD", "metabolic dysfunction-associated steatotic liver disease"
    AUTOIMMUNE = "autoimmune", "autoimmune hepatitis"
    PBC = "PBC", "primary biliary cholangitis"
    PSC = "PSC", "primary sclerosing cholangitis"
    CRYPTOGENIC = "cryptogenic", "cryptogenic"
    OTHER = "other", "other"


class ParticipantStatus(models.TextChoices):
    SCREENED = "screened"
    SCREEN_FAILED = "screen_failed"
    ENROLLED = "enrolled"
    WITHDRAWN = "withdrawn"
    DIED = "died"
    TRANSPLANTED = "transplanted"
    COMPLETED = "completed"


class VisitStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    IN_WINDOW = "in_window"
    EARLY = "early"
    LATE = "late"
    MISSED = "missed"
    NOT_DONE = "not_done"


class Ascites(models.TextChoices):
    NONE = "none"
    SLIGHT = "slight"
    MODERATE = "moderate"


class Edema(models.TextChoices):
    """Oedema as coded in the Mayo PBC data (survival::pbc ``edema`` 0 / 0.5 / 1)."""

    NONE = "none", "no oedema (0)"
    UNTREATED_OR_RESOLVED = "untreated_or_resolved", "untreated, or resolved by diuretics (0.5)"
    DESPITE_DIURETICS = "despite_diuretics", "oedema despite diuretic therapy (1)"


class Encephalopathy(models.TextChoices):
    NONE = "none"
    GRADE_1_2 = "grade_1_2"
    GRADE_3_4 = "grade_3_4"


class Route(models.TextChoices):
    PERIPHERAL_VEIN = "peripheral_vein"
    PORTAL_VEIN = "portal_vein"
    HEPATIC_ARTERY = "hepatic_artery"


class Relatedness(models.TextChoices):
    NOT_RELATED = "not_related"
    UNLIKELY = "unlikely"
    POSSIBLE = "possible"
    PROBABLE = "probable"
    DEFINITE = "definite"


class AEOutcome(models.TextChoices):
    RECOVERED = "recovered"
    RECOVERING = "recovering"
    NOT_RECOVERED = "not_recovered"
    RECOVERED_WITH_SEQUELAE = "recovered_with_sequelae"
    FATAL = "fatal"
    UNKNOWN = "unknown"


class DeviationCategory(models.TextChoices):
    VISIT_WINDOW = "visit_window"
    MISSED_VISIT = "missed_visit"
    ELIGIBILITY = "eligibility"
    DOSING = "dosing"
    CONSENT = "consent"
    OTHER = "other"


# --------------------------------------------------------------------------------- protocol


class TrialConfig(AuditedModel):
    """The protocol the store runs on (one row; a new version replaces it with a reason)."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    content_hash = models.CharField(max_length=64)
    toml_text = models.TextField()
    design = models.CharField(max_length=50, blank=True)
    loaded_at = models.DateTimeField()

    class Meta(AuditedModel.Meta):
        verbose_name = "trial configuration"

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Site(AuditedModel):
    """A recruiting site (centre)."""

    code = models.CharField(max_length=30, unique=True)
    name = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)

    class Meta(AuditedModel.Meta):
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Arm(AuditedModel):
    """A treatment arm of the protocol (``single`` for single-arm protocols)."""

    code = models.CharField(max_length=30, unique=True)
    label = models.CharField(max_length=200, blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class SiteMembership(AuditedModel):
    """A user's access to one site (a coordinator sees only their sites' participants)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="site_memberships"
    )
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=30, default="coordinator")

    class Meta(AuditedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["user", "site"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.site}"


# --------------------------------------------------------------------------------- participant


class Participant(AuditedModel):
    """A screened or enrolled participant, identified only by a pseudonymous study id."""

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

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="consents")
    version = models.CharField(max_length=50)
    date = models.DateField()

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "date", "pk"]

    def __str__(self) -> str:
        return f"{self.participant} consent {self.version} {self.date}"


class EligibilityAssessment(AuditedModel):
    """Result of the protocol's eligibility criteria on screening data, per criterion."""

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


class RandomisationList(AuditedModel):
    """A generated allocation list (seeded permuted blocks, stratified by site)."""

    protocol_version = models.CharField(max_length=50)
    seed = models.BigIntegerField()
    block_sizes = models.JSONField()
    ratio = models.JSONField(help_text="arm code -> allocation weight")
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"randomisation list seed={self.seed}"


class RandomisationEntry(AuditedModel):
    """One concealed allocation; revealed and used once by the ``enrol_participant`` service."""

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


# --------------------------------------------------------------------------------- visits


class Visit(AuditedModel):
    """A scheduled protocol visit and, once done, its actual date and window status."""

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

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="clinical_assessments"
    )
    visit = models.OneToOneField(Visit, on_delete=models.PROTECT, related_name="clinical")
    ascites = models.CharField(
        max_length=20, choices=Ascites.choices, null=True, blank=True,
        help_text="Child-Pugh ascites grade; empty = not graded",
    )
    encephalopathy = models.CharField(
        max_length=20, choices=Encephalopathy.choices, null=True, blank=True,
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
        max_length=30, choices=Edema.choices, null=True, blank=True,
        help_text="oedema (Mayo PBC coding 0 / 0.5 / 1); empty = not assessed",
    )
    histologic_stage = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(4)],
        help_text="histologic stage 1-4 (biopsy); empty = not assessed",
    )

    #: added in migration 0002 (history rows of 0001 have them NULL; see audit.row_digest)
    audit_added_fields = (
        "ascites_present", "hepatomegaly", "spider_angiomata", "edema", "histologic_stage",
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


class CellProductBatch(AuditedModel):
    """An autologous cell-product batch, tied to its one participant (chain of identity)."""

    batch_id = models.CharField(max_length=60, unique=True)
    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="product_batches"
    )
    coi_identifier = models.CharField(max_length=60, blank=True, help_text="ISBT 128 ST-028")
    release_tests = models.JSONField(default=dict, blank=True)
    released = models.BooleanField(default=False)
    release_date = models.DateField(null=True, blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["batch_id"]
        verbose_name_plural = "cell product batches"

    def __str__(self) -> str:
        return self.batch_id


class Administration(AuditedModel):
    """An administration (infusion) of the cell product."""

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="administrations"
    )
    route = models.CharField(max_length=20, choices=Route.choices)
    cells_total = models.FloatField(help_text="cells given")
    cells_per_kg = models.FloatField(null=True, blank=True)
    volume_ml = models.DecimalField(max_digits=8, decimal_places=2)
    date = models.DateField()
    operator = models.CharField(max_length=100)
    batch_id = models.CharField(max_length=60)

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "date", "pk"]

    def __str__(self) -> str:
        return f"{self.participant} {self.route} {self.date}"


class AdverseEvent(AuditedModel):
    """An adverse event (CTCAE term and grade)."""

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


# --------------------------------------------------------------------------------- audit ledger


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
