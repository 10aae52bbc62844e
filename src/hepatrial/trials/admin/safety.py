# ruff: noqa: RUF012
"""Admin of adverse events.

Thin: the form's ``check_rules`` runs ``services.check_adverse_event`` (the one validator;
the base form shows every problem on its field); ``save_model`` calls ``record_adverse_event``
(add) or ``update_adverse_event`` (change). The first entry of a value (e.g. the resolution
date at follow-up) needs no reason for change; every later change does.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from hepatrial.trials import models as m
from hepatrial.trials.admin.base import (
    REASON_FIELD,
    AuditedAdmin,
    ReasonForm,
)
from hepatrial.trials.admin.product import field_value

_FIELDS = ("term", "grade", "serious", "relatedness", "onset_date", "resolution_date", "outcome")


class AdverseEventForm(ReasonForm):
    """Runs the adverse-event rules (grade 5 is fatal and serious, dates) on add and change."""

    first_entry_free = True

    def check_rules(self, data: dict[str, Any]) -> None:
        """``services.check_adverse_event`` on the values to be written."""
        from hepatrial.trials import services

        if field_value(self, "participant") is None:
            return
        services.check_adverse_event(
            participant=field_value(self, "participant"),
            **{k: field_value(self, k) for k in _FIELDS},
        )


@admin.register(m.AdverseEvent)
class AdverseEventAdmin(AuditedAdmin):
    form = AdverseEventForm
    fields = ["participant", *_FIELDS]
    list_display = ["participant", "term", "grade", "serious", "relatedness", "onset_date"]
    list_filter = ["grade", "serious", "relatedness"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["participant"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Add: ``services.record_adverse_event``; change: ``services.update_adverse_event``."""
        from hepatrial.trials import services

        data = form.cleaned_data
        if change:
            changes = {k: data[k] for k in form.changed_data if k in _FIELDS}
            if changes:
                stored = m.AdverseEvent.objects.get(pk=obj.pk)
                services.update_adverse_event(
                    stored, reason=data.get(REASON_FIELD) or None, user=request.user, **changes
                )
        else:
            new = services.record_adverse_event(
                participant=obj.participant, user=request.user, **{k: data[k] for k in _FIELDS}
            )
            obj.pk = new.pk
        obj.refresh_from_db()
