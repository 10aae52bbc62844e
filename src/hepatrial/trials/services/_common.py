"""Shared helpers of the services: errors, the system account, argument coercion."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from hepatrial.errors import StoreError
from hepatrial.trials.audit.actors import system_user
from hepatrial.trials.models import (
    Participant,
    Site,
    Visit,
)


def _user(user: Any) -> Any:
    return user if user is not None else system_user()


def _date(value: Any, what: str) -> _dt.date:
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise StoreError(f"{what}: {value!r} is not a date (YYYY-MM-DD)")


def _opt_date(value: Any, what: str) -> _dt.date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _date(value, what)


def _choice(value: Any, choices: type, what: str) -> str:
    allowed = [c for c in choices.values]  # type: ignore[attr-defined]
    if value not in allowed:
        raise StoreError(f"{what}: {value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _participant(p: Participant | str) -> Participant:
    if isinstance(p, Participant):
        return p
    obj = Participant.objects.select_related("site", "arm").filter(study_id=str(p)).first()
    if obj is None:
        raise StoreError(f"participant {p!r} does not exist")
    return obj


def _site(s: Site | str) -> Site:
    if isinstance(s, Site):
        return s
    obj = Site.objects.filter(code=str(s)).first()
    if obj is None:
        known = ", ".join(Site.objects.values_list("code", flat=True)) or "none"
        raise StoreError(f"site {s!r} does not exist (known sites: {known})")
    return obj


def _visit(participant: Participant, v: Visit | str) -> Visit:
    if isinstance(v, Visit):
        if v.participant_id != participant.pk:
            raise StoreError(f"visit {v} does not belong to participant {participant}")
        return v
    obj = Visit.objects.filter(participant=participant, code=str(v)).first()
    if obj is None:
        raise StoreError(
            f"participant {participant}: no visit {v!r} "
            "(visits are scheduled at enrolment; known: "
            f"{', '.join(participant.visits.values_list('code', flat=True)) or 'none'})"
        )
    return obj


def _apply_changes(obj: Any, changes: Mapping[str, Any], allowed: set[str], what: str) -> bool:
    changed = False
    for key, value in changes.items():
        if key not in allowed:
            raise StoreError(
                f"{what}: field {key!r} cannot be changed here (allowed: {sorted(allowed)})"
            )
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed = True
    return changed


def _full_clean(obj: Any, what: str) -> None:
    from django.core.exceptions import ValidationError

    try:
        obj.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        parts = [f"{k}: {'; '.join(v)}" for k, v in exc.message_dict.items()]
        raise StoreError(f"{what}: " + "; ".join(parts)) from None


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)
