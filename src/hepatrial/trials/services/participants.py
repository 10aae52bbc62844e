"""Screening, consent, eligibility, enrolment and participant status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    Arm,
    Consent,
    EligibilityAssessment,
    Etiology,
    Participant,
    ParticipantStatus,
    RandomisationEntry,
    Sex,
    Site,
)
from hepatrial.trials.services._common import (
    StoreError,
    _apply_changes,
    _choice,
    _date,
    _jsonable,
    _participant,
    _site,
    _user,
)
from hepatrial.trials.services.protocol import active_protocol
from hepatrial.trials.services.visits import schedule_visits


def screen_participant(
    *,
    study_id: str,
    site: Site | str,
    sex: str,
    year_of_birth: int,
    etiology: str,
    screening_date: Any,
    screening_data: Mapping[str, Any] | None = None,
    user: Any = None,
) -> Participant:
    """Register a screened participant under a pseudonymous ``study_id`` (status ``screened``)."""
    study_id = str(study_id).strip()
    what = f"participant {study_id!r}"
    if not study_id:
        raise StoreError("participant: study_id is empty")
    if Participant.objects.filter(study_id=study_id).exists():
        raise StoreError(f"{what} already exists")
    sdate = _date(screening_date, f"{what} screening_date")
    try:
        yob = int(year_of_birth)
    except (TypeError, ValueError):
        raise StoreError(f"{what} year_of_birth: {year_of_birth!r} is not a year") from None
    if not 1900 <= yob <= sdate.year:
        raise StoreError(f"{what} year_of_birth: {yob} is not between 1900 and {sdate.year}")
    p = Participant(
        study_id=study_id,
        site=_site(site),
        sex=_choice(sex, Sex, f"{what} sex"),
        year_of_birth=yob,
        etiology=_choice(etiology, Etiology, f"{what} etiology"),
        screening_date=sdate,
        screening_data=_jsonable(dict(screening_data or {})),
        status=ParticipantStatus.SCREENED,
        status_date=sdate,
        status_reason="screened",
    )
    p.save(user=_user(user))
    return p


def update_participant(
    participant: Participant | str, *, reason: str, user: Any = None, **changes: Any
) -> Participant:
    """Correct demographic/screening fields (sex, year_of_birth, etiology, screening_date,
    screening_data, site). Status changes go through :func:`change_status`."""
    p = _participant(participant)
    reason = require_reason(reason, f"changing participant {p}")
    if "sex" in changes:
        _choice(changes["sex"], Sex, f"participant {p} sex")
    if "etiology" in changes:
        _choice(changes["etiology"], Etiology, f"participant {p} etiology")
    if "site" in changes:
        changes["site"] = _site(changes["site"])
    if "screening_date" in changes:
        changes["screening_date"] = _date(
            changes["screening_date"], f"participant {p} screening_date"
        )
    allowed = {"sex", "year_of_birth", "etiology", "screening_date", "screening_data", "site"}
    if _apply_changes(p, changes, allowed, f"participant {p}"):
        p.save(user=_user(user), reason=reason)
    return p


def record_consent(
    *, participant: Participant | str, version: str, date: Any, user: Any = None
) -> Consent:
    """Record informed consent (document version, date signed)."""
    p = _participant(participant)
    if not str(version).strip():
        raise StoreError(f"participant {p} consent: version is empty")
    c = Consent(
        participant=p,
        version=str(version).strip(),
        date=_date(date, f"participant {p} consent date"),
    )
    c.save(user=_user(user))
    return c


def _screening_dict(p: Participant, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {"etiology": p.etiology, "sex": p.sex}
    # age in whole years at screening from the year of birth (only the year is stored)
    data["age"] = p.screening_date.year - p.year_of_birth
    data["informed_consent"] = p.consents.exists()
    data.update(p.screening_data or {})
    data.update(extra or {})
    return data


def assess_eligibility(
    *,
    participant: Participant | str,
    screening_data: Mapping[str, Any] | None = None,
    assessed_on: Any = None,
    user: Any = None,
) -> EligibilityAssessment:
    """Evaluate every protocol criterion on the participant's screening data and store it.

    Screening data = ``etiology``, ``sex``, ``age`` (screening year − year of birth) from the
    participant, overridden by the stored ``screening_data`` and then by ``screening_data``
    given here. Each criterion is stored as ``{kind, text, met, passes, value, reason}``.
    An ineligible participant (any criterion definitely failed) becomes ``screen_failed``.
    """
    p = _participant(participant)
    proto = active_protocol()
    user = _user(user)
    data = _screening_dict(p, screening_data)
    result = proto.screen(data)
    criteria = {}
    for crit, r in zip(proto.eligibility, result.results, strict=True):
        criteria[r.criterion_id] = {
            "kind": r.kind,
            "text": crit.text,
            "met": r.met,
            "passes": r.passes,
            "value": _jsonable(r.value_used),
            "reason": r.reason,
        }
    with transaction.atomic():
        a = EligibilityAssessment(
            participant=p,
            assessed_on=_date(assessed_on or p.screening_date, f"participant {p} assessed_on"),
            protocol_version=proto.version,
            eligible=result.eligible,
            criteria=criteria,
            screening_data=_jsonable(data),
        )
        a.save(user=user)
        if result.eligible is False and p.status == ParticipantStatus.SCREENED:
            failed = ", ".join(r.criterion_id for r in result.failed)
            p.status = ParticipantStatus.SCREEN_FAILED
            p.status_date = a.assessed_on
            p.status_reason = f"ineligible: {failed}"
            p.save(user=user, reason=f"eligibility assessment: failed {failed}")
    return a


_TRANSITIONS = {
    ParticipantStatus.SCREENED: {
        ParticipantStatus.SCREEN_FAILED,
        ParticipantStatus.WITHDRAWN,
        ParticipantStatus.DIED,
    },
    ParticipantStatus.SCREEN_FAILED: {ParticipantStatus.SCREENED},
    ParticipantStatus.ENROLLED: {
        ParticipantStatus.WITHDRAWN,
        ParticipantStatus.DIED,
        ParticipantStatus.TRANSPLANTED,
        ParticipantStatus.COMPLETED,
    },
    ParticipantStatus.WITHDRAWN: {ParticipantStatus.DIED, ParticipantStatus.ENROLLED},
    ParticipantStatus.TRANSPLANTED: {ParticipantStatus.DIED, ParticipantStatus.COMPLETED},
    ParticipantStatus.COMPLETED: {ParticipantStatus.DIED},
    ParticipantStatus.DIED: set(),
}


def enrol_participant(
    *, participant: Participant | str, enrolment_date: Any, user: Any = None
) -> Participant:
    """Enrol an eligible, consented participant: day 0, arm, visit schedule.

    Requires a consent dated on/before ``enrolment_date`` and a latest eligibility assessment
    that is eligible. For a randomised protocol the next unused allocation of the
    participant's site is revealed and used (once); otherwise the single arm is assigned.
    """
    p = _participant(participant)
    user = _user(user)
    what = f"participant {p}"
    d0 = _date(enrolment_date, f"{what} enrolment_date")
    proto = active_protocol()
    if p.status != ParticipantStatus.SCREENED:
        raise StoreError(
            f"{what}: status is {p.status!r}; only screened participants can be enrolled"
        )
    consent = p.consents.order_by("-date", "-pk").first()
    if consent is None or consent.date > d0:
        raise StoreError(f"{what}: no informed consent on or before {d0}")
    elig = p.eligibility_assessments.order_by("-assessed_on", "-pk").first()
    if elig is None or elig.eligible is not True:
        state = "none" if elig is None else {False: "ineligible", None: "undecided"}[elig.eligible]
        raise StoreError(
            f"{what}: the latest eligibility assessment must show the participant eligible "
            f"(it is {state})"
        )
    with transaction.atomic():
        if proto.design == "randomised":
            entry = (
                RandomisationEntry.objects.select_for_update()
                .filter(site=p.site, participant__isnull=True)
                .order_by("sequence")
                .first()
            )
            if entry is None:
                raise StoreError(f"{what}: the allocation list for site {p.site} is exhausted")
            entry.participant = p
            entry.allocated_at = timezone.now()
            entry.save(user=user, reason=f"allocation revealed at enrolment of {p}")
            arm = entry.arm
        else:
            arm = Arm.objects.order_by("code").first()
            if arm is None:
                raise StoreError("no arm defined: run `hepatrial init` first")
        p.arm = arm
        p.enrolment_date = d0
        p.status = ParticipantStatus.ENROLLED
        p.status_date = d0
        p.status_reason = "enrolled"
        p.save(user=user, reason="enrolment")
        schedule_visits(participant=p, user=user)
    return p


def change_status(
    *,
    participant: Participant | str,
    status: str,
    date: Any,
    reason: str,
    user: Any = None,
) -> Participant:
    """Change a participant's status (withdrawn, died, transplanted, completed, ...).

    Allowed transitions are checked; ``reason`` is stored both as ``status_reason`` and as the
    history change reason.
    """
    p = _participant(participant)
    what = f"participant {p}"
    status = _choice(status, ParticipantStatus, f"{what} status")
    reason = require_reason(reason, f"changing the status of {p}")
    allowed = _TRANSITIONS.get(ParticipantStatus(p.status), set())
    if status not in allowed:
        raise StoreError(
            f"{what}: status cannot go from {p.status!r} to {status!r} "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'})"
        )
    d = _date(date, f"{what} status date")
    if p.enrolment_date and d < p.enrolment_date and status != ParticipantStatus.SCREENED:
        raise StoreError(f"{what}: status date {d} is before enrolment {p.enrolment_date}")
    p.status = status
    p.status_date = d
    p.status_reason = reason
    p.save(user=_user(user), reason=reason)
    return p
