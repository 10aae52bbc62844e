# ruff: noqa: RUF012
"""Admin of cell-product batches and administrations."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from hepatrial.trials import models as m
from hepatrial.trials.admin.base import (
    AuditedAdmin,
    ReasonForm,
)


class AdministrationForm(ReasonForm):
    """Checks route, dose and chain of identity like ``services.record_administration``."""

    def clean(self) -> dict[str, Any]:
        from hepatrial.trials import services

        data = super().clean()
        needed = ("participant", "route", "cells_total", "date", "batch_id")
        if self.instance.pk is None and all(data.get(k) is not None for k in needed):
            try:
                services.check_administration(**{k: data[k] for k in needed})
            except services.StoreError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(m.Administration)
class AdministrationAdmin(AuditedAdmin):
    form = AdministrationForm
    list_display = ["participant", "date", "route", "cells_total", "cells_per_kg", "batch_id"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """A new administration goes through the service (route, dose, chain of identity)."""
        from hepatrial.trials import services

        if change:
            return super().save_model(request, obj, form, change)
        new = services.record_administration(
            participant=obj.participant,
            route=obj.route,
            cells_total=obj.cells_total,
            volume_ml=obj.volume_ml,
            date=obj.date,
            operator=obj.operator,
            batch_id=obj.batch_id,
            cells_per_kg=obj.cells_per_kg,
            user=request.user,
        )
        obj.pk = new.pk
        obj.refresh_from_db()
        return None


@admin.register(m.CellProductBatch)
class CellProductBatchAdmin(AuditedAdmin):
    list_display = ["batch_id", "participant", "released", "release_date"]
