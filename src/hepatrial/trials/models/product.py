# ruff: noqa: RUF012
"""The cell product vein to vein: harvest, batch, manufacture, QC, release, custody, infusion.

Records (every one audited: history rows and audit-ledger entries; every one in its
participant's casebook, ``LockScope(participant=...)``, so a casebook or trial lock freezes it
and a casebook signature covers it):

* :class:`Harvest` — the collection of the starting material (bone-marrow aspirate): when,
  where, by whom, volume, anticoagulant lot, container, transport; the **chain-of-identity
  id** made here (:func:`hepatrial.protocol.coi.make_coi`, ISO/IEC 7064 MOD 37-2 check
  character), unique, from (site, collection date, sequence), which is unique too.
* :class:`CellProductBatch` — the batch made from one harvest, with its lifecycle ``state``
  (:class:`hepatrial.protocol.product_lifecycle.State`), receipt at the facility, formulation
  time (start of shelf life) and release time. ``released``/``release_date`` are kept for the
  readers of the store before the lifecycle (batches made before migration 0005 have no
  ``state`` and no harvest).
* :class:`ManufacturingStep` (reagents and their lots) and its :class:`InProcessControlResult`
  rows; :class:`QcResult` (value as entered, unit, analyst, date, method, source);
  :class:`BatchRelease` (the QA review — the verdict on every release test — and the release,
  normal or exceptional) with its :class:`ProductSignature` e-signatures (password re-entered;
  manifest of the ledger entries of the rows signed, 21 CFR 11.50/11.70/11.200);
* :class:`CustodyEvent` — one per lifecycle step (harvest, receipt, ..., administration,
  quarantine, destruction): who, when, where, temperature, the scanned id; **append-only**
  (``save`` of a stored event and every ``delete`` are refused), so the chain of custody is
  the ledgered sequence of these rows (an edit by SQL is reported by ``hepatrial audit
  verify`` as ``live_edited``);
* :class:`Administration` (the infusion; the dosing gate's facts: time, scanned id, patient
  identifiers checked, dose override) and its :class:`PostInfusionObservation` rows (vital
  signs at 0/15/30/60 min; an infusion reaction links its adverse event).

Columns added to the models of migration 0001 (batch, administration) are nullable and listed
in ``audit_added_fields``, so history rows written before keep their digests.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from hepatrial.errors import AuditTrailImmutable
from hepatrial.protocol.product_lifecycle import Action, State
from hepatrial.trials.audit.base import AuditedModel
from hepatrial.trials.audit.locks import LockScope
from hepatrial.trials.models.choices import Route
from hepatrial.trials.models.participants import Participant
from hepatrial.trials.models.safety import AdverseEvent
from hepatrial.trials.models.trial import Site
from hepatrial.trials.models.visits import ProtocolDeviation

__all__ = [
    "Administration",
    "BatchRelease",
    "CellProductBatch",
    "CustodyEvent",
    "Harvest",
    "InProcessControlResult",
    "ManufacturingStep",
    "PostInfusionObservation",
    "ProductSignature",
    "QcResult",
]

#: choices of a batch's lifecycle state (the pure state machine's codes)
STATE_CHOICES = [(s.value, s.value.replace("_", " ")) for s in State]
#: choices of a custody event's action: ``harvest`` (the first event of a chain of identity)
#: and every action of the state machine
ACTION_CHOICES = [("harvest", "harvest")] + [(a.value, a.value.replace("_", " ")) for a in Action]
_CASEBOOK = LockScope(participant="participant_id")


class Harvest(AuditedModel):
    """The collection of the starting material from the participant (autologous) and the
    chain-of-identity id made for it."""

    lock_scope = _CASEBOOK

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="harvests")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    collection_date = models.DateField(help_text="date of collection (UTC): part of the id")
    sequence = models.PositiveSmallIntegerField(help_text="n-th harvest at the site that date")
    coi = models.CharField("chain-of-identity id", max_length=40, unique=True)
    collected_at = models.DateTimeField()
    operator = models.CharField(max_length=100)
    volume_ml = models.DecimalField(max_digits=7, decimal_places=2)
    anticoagulant_lot = models.CharField(max_length=60, blank=True)
    container = models.CharField(max_length=100, blank=True)
    transport = models.CharField(max_length=200, blank=True)
    collection_site = models.CharField(max_length=100, blank=True, help_text="e.g. iliac crest")

    class Meta(AuditedModel.Meta):
        ordering = ["collected_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "collection_date", "sequence"], name="uniq_harvest_site_day_seq"
            )
        ]

    def __str__(self) -> str:
        return self.coi


class CellProductBatch(AuditedModel):
    """An autologous cell-product batch, tied to its one participant (chain of identity)."""

    lock_scope = _CASEBOOK

    batch_id = models.CharField(max_length=60, unique=True)
    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="product_batches"
    )
    coi_identifier = models.CharField(max_length=60, blank=True, help_text="ISBT 128 ST-028")
    release_tests = models.JSONField(default=dict, blank=True)
    released = models.BooleanField(default=False)
    release_date = models.DateField(null=True, blank=True)
    # the lifecycle (migration 0005)
    harvest = models.OneToOneField(
        Harvest, on_delete=models.PROTECT, null=True, blank=True, related_name="batch"
    )
    state = models.CharField(max_length=30, choices=STATE_CHOICES, null=True, blank=True)
    facility = models.CharField(max_length=200, null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    formulated_at = models.DateTimeField(null=True, blank=True, help_text="start of shelf life")
    formulated_volume_ml = models.DecimalField(
        max_digits=7, decimal_places=2, null=True, blank=True
    )
    released_at = models.DateTimeField(null=True, blank=True)
    quarantined_from = models.CharField(
        max_length=30, choices=STATE_CHOICES, null=True, blank=True
    )

    #: added in migration 0005 (history rows written before have them NULL)
    audit_added_fields = (
        "harvest_id", "state", "facility", "received_at", "formulated_at",
        "formulated_volume_ml", "released_at", "quarantined_from",
    )  # fmt: skip

    class Meta(AuditedModel.Meta):
        ordering = ["batch_id"]
        verbose_name_plural = "cell product batches"

    def __str__(self) -> str:
        return self.batch_id


class ManufacturingStep(AuditedModel):
    """One manufacturing step of a batch as performed: who, when, the reagents and lots."""

    lock_scope = _CASEBOOK

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    batch = models.ForeignKey(CellProductBatch, on_delete=models.PROTECT, related_name="steps")
    step = models.CharField(max_length=40, help_text="the protocol's step code")
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField()
    operator = models.CharField(max_length=100)
    reagents = models.JSONField(default=list, blank=True, help_text='[{"name": ..., "lot": ...}]')
    notes = models.TextField(blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["batch", "started_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "step"], name="uniq_batch_step")
        ]

    def __str__(self) -> str:
        return f"{self.batch_id} {self.step}"


class InProcessControlResult(AuditedModel):
    """The result of one in-process control of a manufacturing step (as entered and typed)."""

    lock_scope = _CASEBOOK

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    batch = models.ForeignKey(CellProductBatch, on_delete=models.PROTECT, related_name="+")
    step = models.ForeignKey(ManufacturingStep, on_delete=models.PROTECT, related_name="controls")
    control = models.CharField(max_length=40)
    value = models.JSONField(help_text="the typed result: a number or a text")
    value_as_entered = models.CharField(max_length=100)
    unit = models.CharField(max_length=20, blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["step", "control"]
        constraints = [
            models.UniqueConstraint(fields=["step", "control"], name="uniq_step_control")
        ]

    def __str__(self) -> str:
        return f"{self.step} {self.control}"


class QcResult(AuditedModel):
    """A quality-control (release) test result of a batch: the value as entered, its unit,
    the analyst, the date and method, and where it came from (entry or a lab file)."""

    lock_scope = _CASEBOOK

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    batch = models.ForeignKey(
        CellProductBatch, on_delete=models.PROTECT, related_name="qc_results"
    )
    test = models.CharField(max_length=40, help_text="the protocol's release test")
    value = models.JSONField(help_text="the typed result: a number or a text")
    value_as_entered = models.CharField(max_length=100)
    unit = models.CharField(max_length=20, blank=True)
    analyst = models.CharField(max_length=100)
    tested_on = models.DateField()
    method = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=200, default="entry")

    class Meta(AuditedModel.Meta):
        ordering = ["batch", "test"]
        verbose_name = "QC result"
        constraints = [
            models.UniqueConstraint(fields=["batch", "test"], name="uniq_batch_qc_test")
        ]

    def __str__(self) -> str:
        return f"{self.batch_id} {self.test}"


class ProductSignature(AuditedModel):
    """An e-signature of a product act (``release``, ``exceptional_release``,
    ``medical_justification``): the signer re-entered the password (21 CFR 11.200); the
    printed name, time and meaning are shown (11.50); ``manifest`` lists the batch's rows
    signed as ``[model label, pk, ledger seq, digest]`` of their latest ledger entries and
    ``manifest_digest`` is its sha256 (11.70: linked to the records)."""

    lock_scope = _CASEBOOK

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    batch = models.ForeignKey(
        CellProductBatch, on_delete=models.PROTECT, related_name="signatures"
    )
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(max_length=200)
    role = models.CharField(max_length=30)
    meaning = models.CharField(max_length=40)
    signed_at = models.DateTimeField()
    ledger_seq = models.PositiveBigIntegerField()
    ledger_hash = models.CharField(max_length=64)
    manifest = models.JSONField()
    manifest_digest = models.CharField(max_length=64)

    class Meta(AuditedModel.Meta):
        ordering = ["signed_at", "pk"]

    def __str__(self) -> str:
        return f"{self.batch_id} {self.meaning} signed by {self.printed_name}"


class BatchRelease(AuditedModel):
    """The QA review and release of a batch: the verdict on every release test at release,
    the conclusion, the time of release and its signatures; an exceptional release carries the
    medical justification, the investigator's signature and the major deviation it records."""

    lock_scope = _CASEBOOK

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    batch = models.ForeignKey(CellProductBatch, on_delete=models.PROTECT, related_name="releases")
    exceptional = models.BooleanField(default=False)
    released_at = models.DateTimeField()
    assessment = models.JSONField(help_text="[{test, outcome, reason, criterion, result}]")
    conclusion = models.TextField()
    weight_kg = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    qa_signature = models.ForeignKey(
        ProductSignature, on_delete=models.PROTECT, related_name="+"
    )
    justification = models.TextField(blank=True)
    investigator_signature = models.ForeignKey(
        ProductSignature, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    deviation = models.ForeignKey(
        ProtocolDeviation, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta(AuditedModel.Meta):
        ordering = ["released_at", "pk"]

    def __str__(self) -> str:
        return f"{self.batch_id} {'exceptional release' if self.exceptional else 'release'}"


class CustodyEvent(AuditedModel):
    """One step of the chain of custody: append-only (never changed, never deleted)."""

    lock_scope = _CASEBOOK

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    harvest = models.ForeignKey(Harvest, on_delete=models.PROTECT, related_name="custody")
    batch = models.ForeignKey(
        CellProductBatch, on_delete=models.PROTECT, null=True, blank=True, related_name="custody"
    )
    seq = models.PositiveIntegerField(help_text="1, 2, ... along the chain of identity")
    action = models.CharField(max_length=30, choices=ACTION_CHOICES)
    from_state = models.CharField(max_length=30, blank=True)
    to_state = models.CharField(max_length=30)
    at = models.DateTimeField(help_text="when it happened")
    recorded_at = models.DateTimeField(help_text="when it was recorded (system clock)")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    actor_name = models.CharField(max_length=200)
    location = models.CharField(max_length=200, blank=True)
    temperature_c = models.FloatField(null=True, blank=True)
    scanned_coi = models.CharField(max_length=40, blank=True)
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["harvest", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["harvest", "seq"], name="uniq_custody_seq")
        ]

    def __str__(self) -> str:
        return f"{self.harvest_id} #{self.seq} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Append only: a stored custody event is never changed (the one place of this rule:
        every write path saves through here)."""
        if not self._state.adding:
            raise AuditTrailImmutable(
                f"custody event {self.pk} ({self.action}): the chain of custody is "
                "append-only; record a new event instead"
            )
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: the chain of custody is append-only."""
        raise AuditTrailImmutable(
            f"custody event {self.pk} ({self.action}): the chain of custody is append-only"
        )


class Administration(AuditedModel):
    """An administration (infusion) of the cell product."""

    lock_scope = _CASEBOOK

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="administrations"
    )
    route = models.CharField(max_length=20, choices=Route.choices)
    cells_total = models.FloatField(help_text="cells given")
    cells_per_kg = models.FloatField(null=True, blank=True)
    volume_ml = models.DecimalField(max_digits=8, decimal_places=2)
    date = models.DateField()
    operator = models.CharField(max_length=100)
    #: the batch given; stored in the column ``batch_id`` as the batch's own ``batch_id`` text
    #: (a foreign key to ``CellProductBatch.batch_id``, so history rows written when this was a
    #: plain text column keep their digests)
    batch = models.ForeignKey(
        CellProductBatch,
        on_delete=models.PROTECT,
        to_field="batch_id",
        db_column="batch_id",
        related_name="administrations",
    )
    # the dosing gate's facts (migration 0005)
    administered_at = models.DateTimeField(null=True, blank=True, help_text="start of infusion")
    scanned_coi = models.CharField(max_length=40, null=True, blank=True)
    identifiers_checked = models.JSONField(null=True, blank=True)
    dose_override_reason = models.TextField(null=True, blank=True)

    #: added in migration 0005 (history rows written before have them NULL)
    audit_added_fields = (
        "administered_at", "scanned_coi", "identifiers_checked", "dose_override_reason",
    )  # fmt: skip

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "date", "pk"]

    def __str__(self) -> str:
        return f"{self.participant} {self.route} {self.date}"


class PostInfusionObservation(AuditedModel):
    """Vital signs after an infusion (at 0, 15, 30 and 60 min) and any infusion reaction (its
    adverse event is linked)."""

    lock_scope = _CASEBOOK

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    administration = models.ForeignKey(
        Administration, on_delete=models.PROTECT, related_name="observations"
    )
    minute = models.PositiveSmallIntegerField(help_text="minutes after the start: 0, 15, 30, 60")
    observed_at = models.DateTimeField()
    heart_rate = models.PositiveSmallIntegerField(null=True, blank=True, help_text="/min")
    systolic_bp = models.PositiveSmallIntegerField(null=True, blank=True, help_text="mmHg")
    diastolic_bp = models.PositiveSmallIntegerField(null=True, blank=True, help_text="mmHg")
    respiratory_rate = models.PositiveSmallIntegerField(null=True, blank=True, help_text="/min")
    temperature_c = models.DecimalField(max_digits=4, decimal_places=1, null=True, blank=True)
    spo2 = models.PositiveSmallIntegerField(null=True, blank=True, help_text="%")
    reaction = models.BooleanField(default=False)
    reaction_description = models.TextField(blank=True)
    adverse_event = models.ForeignKey(
        AdverseEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    observer = models.CharField(max_length=100)

    class Meta(AuditedModel.Meta):
        ordering = ["administration", "minute"]
        constraints = [
            models.UniqueConstraint(
                fields=["administration", "minute"], name="uniq_observation_minute"
            )
        ]

    def __str__(self) -> str:
        return f"{self.administration_id} +{self.minute} min"
