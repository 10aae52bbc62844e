# ruff: noqa: RUF012
"""Safety records: adverse events, the SAE action chain, lab-derived AE proposals, DSMB
decisions, the stopping rules' pause state and the notifications sent.

* :class:`AdverseEvent` — CTCAE v5.0 term (MedDRA code, system organ class, "Other, specify"
  text), grade with the CTCAE definition of that grade for that term, onset/resolution,
  outcome, action taken, relatedness to the cell product and to a trial procedure (judged
  separately), expectedness against the protocol's reference safety information, ICH E2A
  seriousness criteria and the time the site became aware (UTC, with the wall-clock text and
  time zone it was entered in). The columns added by migration 0005 are nullable and listed in
  ``audit_added_fields``: events stored before keep verifying; their old single
  ``relatedness`` became the relatedness to the product, and ``relatedness`` is now the
  higher of the two judgements (docs/contracts.md §3 ``related``).
* :class:`SAEReport`, :class:`SAEAssessment`, :class:`DSMBDecision` — signed records
  (:class:`SignedSafetyRecord`: the signer re-entered the password, 21 CFR 11.50/11.200; the
  signature names the ledger entry of the adverse event as it was signed, 11.70).
* :class:`LabAEProposal` — a CTCAE lab grade that rose from baseline, for the investigator to
  confirm (it becomes an adverse event) or dismiss with a reason.
* :class:`StoppingRuleState` — a stopping rule's pause, latched from the moment the evaluator
  first found it triggered until a signed DSMB decision resumes it.
* :class:`SafetyNotification` — every e-mail sent (or that could not be sent) to the roles the
  protocol names, with its recipients and status.

The rules are in :mod:`hepatrial.trials.validators.adverse_event` and
:mod:`hepatrial.trials.validators.sae`; the writers in :mod:`hepatrial.trials.services.safety`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from hepatrial import vocab
from hepatrial.trials.audit.base import AuditedModel
from hepatrial.trials.audit.locks import LockScope
from hepatrial.trials.models.choices import AEOutcome, Relatedness, _choices
from hepatrial.trials.models.participants import Participant
from hepatrial.trials.models.visits import LabResult

__all__ = [
    "AEAction",
    "AdverseEvent",
    "DSMBDecision",
    "Expectedness",
    "LabAEProposal",
    "NotificationStatus",
    "ProposalStatus",
    "SAEAssessment",
    "SAEReport",
    "SafetyNotification",
    "SafetyProcedure",
    "SignedSafetyRecord",
    "StoppingRuleState",
]

AEAction = _choices("AEAction", vocab.AE_ACTION)
Expectedness = _choices("Expectedness", vocab.EXPECTEDNESS)
SafetyProcedure = _choices("SafetyProcedure", vocab.SAFETY_PROCEDURE)
SAEReportKind = _choices("SAEReportKind", vocab.SAE_REPORT_KIND)
SafetyEvent = _choices("SafetyEvent", vocab.SAFETY_EVENT)
DSMBDecisionCode = _choices("DSMBDecisionCode", vocab.DSMB_DECISION)


class Assessor(models.TextChoices):
    """Who assesses an SAE's causality (ICH E2A III.A.1: the investigator's and the sponsor's
    opinions are both kept)."""

    INVESTIGATOR = "investigator"
    SPONSOR = "sponsor"


class ProposalStatus(models.TextChoices):
    """State of a lab-derived AE proposal."""

    PROPOSED = "proposed", "proposed (to be confirmed or dismissed)"
    CONFIRMED = "confirmed", "confirmed: recorded as an adverse event"
    DISMISSED = "dismissed", "dismissed by the investigator (with a reason)"
    WITHDRAWN = "withdrawn", "withdrawn: the lab value was corrected and no longer rises"


class NotificationStatus(models.TextChoices):
    """Delivery state of a safety notification."""

    PENDING = "pending", "written, to be sent when the transaction commits"
    SENT = "sent", "handed to the e-mail backend"
    FAILED = "failed", "the e-mail backend refused it (see error)"
    NO_ADDRESS = "no_address", "no address is known for any recipient"


class AdverseEvent(AuditedModel):
    """An adverse event: CTCAE v5.0 term and grade, dates, outcome, causality, seriousness."""

    lock_scope = LockScope(participant="participant_id")

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="adverse_events"
    )
    term = models.CharField(max_length=200, help_text="CTCAE v5.0 term (canonical spelling)")
    grade = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    serious = models.BooleanField(default=False)
    relatedness = models.CharField(
        max_length=20,
        choices=Relatedness.choices,
        help_text="the higher of the relatedness to the product and to a procedure",
    )
    onset_date = models.DateField()
    resolution_date = models.DateField(
        null=True, blank=True, help_text="date resolved; for outcome fatal the date of death"
    )
    outcome = models.CharField(max_length=30, choices=AEOutcome.choices, default=AEOutcome.UNKNOWN)
    # ---- added in migration 0005 (nullable; NULL in events stored before)
    specify = models.CharField(
        max_length=200, null=True, blank=True, help_text="the event's name for 'Other, specify'"
    )
    meddra_code = models.PositiveIntegerField(null=True, blank=True)
    soc = models.CharField(max_length=100, null=True, blank=True, help_text="system organ class")
    ctcae_version = models.CharField(max_length=10, null=True, blank=True)
    grade_definition = models.TextField(
        null=True, blank=True, help_text="CTCAE definition of this grade for this term"
    )
    relatedness_product = models.CharField(
        max_length=20, choices=Relatedness.choices, null=True, blank=True
    )
    relatedness_procedure = models.CharField(
        max_length=20, choices=Relatedness.choices, null=True, blank=True
    )
    procedure = models.CharField(
        max_length=40, choices=SafetyProcedure.choices, null=True, blank=True,
        help_text="the trial procedure the procedure relatedness refers to",
    )  # fmt: skip
    expectedness_product = models.CharField(
        max_length=20, choices=Expectedness.choices, null=True, blank=True,
        help_text="against the reference safety information, when suspected of the product",
    )  # fmt: skip
    expectedness_procedure = models.CharField(
        max_length=20, choices=Expectedness.choices, null=True, blank=True,
        help_text="against the reference safety information, when suspected of a procedure",
    )  # fmt: skip
    rsi_version = models.CharField(max_length=100, null=True, blank=True)
    seriousness_criteria = models.JSONField(
        null=True, blank=True, help_text="ICH E2A criteria (list of codes)"
    )
    aware_at = models.DateTimeField(null=True, blank=True, help_text="site became aware (UTC)")
    aware_local = models.CharField(
        max_length=40, null=True, blank=True, help_text="awareness time as entered (wall clock)"
    )
    aware_time_zone = models.CharField(max_length=64, null=True, blank=True)
    action_taken = models.CharField(max_length=30, choices=AEAction.choices, null=True, blank=True)

    #: added in migration 0005 (events stored before have them NULL; see audit.row_digest)
    audit_added_fields = (
        "specify", "meddra_code", "soc", "ctcae_version", "grade_definition",
        "relatedness_product", "relatedness_procedure", "procedure", "expectedness_product",
        "expectedness_procedure", "rsi_version", "seriousness_criteria", "aware_at",
        "aware_local", "aware_time_zone", "action_taken",
    )  # fmt: skip

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "onset_date", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(grade__gte=1) & models.Q(grade__lte=5), name="ae_grade_1_5"
            )
        ]

    def __str__(self) -> str:
        return f"{self.participant} {self.label} G{self.grade}"

    @property
    def label(self) -> str:
        """The term, or ``"<SOC> - Other, specify: <text>"``."""
        return f"{self.term}: {self.specify}" if self.specify else self.term


class SignedSafetyRecord(AuditedModel):
    """Base of the signed safety records: an e-signature embedded in the record.

    21 CFR 11.50 (printed name, date and time, meaning), 11.200(a) (password re-entered), 11.70
    (linked to the record): ``manifest`` lists ``[model label, pk, ledger seq, digest]`` of the
    latest ledger entry of each record the signer saw (the adverse event), ``manifest_digest``
    is its sha256, ``ledger_seq``/``ledger_hash`` the ledger head at signing.
    """

    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(max_length=200)
    signer_role = models.CharField(max_length=30)
    meaning = models.CharField(max_length=300)
    signed_at = models.DateTimeField()
    ledger_seq = models.PositiveBigIntegerField()
    ledger_hash = models.CharField(max_length=64)
    manifest = models.JSONField(default=list)
    manifest_digest = models.CharField(max_length=64)

    class Meta(AuditedModel.Meta):
        abstract = True


class SAEReport(SignedSafetyRecord):
    """One report of the SAE chain (initial, follow-up, expedited SUSAR, SUSAR follow-up),
    signed; ``deadline`` is the due time it answered (``hepatrial.protocol.safety.sae_due_dates``
    when it was submitted) and ``on_time`` whether it met it."""

    lock_scope = None

    adverse_event = models.ForeignKey(
        AdverseEvent, on_delete=models.PROTECT, related_name="sae_reports"
    )
    kind = models.CharField(max_length=30, choices=SAEReportKind.choices)
    submitted_at = models.DateTimeField(help_text="when the report was sent (UTC)")
    submitted_local = models.CharField(max_length=40, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    on_time = models.BooleanField(null=True, blank=True)
    narrative = models.TextField()
    final = models.BooleanField(default=False, help_text="final follow-up: the event resolved")

    class Meta(SignedSafetyRecord.Meta):
        ordering = ["adverse_event", "submitted_at", "pk"]

    def __str__(self) -> str:
        return f"SAE report {self.kind} of adverse event {self.adverse_event_id}"


class SAEAssessment(SignedSafetyRecord):
    """A signed causality assessment of an SAE by the investigator or the sponsor, with the
    sponsor's expectedness and the SUSAR decision (serious, suspected of the product,
    unexpected: ``hepatrial.protocol.safety.is_susar``)."""

    lock_scope = None

    adverse_event = models.ForeignKey(
        AdverseEvent, on_delete=models.PROTECT, related_name="sae_assessments"
    )
    assessor = models.CharField(max_length=20, choices=Assessor.choices)
    relatedness_product = models.CharField(max_length=20, choices=Relatedness.choices)
    relatedness_procedure = models.CharField(max_length=20, choices=Relatedness.choices)
    procedure = models.CharField(
        max_length=40, choices=SafetyProcedure.choices, null=True, blank=True
    )
    expectedness = models.CharField(
        max_length=20, choices=Expectedness.choices, null=True, blank=True
    )
    susar = models.BooleanField(default=False)
    comment = models.TextField(blank=True)

    class Meta(SignedSafetyRecord.Meta):
        ordering = ["adverse_event", "signed_at", "pk"]

    def __str__(self) -> str:
        return f"{self.assessor} assessment of adverse event {self.adverse_event_id}"


class DSMBDecision(SignedSafetyRecord):
    """A signed DSMB decision on one stopping rule (only ``resume``/``resume_modified`` lift a
    pause); ``rule_status`` is the rule's evaluation the members decided on."""

    lock_scope = None

    rule_id = models.CharField(max_length=60)
    decision = models.CharField(max_length=30, choices=DSMBDecisionCode.choices)
    reason = models.TextField()
    rule_status = models.JSONField(default=dict)

    class Meta(SignedSafetyRecord.Meta):
        ordering = ["signed_at", "pk"]

    def __str__(self) -> str:
        return f"DSMB decision {self.pk} on {self.rule_id}: {self.decision}"


class StoppingRuleState(AuditedModel):
    """The pause of one stopping rule as the store latched it: ``paused`` from the first
    evaluation that found the rule pausing until a signed DSMB decision resumes it (a data
    correction alone never lifts a pause)."""

    lock_scope = None

    rule_id = models.CharField(max_length=60, unique=True)
    kind = models.CharField(max_length=20)
    paused = models.BooleanField(default=False)
    since = models.DateTimeField(null=True, blank=True)
    reasons = models.JSONField(default=list)
    resumed_by = models.ForeignKey(
        DSMBDecision, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta(AuditedModel.Meta):
        ordering = ["rule_id"]

    def __str__(self) -> str:
        return f"{self.rule_id} {'paused' if self.paused else 'not paused'}"


class SafetyNotification(AuditedModel):
    """A notification of a safety event to the roles the protocol names (one per ``key``)."""

    lock_scope = None

    key = models.CharField(max_length=200, unique=True)
    event = models.CharField(max_length=40, choices=SafetyEvent.choices)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    recipients = models.JSONField(default=dict, help_text="recipient code -> addresses")
    status = models.CharField(max_length=20, choices=NotificationStatus.choices)
    backend = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    adverse_event = models.ForeignKey(
        AdverseEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    rule_id = models.CharField(max_length=60, blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"notification {self.key} ({self.status})"


class LabAEProposal(AuditedModel):
    """A CTCAE lab grade above the baseline grade, proposed as an adverse event."""

    lock_scope = None

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    lab = models.ForeignKey(LabResult, on_delete=models.PROTECT, related_name="+")
    analyte = models.CharField(max_length=40)
    term = models.CharField(max_length=200)
    meddra_code = models.PositiveIntegerField()
    visit_code = models.CharField(max_length=20)
    specimen_date = models.DateField(null=True, blank=True)
    value = models.FloatField()
    unit = models.CharField(max_length=30)
    grade = models.PositiveSmallIntegerField()
    baseline_value = models.FloatField()
    baseline_grade = models.PositiveSmallIntegerField()
    reference = models.JSONField(default=dict, help_text="the ULN/LLN used")
    status = models.CharField(
        max_length=20, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    adverse_event = models.ForeignKey(
        AdverseEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["lab", "grade"], name="uniq_lab_ae_proposal")
        ]

    def __str__(self) -> str:
        return f"{self.participant} {self.term} G{self.grade} at {self.visit_code} ({self.status})"
