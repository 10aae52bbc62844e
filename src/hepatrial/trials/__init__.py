"""The trial store: a Django project (models, services, selectors, admin, audit trail).

Use :func:`setup` once per process before importing :mod:`hepatrial.trials.services`,
:mod:`hepatrial.trials.selectors` or :mod:`hepatrial.trials.audit`::

    from hepatrial.trials import setup
    setup("trial.sqlite3")          # or HEPATRIAL_DATABASE_URL=postgresql://...
    from hepatrial.trials import services, selectors

Layout (HackSoft style): writes only in ``services``, reads in ``selectors``, the audit ledger
in ``audit``, a thin ``admin``; no business logic in signals.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["StoreConfigurationError", "migrate", "setup"]


class StoreConfigurationError(RuntimeError):
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
