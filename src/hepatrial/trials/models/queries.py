# ruff: noqa: RUF012
"""Data queries (the query workflow of the eCRF) and source-data verification marks.

Both are audited records (history + ledger for every step) that talk *about* the trial data
without being trial data, so no lock covers them and no signature lists them
(``lock_scope = None``): a monitor raising a query, a coordinator answering it or a monitor
verifying a value against the source must not invalidate an investigator's signature of the
visit (a signature covers exactly the rows some lock covers, see
:mod:`hepatrial.trials.audit.signatures`). Which workflow steps a lock refuses is a rule of
:mod:`hepatrial.trials.validators.query` (a locked record gets no new or re-opened query; a
trial lock stops every step).

The rules live in :mod:`hepatrial.trials.validators.query` (pure) and the workflow in
:mod:`hepatrial.trials.services.queries` / :mod:`hepatrial.trials.services.sdv`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from hepatrial import vocab
from hepatrial.trials.audit.base import AuditedModel
from hepatrial.trials.models.choices import _choices
from hepatrial.trials.models.participants import Participant
from hepatrial.trials.models.visits import Visit

QueryStatus: Any = _choices("QueryStatus", vocab.QUERY_STATUS)
QueryOrigin: Any = _choices("QueryOrigin", vocab.QUERY_ORIGIN)
QueryStep: Any = _choices("QueryStep", vocab.QUERY_STEP)
SdvForm: Any = _choices("SdvForm", vocab.SDV_FORM)


class Query(AuditedModel):
    """A question about one field of one record of a participant (ICH E6(R3) 3.16.1: data
    corrections and the query trail).

    The target is ``model_label`` (e.g. ``trials.labresult``), ``object_pk`` and
    ``field_name``; ``item`` names the item for people (the analyte of a lab value, the
    clinical item). A query on a required item that was never entered has an empty
    ``object_pk`` (``trials.labresult`` / ``value`` / ``albumin``). ``value_at_raise`` is the
    field's value when the query was raised, as text.

    ``status``: ``open`` (waiting for the site), ``answered`` (waiting for the raiser),
    ``closed``. The thread is :class:`QueryMessage`; every step also changes this row with a
    reason, so the history shows each transition with who and when.
    """

    lock_scope = None

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="queries")
    visit = models.ForeignKey(
        Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="queries"
    )
    model_label = models.CharField(max_length=100)
    object_pk = models.CharField(max_length=64, blank=True)
    field_name = models.CharField(max_length=100)
    item = models.CharField(max_length=100, blank=True)
    origin = models.CharField(max_length=20, choices=QueryOrigin.choices)
    text = models.TextField()
    value_at_raise = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=QueryStatus.choices,
                              default=QueryStatus.OPEN)
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    raised_at = models.DateTimeField()
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
        related_name="+",
    )
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["raised_at", "pk"]
        indexes = [models.Index(fields=["status", "participant"], name="query_status_idx")]

    def __str__(self) -> str:
        where = f" {self.visit.code}" if self.visit_id else ""
        return f"query {self.pk} {self.participant}{where} {self.item or self.field_name}"


class QueryMessage(AuditedModel):
    """One step of a query's thread: raised, answered, closed, re-opened, or a note."""

    lock_scope = None

    query = models.ForeignKey(Query, on_delete=models.PROTECT, related_name="messages")
    step = models.CharField(max_length=20, choices=QueryStep.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                               related_name="+")
    at = models.DateTimeField()
    text = models.TextField(blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"query {self.query_id} {self.step}"


class SourceVerification(AuditedModel):
    """A monitor's mark that an item (``item``: an analyte, a clinical item) or a whole form
    (``item`` empty) of a visit was verified against the source documents (ICH E6(R3) 3.11.4,
    source data verification).

    Like a signature (:mod:`hepatrial.trials.audit.signatures`), the mark names what was
    verified: ``manifest`` lists ``[model label, pk, ledger seq, digest, item, field, value]``
    of each verified row (``field`` empty: the whole row; a clinical item: that column and
    its value), ``manifest_digest`` is its sha256 and ``ledger_seq``/``ledger_hash`` the
    ledger head then. A later change of a verified value clears the mark: its status
    (*verified* / *cleared by change seq N*) is computed from the ledger, never stored
    (:func:`hepatrial.trials.services.sdv.status`).
    """

    lock_scope = None

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT,
                                    related_name="source_verifications")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT,
                              related_name="source_verifications")
    form = models.CharField(max_length=20, choices=SdvForm.choices)
    item = models.CharField(max_length=100, blank=True)
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    related_name="+")
    verified_at = models.DateTimeField()
    note = models.TextField(blank=True)
    ledger_seq = models.PositiveBigIntegerField()
    ledger_hash = models.CharField(max_length=64)
    manifest = models.JSONField()
    manifest_digest = models.CharField(max_length=64)

    class Meta(AuditedModel.Meta):
        ordering = ["verified_at", "pk"]

    def __str__(self) -> str:
        return f"SDV {self.visit} {self.form} {self.item or '(whole form)'}"
