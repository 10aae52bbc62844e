"""Sign-in attempts and lockouts in the account audit trail (LoginEvent rows, ledgered).

Django's ``user_logged_in`` / ``user_login_failed`` and django-axes' ``user_locked_out`` are the
only signals hepatrial listens to: they are where Django and axes report these events.
:func:`connect` is called once from ``TrialsConfig.ready()``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed

from hepatrial.trials.services.accounts import record_login_event


def _on_logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    record_login_event(
        "success", user.get_username() if user is not None else "", request=request, account=user
    )


def _on_login_failed(
    sender: Any, credentials: dict[str, Any] | None = None, request: Any = None, **kwargs: Any
) -> None:
    User = get_user_model()
    name = (credentials or {}).get(User.USERNAME_FIELD, (credentials or {}).get("username"))
    locked = bool(getattr(request, "axes_locked_out", False))
    record_login_event(
        "failure",
        name,
        request=request,
        detail="refused: the account is locked out" if locked else "",
    )


def _on_locked_out(
    sender: Any, request: Any = None, username: Any = None, ip_address: Any = None, **kwargs: Any
) -> None:
    record_login_event(
        "lockout",
        username,
        request=request,
        source=ip_address,
        detail="locked out after repeated failed sign-ins",
    )


def connect() -> None:
    """Connect the handlers (idempotent: dispatch_uid).

    Receivers run in the order they were connected, and axes connects its own failure handler
    when ``axes.signals`` is first imported (by the admin's autodiscovery, before this runs).
    That handler counts the failure and may lock the account out, so it must run after ours:
    the failure that locks an account is recorded (as a wrong password) before the lockout it
    causes. So axes' handlers are reconnected after ours."""
    from axes import signals as axes_signals

    user_logged_in.connect(_on_logged_in, dispatch_uid="hepatrial-audit-login")
    user_login_failed.connect(_on_login_failed, dispatch_uid="hepatrial-audit-login-failed")
    for signal, handler in ((user_login_failed, axes_signals.handle_user_login_failed),
                            (user_logged_in, axes_signals.handle_user_logged_in)):
        if signal.disconnect(handler):
            signal.connect(handler)
    axes_signals.user_locked_out.connect(_on_locked_out, dispatch_uid="hepatrial-audit-lockout")
