"""Adverse events."""

from __future__ import annotations

from typing import Any

from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    AdverseEvent,
    AEOutcome,
    Participant,
    Relatedness,
)
from hepatrial.trials.services._common import (
    StoreError,
    _apply_changes,
    _choice,
    _date,
    _opt_date,
    _participant,
    _user,
)


def record_adverse_event(
    *,
    participant: Participant | str,
    term: str,
    grade: int,
    serious: bool,
    relatedness: str,
    onset_date: Any,
    resolution_date: Any = None,
    outcome: str = AEOutcome.UNKNOWN,
    user: Any = None,
) -> AdverseEvent:
    """Record an adverse event (CTCAE term, grade 1-5, seriousness, relatedness, outcome)."""
    p = _participant(participant)
    what = f"participant {p} adverse event {term!r}"
    if not str(term).strip():
        raise StoreError(f"participant {p} adverse event: term is empty")
    try:
        g = int(grade)
    except (TypeError, ValueError):
        raise StoreError(f"{what} grade: {grade!r} is not 1-5") from None
    if not 1 <= g <= 5:
        raise StoreError(f"{what} grade: {grade!r} is not 1-5")
    onset = _date(onset_date, f"{what} onset_date")
    resolved = _opt_date(resolution_date, f"{what} resolution_date")
    if resolved is not None and resolved < onset:
        raise StoreError(f"{what}: resolution_date {resolved} is before onset_date {onset}")
    out = _choice(outcome, AEOutcome, f"{what} outcome")
    if g == 5 and out != AEOutcome.FATAL:
        raise StoreError(f"{what}: grade 5 (death) requires outcome 'fatal', got {out!r}")
    ae = AdverseEvent(
        participant=p,
        term=str(term).strip(),
        grade=g,
        serious=bool(serious) or g == 5,
        relatedness=_choice(relatedness, Relatedness, f"{what} relatedness"),
        onset_date=onset,
        resolution_date=resolved,
        outcome=out,
    )
    ae.save(user=_user(user))
    return ae


def update_adverse_event(
    event: AdverseEvent, *, reason: str, user: Any = None, **changes: Any
) -> AdverseEvent:
    """Follow up or correct an adverse event (grade, serious, relatedness, dates, outcome)."""
    reason = require_reason(reason, f"changing adverse event {event}")
    what = f"adverse event {event}"
    if "relatedness" in changes:
        _choice(changes["relatedness"], Relatedness, f"{what} relatedness")
    if "outcome" in changes:
        _choice(changes["outcome"], AEOutcome, f"{what} outcome")
    for key in ("onset_date", "resolution_date"):
        if key in changes:
            changes[key] = _opt_date(changes[key], f"{what} {key}")
    if "grade" in changes and not 1 <= int(changes["grade"]) <= 5:
        raise StoreError(f"{what} grade: {changes['grade']!r} is not 1-5")
    allowed = {
        "term",
        "grade",
        "serious",
        "relatedness",
        "onset_date",
        "resolution_date",
        "outcome",
    }
    if _apply_changes(event, changes, allowed, what):
        if event.resolution_date and event.resolution_date < event.onset_date:
            raise StoreError(f"{what}: resolution_date is before onset_date")
        event.save(user=_user(user), reason=reason)
    return event
