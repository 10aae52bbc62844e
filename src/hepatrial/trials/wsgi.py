"""WSGI application of the trial store (the eCRF, the API and the admin).

``hepatrial serve`` runs it under waitress; any WSGI server can run it too::

    HEPATRIAL_DATABASE_URL=postgresql://… HEPATRIAL_SECRET_KEY=… \\
        waitress-serve --listen=0.0.0.0:8000 hepatrial.trials.wsgi:application

Settings come from the ``HEPATRIAL_*`` environment variables (:mod:`hepatrial.trials.conf`).
"""

from __future__ import annotations

from typing import Any


def get_application(db: str | None = None) -> Any:
    """Configure the store for ``db`` (or the environment) and return the WSGI callable."""
    from hepatrial.trials import setup

    setup(db)
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def __getattr__(name: str) -> Any:  # lazily, so that importing this module configures nothing
    if name == "application":
        return get_application()
    raise AttributeError(name)
