"""The built-in ``system`` account that CLI and import writes are attributed to."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

__all__ = ["SYSTEM_USERNAME", "system_user"]

SYSTEM_USERNAME = "system"


def system_user() -> Any:
    """The ``system`` account used as ``history_user`` for CLI/import writes (created once).

    It cannot log in (unusable password, inactive)."""
    User = get_user_model()
    user = User.objects.filter(username=SYSTEM_USERNAME).first()
    if user is None:
        user = User(username=SYSTEM_USERNAME, is_active=False)
        user.set_unusable_password()
        user._history_user = None
        user._change_reason = "system account created"
        user.save()
    return user
