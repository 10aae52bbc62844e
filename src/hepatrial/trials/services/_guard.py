"""The acting user of a write, checked against the role matrix (services/permissions.py)."""

from __future__ import annotations

from typing import Any

from hepatrial.trials.services._common import _user
from hepatrial.trials.services.permissions import require_permission


def _acting(user: Any, participant: Any, action: str = "enter_data") -> Any:
    """The acting user (``None`` → the system account) after checking that their role and
    sites allow ``action`` on ``participant``; raises ``PermissionDenied`` otherwise."""
    u = _user(user)
    require_permission(u, action, participant)
    return u
