# ruff: noqa: RUF012
"""Admin of cell-product batches and administrations.

Thin: each form's :meth:`~hepatrial.trials.admin.base.ReasonForm.check_rules` runs the
service's ``check_*`` (the record's one validator; the base form shows every problem on its
field); each ``save_model`` (add and change) calls the service that writes. The first entry
of a value needs no reason for change; every later change does.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from hepatrial.trials import models as m
from hepatrial.trials.admin.base import (
    REASON_FIELD,
    AuditedAdmin,
    ReasonForm,
)


def field_value(form: forms.ModelForm, name: str) -> Any:
    """The cleaned value of a field, or the stored one for a field not on the form."""
    if name in form.cleaned_data:
        return form.cleaned_data[name]
    return getattr(form.instance, name, None)


class AdministrationForm(ReasonForm):
    """Runs the administration rules (route, dose, enrolment, chain of identity) on add and on
    change. The batch is typed (or scanned) by its id, and checked against the participant."""

    batch_id = forms.CharField(
        label="Batch id",
        max_length=60,
        help_text="The id on the bag (ISBT 128); it must be a released batch of this "
        "participant.",
    )

    first_entry_free = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["batch_id"] = self.instance.batch_id

    def check_rules(self, data: dict[str, Any]) -> None:
        """``services.check_administration`` on the values to be written."""
        from hepatrial.trials import services

        names = ("route", "cells_total", "cells_per_kg", "volume_ml", "date", "operator",
                 "batch_id")  # fmt: skip
        if field_value(self, "participant") is None:
            return
        services.check_administration(
            participant=field_value(self, "participant"),
            **{k: field_value(self, k) for k in names},
        )


@admin.register(m.Administration)
class AdministrationAdmin(AuditedAdmin):
    form = AdministrationForm
    fields = ["participant", "route", "cells_total", "cells_per_kg", "volume_ml", "date",
              "operator", "batch_id"]  # fmt: skip
    list_display = ["participant", "date", "route", "cells_total", "cells_per_kg", "batch_id"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["participant"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Add: ``services.record_administration``; change: ``services.update_administration``
        (both: the same rules, and the dose rule)."""
        from hepatrial.trials import services

        data = form.cleaned_data
        if change:
            fields = {"route", "cells_total", "cells_per_kg", "volume_ml", "date", "operator",
                      "batch_id"}  # fmt: skip
            changes = {k: data[k] for k in form.changed_data if k in fields}
            if changes:
                stored = m.Administration.objects.get(pk=obj.pk)
                services.update_administration(
                    stored, reason=data.get(REASON_FIELD) or None, user=request.user, **changes
                )
        else:
            new = services.record_administration(
                participant=obj.participant,
                route=data["route"],
                cells_total=data["cells_total"],
                volume_ml=data["volume_ml"],
                date=data["date"],
                operator=data["operator"],
                batch_id=data["batch_id"],
                cells_per_kg=data.get("cells_per_kg"),
                user=request.user,
            )
            obj.pk = new.pk
        obj.refresh_from_db()


class CellProductBatchForm(ReasonForm):
    """Runs the batch rules on add and on change; ticking *released* releases the batch through
    ``services.release_product_batch`` (release date, enrolled participant, and release tests
    meeting the protocol's release specification)."""

    first_entry_free = True

    def reason_needed(self, data: dict[str, Any]) -> bool:
        """Releasing is a workflow action: it always carries a reason (e.g. "QA release")."""
        releasing = "released" in self.changed_data and bool(data.get("released"))
        return releasing or super().reason_needed(data)

    def check_rules(self, data: dict[str, Any]) -> None:
        """``services.check_product_batch`` on the batch's state after this form."""
        from hepatrial.trials import services

        if field_value(self, "participant") is None:
            return
        services.check_product_batch(
            batch_id=field_value(self, "batch_id"),
            participant=field_value(self, "participant"),
            coi_identifier=field_value(self, "coi_identifier") or "",
            release_tests=field_value(self, "release_tests"),
            released=bool(field_value(self, "released")),
            release_date=field_value(self, "release_date"),
            batch=self.instance if self.instance.pk is not None else None,
        )


@admin.register(m.CellProductBatch)
class CellProductBatchAdmin(AuditedAdmin):
    form = CellProductBatchForm
    fields = ["batch_id", "participant", "coi_identifier", "release_tests", "released",
              "release_date"]  # fmt: skip
    list_display = ["batch_id", "participant", "released", "release_date"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return ["batch_id", "released"] if obj.released else ["batch_id"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Add: ``services.register_product_batch``; change:
        ``services.update_product_batch``; released ticked: ``services.release_product_batch``
        (in one transaction)."""
        from hepatrial.trials import services

        data = form.cleaned_data
        release = bool(data.get("released")) and (not change or "released" in form.changed_data)
        reason = (data.get(REASON_FIELD) or None) if change else "released at registration"
        with transaction.atomic():
            if change:
                fields = {"participant", "coi_identifier", "release_tests"}
                if not release:
                    fields.add("release_date")
                changes = {k: data[k] for k in form.changed_data if k in fields}
                if changes:
                    services.update_product_batch(
                        obj.batch_id, reason=reason, user=request.user, **changes
                    )
            else:
                new = services.register_product_batch(
                    batch_id=data["batch_id"],
                    participant=data["participant"],
                    coi_identifier=data.get("coi_identifier") or "",
                    release_tests=data.get("release_tests") or {},
                    user=request.user,
                )
                obj.pk = new.pk
            if release:
                services.release_product_batch(
                    batch_id=obj.batch_id,
                    release_date=data.get("release_date"),
                    reason=reason,
                    user=request.user,
                )
        obj.refresh_from_db()
