"""Adverse events.

Every write of an adverse event goes through here and is judged by one validator
(:mod:`hepatrial.trials.validators.adverse_event`) on creation and on every change;
:func:`check_adverse_event` runs it without writing (the admin form shows each problem on
its field).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Min

from hepatrial.trials.models import (
    AdverseEvent,
    AEOutcome,
    Consent,
    Participant,
)
from hepatrial.trials.services._common import (
    StoreError,
    _participant,
    _user,
)
from hepatrial.trials.services.measurements import _reason_for
from hepatrial.trials.validators.adverse_event import AdverseEventFacts, validate_adverse_event

_FIELDS = (
    "term", "grade", "serious", "relatedness", "onset_date", "resolution_date", "outcome",
)  # fmt: skip


def _facts(p: Participant) -> AdverseEventFacts:
    consent = Consent.objects.filter(participant=p).aggregate(first=Min("date"))["first"]
    return AdverseEventFacts(
        participant=p.study_id, screening_date=p.screening_date, consent_date=consent
    )


def check_adverse_event(
    *,
    participant: Participant | str,
    term: Any,
    grade: Any,
    serious: Any,
    relatedness: Any,
    onset_date: Any,
    resolution_date: Any = None,
    outcome: Any = AEOutcome.UNKNOWN,
) -> tuple[Participant, dict[str, Any]]:
    """Judge an adverse event without writing: ``(participant, typed values)`` or
    :class:`~hepatrial.trials.validators.RuleViolation` with every problem."""
    p = _participant(participant)
    values = {
        "term": term, "grade": grade, "serious": serious, "relatedness": relatedness,
        "onset_date": onset_date, "resolution_date": resolution_date, "outcome": outcome,
    }  # fmt: skip
    return p, validate_adverse_event(values, _facts(p))


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
    """Record an adverse event (CTCAE term, grade 1-5, seriousness, relatedness, outcome).

    Refused (every problem at once) by :func:`validate_adverse_event`: e.g. grade 5 without
    outcome ``fatal`` or not serious, a resolution before the onset, an onset before the
    participant's screening or consent.
    """
    with transaction.atomic():
        p, ok = check_adverse_event(
            participant=participant, term=term, grade=grade, serious=serious,
            relatedness=relatedness, onset_date=onset_date, resolution_date=resolution_date,
            outcome=outcome,
        )  # fmt: skip
        ae = AdverseEvent(participant=p, **ok)
        ae.save(user=_user(user))
    return ae


def update_adverse_event(
    event: AdverseEvent, *, reason: str | None = None, user: Any = None, **changes: Any
) -> AdverseEvent:
    """Follow up or correct an adverse event (term, grade, serious, relatedness, dates,
    outcome): the new state is judged by the same rules as a new event. A reason is needed
    unless only empty values are filled (e.g. the first resolution date: data entry)."""
    bad = sorted(set(changes) - set(_FIELDS))
    if bad:
        raise StoreError(
            f"adverse event {event}: field(s) {', '.join(bad)} cannot be changed here "
            f"(allowed: {', '.join(_FIELDS)})"
        )
    with transaction.atomic():
        ae = AdverseEvent.objects.select_related("participant").get(pk=event.pk)
        state = {k: getattr(ae, k) for k in _FIELDS}
        state.update(changes)
        _p, ok = check_adverse_event(participant=ae.participant, **state)
        old = {k: getattr(ae, k) for k in _FIELDS}
        why = _reason_for(old, ok, reason, f"adverse event {ae}")
        if why is not None:
            for k in _FIELDS:
                setattr(ae, k, ok[k])
            ae.save(user=_user(user), reason=why)
    event.refresh_from_db()
    return event
