# ruff: noqa: RUF012
"""Admin of participants, consent and eligibility assessments."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from hepatrial.trials import models as m
from hepatrial.trials.admin.base import (
    AuditedAdmin,
)


@admin.register(m.Participant)
class ParticipantAdmin(AuditedAdmin):
    site_path = "site"
    list_display = ["study_id", "site", "arm", "sex", "etiology", "status", "enrolment_date"]
    list_filter = ["site", "status", "etiology"]
    search_fields = ["study_id"]
    readonly_fields = ["arm", "enrolment_date", "status", "status_date", "status_reason"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:  # a new participant is screened on its screening date
            obj.status = m.ParticipantStatus.SCREENED
            obj.status_date = obj.screening_date
            obj.status_reason = "screened"
        super().save_model(request, obj, form, change)


@admin.register(m.Consent)
class ConsentAdmin(AuditedAdmin):
    list_display = ["participant", "version", "date"]


@admin.register(m.EligibilityAssessment)
class EligibilityAssessmentAdmin(AuditedAdmin):
    list_display = ["participant", "assessed_on", "eligible", "protocol_version"]
    readonly_fields = ["eligible", "criteria", "screening_data", "protocol_version"]
