"""The trial store: a Django project (models, services, selectors, admin, audit trail).

Use :func:`setup` once per process before importing :mod:`hepatrial.trials.services`,
:mod:`hepatrial.trials.selectors` or :mod:`hepatrial.trials.audit`::

    from hepatrial.trials import setup
    setup("trial.sqlite3")          # or HEPATRIAL_DATABASE_URL=postgresql://...
    from hepatrial.trials import services, selectors

Layout (HackSoft style): writes only in ``services``, reads in ``selectors``, the audit ledger
in ``audit``, a thin ``admin``; no business logic in signals.

Public API
----------
``setup(db)``, ``migrate()``
    configure Django (SQLite file or ``HEPATRIAL_DATABASE_URL``) and create/upgrade the schema.
:mod:`~hepatrial.trials.services` (writes; keyword-only; ``user=None`` → ``system`` account)
    ``install_protocol``, ``active_protocol``, ``generate_randomisation``, ``create_site``,
    ``create_user``, ``add_site_membership``, ``screen_participant``, ``record_consent``,
    ``assess_eligibility``, ``enrol_participant``, ``schedule_visits``, ``record_visit``,
    ``mark_visit_not_done``, ``record_deviation``, ``record_lab`` (``canonical_lab``),
    ``record_clinical``, the cell product vein to vein (``record_harvest``,
    ``register_batch``, ``start_manufacture``, ``record_manufacturing_step``,
    ``complete_manufacture``, ``record_qc_result(s)``, ``submit_for_review``,
    ``release_batch`` (e-signed), ``dispatch_batch``, ``receive_at_bedside``, quarantine ...),
    ``check_administration``, ``record_administration`` (the dosing gate),
    ``record_adverse_event``,
    ``change_status``, ``update_participant|visit|lab|clinical|administration|adverse_event``
    (all need ``reason=``). Errors: ``StoreError`` and ``ChangeReasonRequired`` (ValueErrors).
:mod:`~hepatrial.trials.selectors` (reads → pandas / dicts)
    ``participants_frame``, ``visits_frame``, ``labs_frame``, ``clinical_frame``,
    ``measurements_frame``, ``administrations_frame``, ``products_frame``, ``product_record``,
    ``adverse_events_frame``,
    ``deviations_frame``, ``status_history_frame``, ``protocol_record``, ``sites``.
:mod:`~hepatrial.trials.audit`
    ``append(history_rows)``, ``bulk_create(model, objs, user=, reason=)``,
    ``bulk_update(model, objs, fields, reason=, user=)``, ``verify(expected_head=None)`` →
    ``list[Problem]``, ``head()``, ``history_entries(participant_id=None)``, ``row_digest``,
    ``canonical_value``, ``chain_hash``, ``lock_ledger``, ``audited_models``.
:mod:`~hepatrial.trials.base`
    ``AuditedModel`` (reason for change enforced in ``save``/``delete`` and on querysets:
    ``update_with_reason``/``delete_with_reason``), ``ChangeReasonRequired``,
    ``AuditTrailImmutable``.
"""

from __future__ import annotations

from pathlib import Path

from hepatrial import errors as _errors

__all__ = ["StoreConfigurationError", "migrate", "setup"]


class StoreConfigurationError(_errors.ConfigurationError):
    """Django is already configured with a different database."""


def setup(db: str | Path | None = None) -> str:
    """Configure Django for the trial store and return a description of the database.

    Args:
        db: SQLite file path (default ``./hepatrial.sqlite3``). Ignored when the environment
            variable ``HEPATRIAL_DATABASE_URL`` (``postgresql://user@host:port/name``) is set.

    Once Django is configured in a process, later calls do not reconfigure it and return the
    database already in use (under pytest-django, which configures Django from
    ``hepatrial.trials.settings``, use its ``db``/``transactional_db`` fixtures instead).
    """
    import django
    from django.conf import settings

    from hepatrial.trials.conf import build_settings, describe_database

    wanted = build_settings(db)
    if not settings.configured:
        settings.configure(**wanted)
        django.setup()
    else:
        from django.apps import apps

        if not apps.ready:
            django.setup()
    return describe_database(settings.DATABASES["default"])


def migrate(verbosity: int = 0) -> None:
    """Create or upgrade the database schema (``manage.py migrate``), then run system checks."""
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("migrate", interactive=False, verbosity=verbosity, stdout=out)
    call_command("check", fail_level="ERROR", verbosity=verbosity, stdout=out)
