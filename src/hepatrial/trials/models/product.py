# ruff: noqa: RUF012
"""Cell-product batches and administrations."""

from __future__ import annotations

from django.db import models

from hepatrial.trials.audit.base import AuditedModel
from hepatrial.trials.audit.locks import LockScope
from hepatrial.trials.models.choices import Route
from hepatrial.trials.models.participants import Participant


class CellProductBatch(AuditedModel):
    """An autologous cell-product batch, tied to its one participant (chain of identity)."""

    lock_scope = LockScope(participant="participant_id")

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

    lock_scope = LockScope(participant="participant_id")

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

    class Meta(AuditedModel.Meta):
        ordering = ["participant", "date", "pk"]

    def __str__(self) -> str:
        return f"{self.participant} {self.route} {self.date}"
