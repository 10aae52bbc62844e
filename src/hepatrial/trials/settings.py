"""Settings module for tools that need ``DJANGO_SETTINGS_MODULE`` (pytest-django, manage.py).

Everything comes from :func:`hepatrial.trials.conf.build_settings`; the database is taken from
``HEPATRIAL_DATABASE_URL`` or ``HEPATRIAL_DB`` (default ``./hepatrial.sqlite3``).
"""

from hepatrial.trials.conf import build_settings

globals().update(build_settings())
