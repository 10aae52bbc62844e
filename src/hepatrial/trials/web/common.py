"""Helpers the eCRF views share: store errors shown on their fields, dates, today, the
optional modules of the other eCRF pages (queries, SDV)."""

from __future__ import annotations

import datetime as _dt
import importlib
from typing import Any

from hepatrial import errors
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.validators._common import today as _today

#: the participant statuses a user may set from the casebook (with a date and a reason)
STATUS_ACTIONS: tuple[tuple[str, str], ...] = (
    ("withdrawn", "Withdraw"),
    ("died", "Death"),
    ("transplanted", "Liver transplant"),
    ("completed", "Completed follow-up"),
)


def today() -> _dt.date:
    """Today's date (UTC): the date every "not in the future" rule of the store uses."""
    return _today()


class FieldErrors(dict):
    """``field -> [message, ...]`` plus messages that belong to no field (``general``)."""

    def __init__(self) -> None:
        super().__init__()
        self.general: list[str] = []

    def add(self, field: str | None, message: str) -> None:
        """Add a message to ``field`` (None or "": a message of the whole form)."""
        if field:
            self.setdefault(field, []).append(message)
        else:
            self.general.append(message)

    def __bool__(self) -> bool:
        return bool(self.general) or any(self.values())

    def all_messages(self) -> list[str]:
        """Every message, general first, then by field."""
        out = list(self.general)
        for field, msgs in self.items():
            out.extend(f"{field}: {m}" for m in msgs)
        return out


#: the start of the message of a write refused by a lock
LOCKED = "Locked, nothing was saved:"


def store_errors(exc: Exception, *, prefix: str = "", fields: dict[str, str] | None = None
                 ) -> FieldErrors:
    """The problems of a refused write as :class:`FieldErrors`.

    A :class:`RuleViolation` gives each problem on its field (``prefix`` + field, or the
    form field ``fields[field]``); a lock gives :data:`LOCKED` and the lock (the visit, the
    casebook or the trial, as the store names it); any other
    store error becomes a general message."""
    out = FieldErrors()
    if isinstance(exc, RuleViolation):
        for p in exc.problems:
            name = (fields or {}).get(p.field, f"{prefix}{p.field}" if p.field else "")
            out.add(name, p.reason)
    elif isinstance(exc, errors.RecordLocked):  # the message names what is locked
        out.add(None, f"{LOCKED} {exc}")
    elif isinstance(exc, errors.ChangeReasonRequired):
        out.add("reason", str(exc))
    else:
        out.add(None, str(exc))
    return out


def parse_date(text: str | None) -> _dt.date | None:
    """An ISO date from a form (None when empty or not a date; the store judges the value)."""
    try:
        return _dt.date.fromisoformat((text or "").strip())
    except ValueError:
        return None


def optional_module(name: str) -> Any:
    """``hepatrial.trials.services.<name>`` when another engineer has added it (queries,
    sdv), else None; the pages call it when present."""
    try:
        return importlib.import_module(f"hepatrial.trials.services.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"hepatrial.trials.services.{name}":
            raise
        return None


def hx(request: Any) -> bool:
    """True for a request made by htmx (a page fragment is answered)."""
    return bool(getattr(request, "htmx", False))
