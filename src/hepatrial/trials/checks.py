"""Django system checks for the trial store (run by ``hepatrial init`` and ``manage.py check``).

* ``hepatrial.E001`` — a concrete model of the project app has no history (every trial record
  must keep an audit trail, 21 CFR 11.10(e)).
* ``hepatrial.E002`` — a model's history is not ledgered (history rows would not be chained).
* ``hepatrial.E003`` — ``USE_TZ`` is off (audit times must be unambiguous UTC, ICH E6(R3) 4.2.2(d)).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import models

PROJECT_APP_LABELS = ("trials",)


def _is_history_model(model: type[models.Model]) -> bool:
    return hasattr(model, "instance_type") and hasattr(model, "history_object")


def check_models_have_history(
    app_configs: Iterable[Any] | None = None,
    models_to_check: Iterable[type[models.Model]] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """Error for every concrete project model without (ledgered) simple_history history.

    ``models_to_check`` replaces the installed models (for testing the check on a synthetic
    list). History models themselves and models marked ``audit_exempt = True`` (the audit
    ledger) are skipped.
    """
    from hepatrial.trials.base import LedgeredHistory

    if models_to_check is None:
        models_to_check = [m for m in apps.get_models() if m._meta.app_label in PROJECT_APP_LABELS]
    errors: list[checks.CheckMessage] = []
    for model in models_to_check:
        meta = model._meta
        if meta.abstract or meta.proxy or not meta.managed:
            continue
        if _is_history_model(model) or getattr(model, "audit_exempt", False):
            continue
        manager_attr = getattr(meta, "simple_history_manager_attribute", None)
        history = getattr(model, manager_attr, None) if manager_attr else None
        if history is None:
            errors.append(
                checks.Error(
                    f"{meta.label} has no history (audit trail)",
                    hint="derive it from hepatrial.trials.base.AuditedModel",
                    obj=model,
                    id="hepatrial.E001",
                )
            )
            continue
        if not issubclass(history.model, LedgeredHistory):
            errors.append(
                checks.Error(
                    f"{meta.label} history is not chained into the audit ledger",
                    hint="use AuditedHistoricalRecords (bases=[LedgeredHistory])",
                    obj=model,
                    id="hepatrial.E002",
                )
            )
    return errors


def check_use_tz(
    app_configs: Iterable[Any] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Error when ``USE_TZ`` is off: audit timestamps must be stored in UTC."""
    if not settings.USE_TZ:
        return [checks.Error("USE_TZ must be True (audit times in UTC)", id="hepatrial.E003")]
    return []
