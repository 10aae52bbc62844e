"""Screening, consent, eligibility, enrolment and participant status.

Every write is judged by the record's validator (:mod:`hepatrial.trials.validators`:
``participant``, ``consent``, ``eligibility``) on create and on change; the ``check_*``
functions run the same validation without writing (the admin forms call them to show every
problem as a field error before anything is saved).
"""

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
    Participant,
    ParticipantStatus,
    RandomisationEntry,
    Site,
)
from hepatrial.trials.services._common import (
    StoreError,
    _choice,
    _date,
    _jsonable,
    _participant,
    _site,
)
from hepatrial.trials.services._guard import _acting
from hepatrial.trials.services.protocol import active_protocol
from hepatrial.trials.services.visits import schedule_visits
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.validators import consent as consent_rules
from hepatrial.trials.validators import eligibility as eligibility_rules
from hepatrial.trials.validators import participant as participant_rules
from hepatrial.trials.validators._common import Problem, changes_needing_reason, date_problems

#: fields of a participant that :func:`update_participant` may correct
PARTICIPANT_FIELDS = ("sex", "year_of_birth", "etiology", "screening_date", "screening_data",
                      "site")


def _record(study_id: Any) -> str:
    return f"participant {str(study_id).strip()}"


def _reason(old: Mapping[str, Any], new: Mapping[str, Any], reason: str | None, what: str
            ) -> str | None:
    """The reason to store with a change: required when a stored value changes (the first
    entry of a value is data entry); None when nothing changes."""
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    if not changed:
        return None
    needing = changes_needing_reason(old, changed)
    if needing:
        return require_reason(reason, f"{what} ({', '.join(needing)} already recorded)")
    if reason is not None and str(reason).strip():
        return str(reason).strip()
    return f"data entry: {', '.join(sorted(changed))} entered"


# ---------------------------------------------------------------------- participant
def check_participant(
    *,
    study_id: str,
    site: Site | str,
    sex: str,
    year_of_birth: Any,
    etiology: str,
    screening_date: Any,
    screening_data: Mapping[str, Any] | None = None,
    participant: Participant | None = None,
    check_screening: bool = True,
) -> dict[str, Any]:
    """Validate a participant to be screened (or, with ``participant``, the whole record after
    a change) without writing. Returns the typed values; raises
    :class:`~hepatrial.trials.validators.RuleViolation` naming every problem."""
    record = _record(participant.study_id if participant is not None else study_id)
    site_code = site.code if isinstance(site, Site) else site
    problems: list[Problem] = []
    if participant is None and Participant.objects.filter(
            study_id=str(study_id).strip()).exists():
        problems.append(Problem(record, "study_id", "already exists"))
    try:
        values = participant_rules.validate_participant(
            {"study_id": study_id, "site": site_code, "sex": sex,
             "year_of_birth": year_of_birth, "etiology": etiology,
             "screening_date": screening_date, "screening_data": screening_data},
            record=record, protocol=active_protocol(),
            known_sites=set(Site.objects.values_list("code", flat=True)),
            enrolment_date=participant.enrolment_date if participant is not None else None,
            check_screening=check_screening,
        )
    except RuleViolation as exc:
        problems.extend(exc.problems)
    if problems:
        raise RuleViolation(problems)
    return values


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
    """Register a screened participant under a pseudonymous ``study_id`` (status ``screened``).

    ``screening_data`` is typed by the protocol's eligibility inputs (labs with their unit,
    booleans true/false, ...; see :mod:`hepatrial.trials.validators.eligibility`) and stored as
    entered."""
    v = check_participant(study_id=study_id, site=site, sex=sex, year_of_birth=year_of_birth,
                          etiology=etiology, screening_date=screening_date,
                          screening_data=screening_data)
    p = Participant(
        study_id=v["study_id"],
        site=_site(v["site"]),
        sex=v["sex"],
        year_of_birth=v["year_of_birth"],
        etiology=v["etiology"],
        screening_date=v["screening_date"],
        screening_data=_jsonable(v["screening_data"]),
        status=ParticipantStatus.SCREENED,
        status_date=v["screening_date"],
        status_reason="screened",
    )
    p.save(user=_acting(user, p))
    return p


def _participant_values(p: Participant) -> dict[str, Any]:
    return {
        "sex": p.sex, "year_of_birth": p.year_of_birth, "etiology": p.etiology,
        "screening_date": p.screening_date, "screening_data": dict(p.screening_data or {}),
        "site": p.site.code,
    }


def check_participant_change(p: Participant, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a correction of ``p`` (the whole record after the change) without writing;
    returns the new typed values of every field in :data:`PARTICIPANT_FIELDS`."""
    bad = sorted(set(changes) - set(PARTICIPANT_FIELDS))
    if bad:
        raise RuleViolation([Problem(_record(p.study_id), k, "cannot be changed here (allowed: "
                                     f"{', '.join(PARTICIPANT_FIELDS)}; status: change_status)")
                             for k in bad])
    new = {**_participant_values(p), **changes}
    if isinstance(new["site"], Site):
        new["site"] = new["site"].code
    # screening data are judged again when they, or what they are checked against, change
    screening = bool({"screening_data", "year_of_birth", "screening_date"} & set(changes))
    v = check_participant(study_id=p.study_id, participant=p, check_screening=screening, **new)
    return {k: v[k] for k in PARTICIPANT_FIELDS}


def update_participant(
    participant: Participant | str, *, reason: str | None = None, user: Any = None,
    **changes: Any,
) -> Participant:
    """Correct demographic/screening fields (sex, year_of_birth, etiology, screening_date,
    screening_data, site). Status changes go through :func:`change_status`.

    The whole record is validated again. A reason is needed for every change of a stored
    value; filling a value that was empty (e.g. a screening input not given before) is data
    entry and needs none. ``screening_data`` replaces the stored screening data."""
    p = _participant(participant)
    new = check_participant_change(p, changes)
    old = _participant_values(p)
    new["screening_data"] = _jsonable(new["screening_data"])
    why = _reason(old, new, reason, f"changing participant {p}")
    if why is None:
        return p
    p.site = _site(new.pop("site"))
    for k, v in new.items():
        setattr(p, k, v)
    p.save(user=_acting(user, p), reason=why)
    return p


# ---------------------------------------------------------------------- consent
def check_consent(*, participant: Participant | str, version: Any, date: Any) -> tuple[str, Any]:
    """Validate a consent (new, or the record after a change) without writing; returns
    ``(version, date)``."""
    p = _participant(participant)
    return consent_rules.validate_consent(
        record=f"participant {p} consent", version=version, date=date,
        year_of_birth=p.year_of_birth,
    )


def record_consent(
    *, participant: Participant | str, version: str, date: Any, user: Any = None
) -> Consent:
    """Record informed consent (document version, date signed)."""
    p = _participant(participant)
    version, d = check_consent(participant=p, version=version, date=date)
    c = Consent(participant=p, version=version, date=d)
    c.save(user=_acting(user, p))
    return c


def update_consent(
    consent: Consent, *, reason: str | None = None, user: Any = None, **changes: Any
) -> Consent:
    """Correct a consent's ``version`` or ``date`` (the participant cannot change: record the
    consent of the right participant and delete this one with a reason)."""
    bad = sorted(set(changes) - {"version", "date"})
    if bad:
        raise RuleViolation([Problem(f"participant {consent.participant} consent", k,
                                     "cannot be changed here (allowed: version, date)")
                             for k in bad])
    version, d = check_consent(
        participant=consent.participant, version=changes.get("version", consent.version),
        date=changes.get("date", consent.date),
    )
    why = _reason({"version": consent.version, "date": consent.date},
                  {"version": version, "date": d}, reason, f"changing {consent}")
    if why is None:
        return consent
    consent.version, consent.date = version, d
    consent.save(user=_acting(user, consent.participant), reason=why)
    return consent


# ---------------------------------------------------------------------- eligibility
def _evaluation(p: Participant, proto: Any) -> dict[str, Any]:
    """The data the protocol evaluates for ``p`` now (stored screening data, typed, plus the
    inputs derived from the participant and consent records)."""
    s = eligibility_rules.parse_screening(
        proto, p.screening_data, record=f"participant {p}", year_of_birth=p.year_of_birth,
        screening_date=p.screening_date,
    )
    return eligibility_rules.evaluation_data(
        proto, s.typed, sex=p.sex, etiology=p.etiology, year_of_birth=p.year_of_birth,
        screening_date=p.screening_date, consented=p.consents.exists(),
    )


def check_eligibility(
    *,
    participant: Participant | str,
    screening_data: Mapping[str, Any] | None = None,
    assessed_on: Any = None,
) -> Any:
    """Validate an assessment to be made without writing: the assessment date and the
    screening data (stored, plus ``screening_data`` entered now). Returns the date."""
    p = _participant(participant)
    problems: list[Problem] = []
    d = None
    try:
        d = eligibility_rules.validate_assessed_on(
            record=f"participant {p} eligibility", assessed_on=assessed_on or p.screening_date,
            screening_date=p.screening_date)
    except RuleViolation as exc:
        problems.extend(exc.problems)
    try:
        if screening_data:
            check_participant_change(
                p, {"screening_data": {**(p.screening_data or {}), **screening_data}})
        else:
            _evaluation(p, active_protocol())
    except RuleViolation as exc:
        problems.extend(exc.problems)
    if problems:
        raise RuleViolation(problems)
    return d


def assess_eligibility(
    *,
    participant: Participant | str,
    screening_data: Mapping[str, Any] | None = None,
    assessed_on: Any = None,
    reason: str | None = None,
    user: Any = None,
) -> EligibilityAssessment:
    """Evaluate every protocol criterion on the participant's screening data and store it.

    The only way an assessment is made. The data evaluated are the participant's stored
    screening data - after adding ``screening_data`` given here to it (data entry; a change of
    a value already stored needs ``reason``) - typed by the protocol's eligibility inputs,
    plus ``age`` (screening year − year of birth, or the exact age entered), ``sex``,
    ``etiology`` and ``informed_consent`` (a consent is recorded). Each criterion is stored as
    ``{kind, text, met, passes, value, reason}``. An ineligible participant (any criterion
    definitely failed) becomes ``screen_failed``. The assessment never changes afterwards.
    """
    p = _participant(participant)
    proto = active_protocol()
    user = _acting(user, p)
    d = check_eligibility(participant=p, screening_data=screening_data, assessed_on=assessed_on)
    with transaction.atomic():
        if screening_data:
            update_participant(p, screening_data={**(p.screening_data or {}), **screening_data},
                               reason=reason, user=user)
        data = _evaluation(p, proto)
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
        a = EligibilityAssessment(
            participant=p,
            assessed_on=d,
            protocol_version=proto.version,
            eligible=result.eligible,
            criteria=criteria,
            screening_data=_jsonable(eligibility_rules.evaluation_json(data)),
        )
        a._hepatrial_evaluated = True  # type: ignore[attr-defined]  # the model's guard
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


def check_enrolment(*, participant: Participant | str, enrolment_date: Any) -> Any:
    """Validate an enrolment without writing; returns day 0 (see :func:`enrol_participant`)."""
    p = _participant(participant)
    what = f"participant {p}"
    from hepatrial.trials.validators._common import ColumnProblems

    cp = ColumnProblems(1)
    dates = date_problems(cp, "enrolment_date", [enrolment_date], required=True)
    problems = cp.problems(what)
    d0 = None if problems else dates[0].item()
    if d0 is not None and d0 < p.screening_date:
        problems.append(Problem(what, "enrolment_date",
                                f"{d0} is before screening ({p.screening_date})"))
    if p.status != ParticipantStatus.SCREENED:
        problems.append(Problem(what, "status", f"{p.status!r}; only screened participants "
                                "can be enrolled"))
    consent = p.consents.order_by("-date", "-pk").first()
    if d0 is not None and (consent is None or consent.date > d0):
        problems.append(Problem(what, "consent", f"no informed consent on or before {d0}"))
    elig = p.eligibility_assessments.order_by("-assessed_on", "-pk").first()
    if elig is None or elig.eligible is not True:
        state = "none" if elig is None else {False: "ineligible", None: "undecided"}[elig.eligible]
        problems.append(Problem(what, "eligibility", "the latest eligibility assessment must "
                                f"show the participant eligible (it is {state})"))
    else:
        try:
            current = _evaluation(p, active_protocol())
        except RuleViolation as exc:
            problems.extend(exc.problems)
        else:
            if not eligibility_rules.assessment_is_current(elig.screening_data, current):
                problems.append(Problem(what, "eligibility", (
                    f"the latest eligibility assessment ({elig.assessed_on}) was made on other "
                    "screening data than the participant has now: assess again")))
    from hepatrial.trials.services.safety import enrolment_pause

    pause = enrolment_pause()  # a triggered stopping rule pauses enrolment (issue 12)
    if pause is not None:
        problems.append(Problem(what, "enrolment", f"enrolment is paused by stopping rule "
                                f"{pause.rule}: {pause.reason}"))
    if problems:
        raise RuleViolation(problems)
    return d0


def enrol_participant(
    *, participant: Participant | str, enrolment_date: Any, user: Any = None
) -> Participant:
    """Enrol an eligible, consented participant: day 0, arm, visit schedule.

    Requires a consent dated on/before ``enrolment_date`` and a latest eligibility assessment
    that is eligible and current (made on the screening data the participant has now). For a
    randomised protocol the next unused allocation of the participant's site is revealed and
    used (once); otherwise the single arm is assigned.
    """
    p = _participant(participant)
    user = _acting(user, p)
    what = f"participant {p}"
    d0 = check_enrolment(participant=p, enrolment_date=enrolment_date)
    proto = active_protocol()
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
    history change reason. The date is not in the future nor before enrolment.
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
    from hepatrial.trials.validators._common import ColumnProblems

    cp = ColumnProblems(1)
    date_problems(cp, "status_date", [d])
    if cp:
        raise RuleViolation(cp.problems(what))
    if p.enrolment_date and d < p.enrolment_date and status != ParticipantStatus.SCREENED:
        raise StoreError(f"{what}: status date {d} is before enrolment {p.enrolment_date}")
    p.status = status
    p.status_date = d
    p.status_reason = reason
    p.save(user=_acting(user, p), reason=reason)
    if status == ParticipantStatus.DIED:  # a death can trigger a stopping rule (issue 12)
        from hepatrial.trials.services.safety import refresh_safety_status

        refresh_safety_status(user=_acting(user, p))
    return p
