# ruff: noqa: RUF012
"""Admin of adverse events."""

from __future__ import annotations

from django.contrib import admin

from hepatrial.trials import models as m
from hepatrial.trials.admin.base import (
    AuditedAdmin,
)


@admin.register(m.AdverseEvent)
class AdverseEventAdmin(AuditedAdmin):
    list_display = ["participant", "term", "grade", "serious", "relatedness", "onset_date"]
    list_filter = ["grade", "serious", "relatedness"]
