"""Visit schedule, visit dates, missed visits and protocol deviations."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    DeviationCategory,
    Participant,
    ProtocolDeviation,
    Visit,
    VisitStatus,
)
from hepatrial.trials.services._common import (
    StoreError,
    _apply_changes,
    _choice,
    _date,
    _participant,
    _user,
    _visit,
)
from hepatrial.trials.services.protocol import active_protocol


def schedule_visits(*, participant: Participant | str, user: Any = None) -> list[Visit]:
    """Create the participant's protocol visits (scheduled date = day 0 + target day).

    Visits that already exist are left alone. Needs an enrolment date."""
    p = _participant(participant)
    if p.enrolment_date is None:
        raise StoreError(f"participant {p}: not enrolled (no day 0), cannot schedule visits")
    proto = active_protocol()
    user = _user(user)
    existing = set(p.visits.values_list("code", flat=True))
    out = []
    with transaction.atomic():
        for v in proto.visits:
            if v.code in existing:
                continue
            visit = Visit(
                participant=p,
                code=v.code,
                label=v.label,
                nominal_day=v.target_day,
                window_lower=v.window_lower,
                window_upper=v.window_upper,
                scheduled_date=p.enrolment_date + _dt.timedelta(days=v.target_day),
            )
            visit.save(user=user)
            out.append(visit)
    return out


def _classify(visit: Visit, actual: _dt.date, day0: _dt.date) -> tuple[str, int]:
    day = (actual - day0).days
    if day < visit.nominal_day + visit.window_lower:
        return VisitStatus.EARLY, day
    if day > visit.nominal_day + visit.window_upper:
        return VisitStatus.LATE, day
    return VisitStatus.IN_WINDOW, day


def record_visit(
    *,
    participant: Participant | str,
    visit_code: str,
    actual_date: Any,
    reason: str | None = None,
    user: Any = None,
) -> Visit:
    """Record that a visit took place on ``actual_date``; classify it against its window.

    Status becomes ``in_window``, ``early`` or ``late`` (window bounds inclusive, day counted
    from day 0). An early or late visit creates a ``visit_window`` :class:`ProtocolDeviation`
    in the same transaction. Recording the first actual date of a scheduled visit is data
    entry (reason optional); changing an already recorded date needs ``reason``.
    """
    p = _participant(participant)
    v = _visit(p, visit_code)
    user = _user(user)
    what = f"participant {p} visit {v.code}"
    actual = _date(actual_date, f"{what} actual_date")
    if p.enrolment_date is None:
        raise StoreError(f"participant {p}: not enrolled (no day 0)")
    status, day = _classify(v, actual, p.enrolment_date)
    if v.actual_date is not None or v.status in (VisitStatus.MISSED, VisitStatus.NOT_DONE):
        if v.actual_date == actual:
            return v
        why = require_reason(reason, f"changing the date of {what} (recorded {v.actual_date})")
    else:
        why = reason.strip() if reason and reason.strip() else "visit recorded"
    with transaction.atomic():
        v.actual_date = actual
        v.status = status
        v.save(user=user, reason=why)
        if status != VisitStatus.IN_WINDOW:
            lo, hi = v.nominal_day + v.window_lower, v.nominal_day + v.window_upper
            ProtocolDeviation(
                participant=p,
                visit=v,
                category=DeviationCategory.VISIT_WINDOW,
                description=(
                    f"visit {v.code} on day {day} ({actual}) is {status}: "
                    f"window is day {lo} to {hi} (target {v.nominal_day})"
                ),
                date=actual,
                detected_by="system",
            ).save(user=user)
    return v


def mark_visit_not_done(
    *,
    participant: Participant | str,
    visit_code: str,
    status: str = VisitStatus.MISSED,
    reason: str,
    user: Any = None,
) -> Visit:
    """Mark a visit ``missed`` (creates a ``missed_visit`` deviation) or ``not_done``."""
    p = _participant(participant)
    v = _visit(p, visit_code)
    what = f"participant {p} visit {v.code}"
    if status not in (VisitStatus.MISSED, VisitStatus.NOT_DONE):
        raise StoreError(f"{what}: status must be missed or not_done, got {status!r}")
    why = require_reason(reason, f"marking {what} {status}")
    user = _user(user)
    with transaction.atomic():
        v.status = status
        v.actual_date = None
        v.save(user=user, reason=why)
        if status == VisitStatus.MISSED:
            ProtocolDeviation(
                participant=p,
                visit=v,
                category=DeviationCategory.MISSED_VISIT,
                description=f"visit {v.code} missed: {why}",
                date=v.scheduled_date or timezone.now().date(),
                detected_by="system",
            ).save(user=user)
    return v


def update_visit(visit: Visit, *, reason: str, user: Any = None, **changes: Any) -> Visit:
    """Correct a visit's ``label`` or ``scheduled_date``.

    Use :func:`record_visit` for the date a visit was done."""
    reason = require_reason(reason, f"changing visit {visit}")
    if "scheduled_date" in changes:
        changes["scheduled_date"] = _date(
            changes["scheduled_date"], f"visit {visit} scheduled_date"
        )
    if _apply_changes(visit, changes, {"label", "scheduled_date"}, f"visit {visit}"):
        visit.save(user=_user(user), reason=reason)
    return visit


def record_deviation(
    *,
    participant: Participant | str,
    category: str,
    description: str,
    date: Any,
    visit_code: str | None = None,
    major: bool = False,
    user: Any = None,
) -> ProtocolDeviation:
    """Record a protocol deviation found by a person (``detected_by`` = their username)."""
    p = _participant(participant)
    u = _user(user)
    d = ProtocolDeviation(
        participant=p,
        visit=_visit(p, visit_code) if visit_code else None,
        category=_choice(category, DeviationCategory, f"participant {p} deviation category"),
        description=str(description),
        date=_date(date, f"participant {p} deviation date"),
        major=bool(major),
        detected_by=u.get_username(),
    )
    d.save(user=u)
    return d
