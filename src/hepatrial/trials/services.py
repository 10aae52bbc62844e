"""Write operations on the trial store (HackSoft "services"). Every write goes through here.

Conventions for every function:

* keyword-only arguments; ``user`` is the acting Django user (``None`` → the ``system`` user,
  used by the CLI and by imports unless ``--user`` is given). It becomes ``history_user``.
* a change to an existing record needs ``reason`` (non-empty; stored as
  ``history_change_reason``) — :class:`~hepatrial.trials.base.ChangeReasonRequired` otherwise.
* each call is one transaction: the record, its history rows and their audit-ledger entries
  are written together or not at all.
* bad input raises :class:`StoreError` (a ``ValueError``) with a message naming the
  participant, visit, field and value.

Participants, visits and arms may be passed as model instances or by their codes
(``study_id``, visit code, site code).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from hepatrial.trials.base import ChangeReasonRequired, require_reason
from hepatrial.trials.models import (
    Administration,
    AdverseEvent,
    AEOutcome,
    Arm,
    Ascites,
    CellProductBatch,
    ClinicalAssessment,
    Consent,
    DeviationCategory,
    Edema,
    EligibilityAssessment,
    Encephalopathy,
    Etiology,
    LabResult,
    Participant,
    ParticipantStatus,
    ProtocolDeviation,
    RandomisationEntry,
    RandomisationList,
    Relatedness,
    Route,
    Sex,
    Site,
    SiteMembership,
    TrialConfig,
    Visit,
    VisitStatus,
)

__all__ = [
    "ChangeReasonRequired",
    "StoreError",
    "active_protocol",
    "add_site_membership",
    "assess_eligibility",
    "change_status",
    "check_administration",
    "create_site",
    "create_user",
    "enrol_participant",
    "generate_randomisation",
    "install_protocol",
    "mark_visit_not_done",
    "record_administration",
    "record_adverse_event",
    "record_clinical",
    "record_consent",
    "record_deviation",
    "record_lab",
    "record_visit",
    "register_product_batch",
    "release_product_batch",
    "schedule_visits",
    "screen_participant",
    "system_user",
    "update_administration",
    "update_adverse_event",
    "update_clinical",
    "update_lab",
    "update_participant",
    "update_visit",
]

SYSTEM_USERNAME = "system"


class StoreError(ValueError):
    """A write was refused: the message names the record, field and value."""


# --------------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------------- protocol

_protocol_cache: dict[str, Any] = {}


def _protocol_text(name_or_path: str | Path) -> tuple[Any, str]:
    from hepatrial.protocol import loader

    proto = loader.load_protocol(name_or_path)
    p = Path(str(name_or_path))
    if isinstance(name_or_path, Path) or str(name_or_path).endswith(".toml") or p.is_file():
        text = p.read_text(encoding="utf-8")
    else:
        text = loader.builtin_path(str(name_or_path)).read_text(encoding="utf-8")
    return proto, text


def active_protocol() -> Any:
    """The :class:`hepatrial.protocol.models.Protocol` stored by ``hepatrial init``."""
    from hepatrial.protocol import loader

    cfg = TrialConfig.objects.order_by("pk").first()
    if cfg is None:
        raise StoreError("no protocol loaded: run `hepatrial init --protocol NAME` first")
    proto = _protocol_cache.get(cfg.content_hash)
    if proto is None:
        proto, issues = loader.validate_text(cfg.toml_text, f"store:{cfg.name}")
        if proto is None:
            raise StoreError(f"stored protocol {cfg} is invalid: {'; '.join(map(str, issues))}")
        _protocol_cache[cfg.content_hash] = proto
    return proto


def install_protocol(
    name_or_path: str | Path, *, user: Any = None, reason: str | None = None
) -> tuple[TrialConfig, str]:
    """Load a protocol into the store (``hepatrial init``); create its sites and arms.

    Returns ``(config, action)`` with action ``created``, ``unchanged`` (same content hash:
    nothing written) or ``updated`` (another version/content: ``reason`` required; sites and
    arms new in the protocol are added, none are removed). A randomised protocol gets its
    concealed allocation list (:func:`generate_randomisation`) when first installed.
    """
    proto, text = _protocol_text(name_or_path)
    user = _user(user)
    digest = proto.content_hash()
    with transaction.atomic():
        cfg = TrialConfig.objects.order_by("pk").first()
        if cfg is not None and cfg.content_hash == digest:
            return cfg, "unchanged"
        if cfg is None:
            cfg = TrialConfig(
                name=proto.name,
                version=proto.version,
                content_hash=digest,
                toml_text=text,
                design=proto.design,
                loaded_at=timezone.now(),
            )
            cfg.save(user=user)
            action = "created"
        else:
            if cfg.name != proto.name:
                raise StoreError(
                    f"this store runs protocol {cfg.name!r}; it cannot be switched to "
                    f"{proto.name!r} (use a new database)"
                )
            why = require_reason(
                reason, f"replacing protocol {cfg.name} v{cfg.version} by v{proto.version}"
            )
            cfg.version = proto.version
            cfg.content_hash = digest
            cfg.toml_text = text
            cfg.design = proto.design
            cfg.loaded_at = timezone.now()
            cfg.save(user=user, reason=why)
            action = "updated"
        for s in proto.sites:
            if not Site.objects.filter(code=s.code).exists():
                Site(code=s.code, name=s.name).save(user=user)
        for a in proto.arms:
            if not Arm.objects.filter(code=a.code).exists():
                Arm(code=a.code, label=a.label).save(user=user)
        if proto.design == "randomised" and not RandomisationList.objects.exists():
            generate_randomisation(user=user)
    _protocol_cache.clear()
    return cfg, action


def _block(rng: random.Random, size: int, ratio: Mapping[str, int], what: str) -> list[str]:
    total = sum(ratio.values())
    if size % total:
        raise StoreError(f"{what}: block size {size} is not a multiple of the ratio total {total}")
    block = [code for code, r in ratio.items() for _ in range(size // total * r)]
    rng.shuffle(block)
    return block


def generate_randomisation(*, per_site: int = 200, user: Any = None) -> RandomisationList:
    """Generate the concealed allocation list: permuted blocks, stratified by site, seeded.

    For each site a separate stream ``random.Random(sha256(seed:site))`` picks a block size
    from the protocol's ``block_sizes`` and shuffles a block with the arms in ``ratio``;
    ``per_site`` allocations (rounded up to whole blocks) per site. Deterministic for a
    protocol seed. Entries are revealed only by :func:`enrol_participant`.
    """
    proto = active_protocol()
    if proto.randomisation is None:
        raise StoreError(f"protocol {proto.name} has no [randomisation] section")
    user = _user(user)
    r = proto.randomisation
    ratio = {a.code: int(a.ratio) for a in proto.arms}
    arms = {a.code: a for a in Arm.objects.all()}
    with transaction.atomic():
        lst = RandomisationList(
            protocol_version=proto.version,
            seed=int(r.seed),
            block_sizes=list(r.block_sizes),
            ratio=ratio,
            created_at=timezone.now(),
        )
        lst.save(user=user)
        entries = []
        for site in Site.objects.order_by("code"):
            digest = hashlib.sha256(f"{r.seed}:{site.code}".encode()).hexdigest()
            rng = random.Random(int(digest[:16], 16))
            seq, block_no = 0, 0
            while seq < per_site:
                block_no += 1
                size = rng.choice(list(r.block_sizes))
                for code in _block(rng, int(size), ratio, f"protocol {proto.name}"):
                    seq += 1
                    entries.append(
                        RandomisationEntry(
                            allocation_list=lst,
                            site=site,
                            sequence=seq,
                            block=block_no,
                            arm=arms[code],
                        )
                    )
        from hepatrial.trials import audit

        audit.bulk_create(RandomisationEntry, entries, user=user)
    return lst


# --------------------------------------------------------------------------------- sites & users


def create_site(*, code: str, name: str = "", user: Any = None) -> Site:
    """Create a site (centre)."""
    code = str(code).strip()
    if not code:
        raise StoreError("site: code is empty")
    if Site.objects.filter(code=code).exists():
        raise StoreError(f"site {code!r} already exists")
    site = Site(code=code, name=name)
    site.save(user=_user(user))
    return site


def create_user(
    *,
    username: str,
    password: str | None,
    site_codes: list[str] | tuple[str, ...] = (),
    superuser: bool = False,
    user: Any = None,
) -> Any:
    """Create an admin account: a superuser, or a staff coordinator limited to ``site_codes``.

    Coordinators get view/add/change permissions on participant-level records; they never get
    delete permission. The password is validated by Django's password validators.
    """
    from django.contrib.auth.models import Permission
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    User = get_user_model()
    acting = _user(user)
    if User.objects.filter(username=username).exists():
        raise StoreError(f"user {username!r} already exists")
    if not superuser and not site_codes:
        raise StoreError(f"user {username!r}: a coordinator needs --site")
    sites = [_site(c) for c in site_codes]
    with transaction.atomic():
        new = User(username=username, is_staff=True, is_superuser=superuser, is_active=True)
        if password:
            try:
                validate_password(password, new)
            except ValidationError as exc:
                raise StoreError(f"user {username!r}: " + " ".join(exc.messages)) from None
            new.set_password(password)
        else:
            new.set_unusable_password()
        new._history_user = acting
        new._change_reason = "account created"
        new.save()
        if not superuser:
            models = [
                "participant",
                "consent",
                "eligibilityassessment",
                "visit",
                "protocoldeviation",
                "labresult",
                "clinicalassessment",
                "administration",
                "adverseevent",
                "cellproductbatch",
            ]
            perms = Permission.objects.filter(
                content_type__app_label="trials",
                content_type__model__in=models,
                codename__regex=r"^(view|add|change)_",
            )
            new.user_permissions.add(*perms)
            perms_site = Permission.objects.filter(
                content_type__app_label="trials", codename__in=["view_site", "view_arm"]
            )
            new.user_permissions.add(*perms_site)
        for s in sites:
            add_site_membership(user_account=new, site=s, user=acting)
    return new


def add_site_membership(*, user_account: Any, site: Site | str, user: Any = None) -> SiteMembership:
    """Give ``user_account`` access to ``site``'s participants."""
    m = SiteMembership(user=user_account, site=_site(site))
    m.save(user=_user(user))
    return m


# --------------------------------------------------------------------------------- participants


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


# --------------------------------------------------------------------------------- visits


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


# --------------------------------------------------------------------------------- labs


def _to_text(value: Any, what: str) -> str:
    if value is None or isinstance(value, bool):
        raise StoreError(f"{what}: value {value!r} is not a number")
    if isinstance(value, float):
        text = repr(float(value))  # also numpy floats (their repr names the type)
    else:
        text = str(value).strip()
    try:
        Decimal(text)
    except InvalidOperation:
        raise StoreError(f"{what}: value {value!r} is not a number") from None
    return text


def canonical_lab(
    analyte: str, value: Any, unit: str, what: str
) -> tuple[str, str, float, str, str]:
    """``(value_text, unit, canonical value, canonical unit, LOINC)`` via the analyte registry.

    Raises :class:`StoreError` naming analyte, unit and value for an unknown analyte or unit
    or a value outside the analyte's plausible range.
    """
    from hepatrial.protocol import analytes

    text = _to_text(value, f"{what} {analyte}")
    try:
        a = analytes.analyte(analyte)
        canon = analytes.to_canonical(analyte, float(Decimal(text)), str(unit))
    except (analytes.AnalyteError, KeyError) as exc:
        raise StoreError(
            f"{what}: analyte {analyte!r} value {text} unit {unit!r} refused: {exc}"
        ) from None
    return text, str(unit).strip(), float(canon), a.unit, a.loinc


def record_lab(
    *,
    participant: Participant | str,
    visit_code: str,
    analyte: str,
    value: Any,
    unit: str,
    laboratory: str = "",
    specimen_date: Any = None,
    user: Any = None,
) -> LabResult:
    """Record a lab value: kept as entered (text) and converted to the analyte's canonical unit.

    One value per (visit, analyte); a second one is refused (use :func:`update_lab`).
    """
    p = _participant(participant)
    v = _visit(p, visit_code)
    what = f"participant {p} visit {v.code}"
    text, unit, canon, canon_unit, loinc = canonical_lab(analyte, value, unit, what)
    if LabResult.objects.filter(visit=v, analyte=analyte).exists():
        raise StoreError(f"{what}: {analyte} already recorded (use update_lab with a reason)")
    lab = LabResult(
        participant=p,
        visit=v,
        analyte=analyte,
        loinc=loinc,
        value_as_entered=text,
        unit_as_entered=unit,
        value=canon,
        unit=canon_unit,
        laboratory=str(laboratory or ""),
        specimen_date=_opt_date(specimen_date, f"{what} {analyte} specimen_date") or v.actual_date,
    )
    lab.save(user=_user(user))
    return lab


def update_lab(lab: LabResult, *, reason: str, user: Any = None, **changes: Any) -> LabResult:
    """Correct a lab result (``value``, ``unit``, ``laboratory``, ``specimen_date``).

    A new value or unit is re-converted to the canonical unit."""
    reason = require_reason(reason, f"changing lab result {lab}")
    what = f"participant {lab.participant} visit {lab.visit.code}"
    allowed = {"value", "unit", "laboratory", "specimen_date"}
    bad = set(changes) - allowed
    if bad:
        raise StoreError(f"{what} {lab.analyte}: fields {sorted(bad)} cannot be changed")
    if "value" in changes or "unit" in changes:
        text, unit, canon, canon_unit, _ = canonical_lab(
            lab.analyte,
            changes.get("value", lab.value_as_entered),
            changes.get("unit", lab.unit_as_entered),
            what,
        )
        lab.value_as_entered, lab.unit_as_entered, lab.value, lab.unit = (
            text,
            unit,
            canon,
            canon_unit,
        )
    if "laboratory" in changes:
        lab.laboratory = str(changes["laboratory"])
    if "specimen_date" in changes:
        lab.specimen_date = _opt_date(changes["specimen_date"], f"{what} specimen_date")
    lab.save(user=_user(user), reason=reason)
    return lab


# --------------------------------------------------------------------------------- clinical


def _weight(value: Any, what: str) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        w = Decimal(str(value).strip())
    except InvalidOperation:
        raise StoreError(f"{what} weight_kg: {value!r} is not a number") from None
    if not Decimal("20") <= w <= Decimal("300"):
        raise StoreError(f"{what} weight_kg: {value} kg is outside 20-300 kg")
    return w.quantize(Decimal("0.01"))


#: optional clinical items beyond the Child-Pugh ones: field -> kind
CLINICAL_SIGNS: dict[str, str] = {
    "ascites_present": "bool",
    "hepatomegaly": "bool",
    "spider_angiomata": "bool",
    "edema": "edema",
    "histologic_stage": "stage",
}


def _optional_choice(value: Any, choices: type, what: str) -> str | None:
    """None (not assessed) or one of ``choices``."""
    return None if value is None else _choice(value, choices, what)


def _clinical_sign(name: str, value: Any, what: str) -> Any:
    """Check one optional clinical sign (None = not assessed)."""
    if value is None:
        return None
    kind = CLINICAL_SIGNS[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise StoreError(f"{what} {name}: {value!r} is not true/false")
        return value
    if kind == "edema":
        return _choice(value, Edema, f"{what} edema")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise StoreError(f"{what} {name}: {value!r} is not a stage 1-4")
    return value


def record_clinical(
    *,
    participant: Participant | str,
    visit_code: str,
    ascites: str | None = None,
    encephalopathy: str | None = None,
    dialysis_last_week: bool = False,
    weight_kg: Any = None,
    user: Any = None,
    **signs: Any,
) -> ClinicalAssessment:
    """Record the bedside assessment of a visit (one per visit).

    ``ascites`` (Child-Pugh grade) and ``encephalopathy`` may be None (not assessed). Further
    optional items as keywords: ``ascites_present``, ``hepatomegaly``, ``spider_angiomata``
    (bool), ``edema`` (none / untreated_or_resolved / despite_diuretics), ``histologic_stage``
    (1-4).
    """
    p = _participant(participant)
    v = _visit(p, visit_code)
    what = f"participant {p} visit {v.code}"
    unknown = sorted(set(signs) - set(CLINICAL_SIGNS))
    if unknown:
        raise StoreError(f"{what}: unknown clinical item(s) {', '.join(unknown)}")
    if ClinicalAssessment.objects.filter(visit=v).exists():
        raise StoreError(f"{what}: clinical assessment already recorded (use update_clinical)")
    c = ClinicalAssessment(
        participant=p,
        visit=v,
        ascites=_optional_choice(ascites, Ascites, f"{what} ascites"),
        encephalopathy=_optional_choice(encephalopathy, Encephalopathy, f"{what} encephalopathy"),
        dialysis_last_week=bool(dialysis_last_week),
        weight_kg=_weight(weight_kg, what),
        **{k: _clinical_sign(k, val, what) for k, val in signs.items()},
    )
    c.save(user=_user(user))
    return c


def update_clinical(
    assessment: ClinicalAssessment, *, reason: str, user: Any = None, **changes: Any
) -> ClinicalAssessment:
    """Correct a clinical assessment (ascites, encephalopathy, dialysis_last_week, weight_kg and
    the optional items of :data:`CLINICAL_SIGNS`; None = not assessed)."""
    reason = require_reason(reason, f"changing {assessment}")
    what = str(assessment.visit)
    if "ascites" in changes:
        _optional_choice(changes["ascites"], Ascites, f"{what} ascites")
    if "encephalopathy" in changes:
        _optional_choice(changes["encephalopathy"], Encephalopathy, f"{what} encephalopathy")
    if "weight_kg" in changes:
        changes["weight_kg"] = _weight(changes["weight_kg"], what)
    for k in set(changes) & set(CLINICAL_SIGNS):
        changes[k] = _clinical_sign(k, changes[k], what)
    allowed = {"ascites", "encephalopathy", "dialysis_last_week", "weight_kg", *CLINICAL_SIGNS}
    if _apply_changes(assessment, changes, allowed, what):
        assessment.save(user=_user(user), reason=reason)
    return assessment


# --------------------------------------------------------------------------------- product


def register_product_batch(
    *,
    batch_id: str,
    participant: Participant | str,
    coi_identifier: str = "",
    release_tests: Mapping[str, Any] | None = None,
    user: Any = None,
) -> CellProductBatch:
    """Register an autologous cell-product batch for its one participant (chain of identity)."""
    p = _participant(participant)
    if CellProductBatch.objects.filter(batch_id=batch_id).exists():
        raise StoreError(f"batch {batch_id!r} already exists")
    b = CellProductBatch(
        batch_id=str(batch_id),
        participant=p,
        coi_identifier=str(coi_identifier),
        release_tests=_jsonable(dict(release_tests or {})),
    )
    b.save(user=_user(user))
    return b


def release_product_batch(
    *,
    batch_id: str,
    release_date: Any,
    release_tests: Mapping[str, Any] | None = None,
    reason: str = "QA release",
    user: Any = None,
) -> CellProductBatch:
    """Mark a batch released (a workflow action, recorded with its reason)."""
    b = CellProductBatch.objects.filter(batch_id=batch_id).first()
    if b is None:
        raise StoreError(f"batch {batch_id!r} does not exist")
    b.released = True
    b.release_date = _date(release_date, f"batch {batch_id} release_date")
    if release_tests:
        b.release_tests = {**b.release_tests, **_jsonable(dict(release_tests))}
    b.save(user=_user(user), reason=require_reason(reason))
    return b


def _dec(value: Any, what: str) -> Decimal:
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise StoreError(f"{what}: {value!r} is not a number") from None


def check_administration(
    *, participant: Participant | str, route: str, cells_total: Any, date: Any, batch_id: str
) -> tuple[Participant, str, float, _dt.date]:
    """Validate an administration before it is stored (also used by the admin form).

    Returns ``(participant, route, cells, date)``; raises :class:`StoreError` for a route the
    protocol does not allow, a non-positive dose, a participant not enrolled, or a batch that
    belongs to another participant (chain of identity) or is not released.
    """
    p = _participant(participant)
    what = f"participant {p} administration"
    proto = active_protocol()
    route = _choice(route, Route, f"{what} route")
    if proto.product is not None and route not in proto.product.routes:
        raise StoreError(
            f"{what} route: {route!r} is not allowed by the protocol "
            f"({', '.join(proto.product.routes)})"
        )
    try:
        cells = float(cells_total)
    except (TypeError, ValueError):
        raise StoreError(f"{what} cells_total: {cells_total!r} is not a number") from None
    if not cells > 0:
        raise StoreError(f"{what} cells_total: {cells_total!r} must be positive")
    d = _date(date, f"{what} date")
    if p.enrolment_date is None:
        raise StoreError(f"{what}: participant is not enrolled")
    batch = CellProductBatch.objects.filter(batch_id=batch_id).first()
    if batch is not None:
        if batch.participant_id != p.pk:
            raise StoreError(
                f"{what}: batch {batch_id!r} belongs to participant {batch.participant} "
                "(chain of identity)"
            )
        if not batch.released:
            raise StoreError(f"{what}: batch {batch_id!r} has not been released")
    return p, route, cells, d


def record_administration(
    *,
    participant: Participant | str,
    route: str,
    cells_total: float,
    volume_ml: Any,
    date: Any,
    operator: str,
    batch_id: str,
    cells_per_kg: float | None = None,
    user: Any = None,
) -> Administration:
    """Record a cell administration.

    The route must be one the protocol allows; a dose outside the protocol's
    ``cells_min``–``cells_max`` is stored and creates a ``dosing`` deviation. ``cells_per_kg``
    defaults to ``cells_total`` / the latest recorded weight on or before ``date``. When a
    :class:`CellProductBatch` with ``batch_id`` exists it must belong to this participant
    (chain of identity) and be released.
    """
    p, route, cells, d = check_administration(
        participant=participant,
        route=route,
        cells_total=cells_total,
        date=date,
        batch_id=batch_id,
    )
    what = f"participant {p} administration"
    user = _user(user)
    proto = active_protocol()
    if cells_per_kg is None:
        c = (
            ClinicalAssessment.objects.filter(
                participant=p, weight_kg__isnull=False, visit__actual_date__lte=d
            )
            .order_by("-visit__actual_date")
            .first()
        )
        if c is None:
            c = (
                ClinicalAssessment.objects.filter(participant=p, weight_kg__isnull=False)
                .order_by("visit__nominal_day")
                .first()
            )
        cells_per_kg = cells / float(c.weight_kg) if c is not None else None
    with transaction.atomic():
        a = Administration(
            participant=p,
            route=route,
            cells_total=cells,
            cells_per_kg=cells_per_kg,
            volume_ml=_dec(volume_ml, f"{what} volume_ml"),
            date=d,
            operator=str(operator),
            batch_id=str(batch_id),
        )
        _full_clean(a, what)
        a.save(user=user)
        prod = proto.product
        if (
            prod is not None
            and prod.dose_basis == "total"
            and not prod.cells_min <= cells <= prod.cells_max
        ):
            ProtocolDeviation(
                participant=p,
                category=DeviationCategory.DOSING,
                description=(
                    f"dose {cells:.4g} cells outside protocol range "
                    f"{prod.cells_min:.4g}-{prod.cells_max:.4g}"
                ),
                date=d,
                major=True,
                detected_by="system",
            ).save(user=user)
    return a


def update_administration(
    administration: Administration, *, reason: str, user: Any = None, **changes: Any
) -> Administration:
    """Correct an administration (route, cells_total, cells_per_kg, volume_ml, date, operator,
    batch_id)."""
    reason = require_reason(reason, f"changing {administration}")
    what = str(administration)
    if "route" in changes:
        _choice(changes["route"], Route, f"{what} route")
    if "date" in changes:
        changes["date"] = _date(changes["date"], f"{what} date")
    if "volume_ml" in changes:
        changes["volume_ml"] = _dec(changes["volume_ml"], f"{what} volume_ml")
    allowed = {"route", "cells_total", "cells_per_kg", "volume_ml", "date", "operator", "batch_id"}
    if _apply_changes(administration, changes, allowed, what):
        administration.save(user=_user(user), reason=reason)
    return administration


# --------------------------------------------------------------------------------- adverse events


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
