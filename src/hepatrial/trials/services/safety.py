"""Safety: adverse events, lab-derived AE proposals, the SAE action chain, the stopping rules
and their pauses, the DSMB's decisions and the notifications.

Every write of an adverse event goes through here and is judged by one validator
(:mod:`hepatrial.trials.validators.adverse_event`) on creation and on every change;
:func:`check_adverse_event` runs it without writing (the admin form shows each problem on
its field). A fatal event (grade 5, outcome fatal) makes the participant's status ``died`` on
the date of death in the same transaction; correcting it back restores the status the
participant had.

**Stopping rules.** :func:`refresh_safety_status` evaluates the protocol's stopping rules with
the pure evaluator (:func:`hepatrial.protocol.safety.evaluate_stopping_rules`) on the store's
records (:func:`hepatrial.trials.selectors.safety_data`) as of now, latches every rule that
pauses (:class:`~hepatrial.trials.models.safety.StoppingRuleState`: a pause stays until a
signed DSMB decision resumes it, whatever later corrections do) and notifies. It is called,
not triggered by a signal, after every write that can change the answer: here after every
adverse-event, SAE, assessment and DSMB write; the lab, administration and participant-status
services must call it after theirs (see the module's ``__all__`` users in the report of issue
12). :func:`dosing_pause` and :func:`enrolment_pause` answer the dosing gate and the enrolment
service (:class:`hepatrial.protocol.dosing.DosingPause` naming the rules, or None).

**Signed records.** SAE reports, causality assessments and DSMB decisions are signed: the
signer re-enters the password (:func:`~hepatrial.trials.services.accounts.check_signing_password`,
21 CFR 11.200: failures counted, deactivation at 5) and the record carries the printed name,
role, meaning, UTC time and the ledger entries of what was signed (11.50, 11.70). Who may:
:mod:`hepatrial.trials.services.permissions` (``report_sae``: investigator of the site;
``assess_sae``: sponsor; ``dsmb_decide``: DSMB member; ``review_lab_ae``: investigator).

**Notifications** go to the roles the protocol names (``[[safety.notifications]]``,
:meth:`~hepatrial.protocol.safety.SafetyPlan.recipients`) through Django's e-mail framework
(``HEPATRIAL_EMAIL_*``, :mod:`hepatrial.trials.conf`): users with that role and an e-mail
address (site roles: of the participant's site) and the addresses configured for the
recipient. Each is an audited :class:`~hepatrial.trials.models.safety.SafetyNotification`
written with the triggering record and sent when the transaction commits (one per key: an
event is notified once).

Import note for other services: this module imports no other service module but
``_common``, ``accounts``, ``permissions`` and ``protocol``, so ``participants``,
``measurements`` and ``product`` may import it.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from hepatrial import vocab
from hepatrial.errors import AuditIntegrityError, NotFoundError, PermissionDenied, StoreError
from hepatrial.protocol import safety as ps
from hepatrial.protocol.dosing import DosingPause
from hepatrial.trials import selectors
from hepatrial.trials.audit.actors import system_user
from hepatrial.trials.audit.chain import head, lock_ledger
from hepatrial.trials.audit.signatures import manifest_digest
from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    Administration,
    AdverseEvent,
    AEOutcome,
    AuditLedger,
    Consent,
    LabResult,
    Participant,
    ParticipantStatus,
)
from hepatrial.trials.models.safety import (
    DSMBDecision,
    LabAEProposal,
    NotificationStatus,
    ProposalStatus,
    SAEAssessment,
    SAEReport,
    SafetyNotification,
    StoppingRuleState,
)
from hepatrial.trials.services._common import _participant, _user
from hepatrial.trials.services.accounts import (
    acting_user,
    check_signing_password,
    printed_name_of,
)
from hepatrial.trials.services.permissions import SITE_ROLES, require_permission, role_of
from hepatrial.trials.services.protocol import active_protocol
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.validators._common import Checker, Problem, changes_needing_reason
from hepatrial.trials.validators.adverse_event import (
    FIELDS,
    AdverseEventFacts,
    lab_grade_rises,
    parse_wall_time,
    validate_adverse_event,
)
from hepatrial.trials.validators.adverse_event import LAB_REFERENCE as LAB_REFERENCE
from hepatrial.trials.validators.product import aware_datetime
from hepatrial.trials.validators.sae import (
    DsmbDecisionFacts,
    SaeAssessmentFacts,
    SaeReportFacts,
    validate_dsmb_decision,
    validate_sae_assessment,
    validate_sae_report,
)

__all__ = [
    "LAB_REFERENCE",
    "StoreSafetyStatus",
    "adverse_event",
    "assess_sae",
    "check_adverse_event",
    "confirm_lab_proposal",
    "deliver_pending",
    "dismiss_lab_proposal",
    "dosing_pause",
    "enrolment_pause",
    "propose_lab_adverse_events",
    "record_adverse_event",
    "record_dsmb_decision",
    "refresh_safety_status",
    "report_sae",
    "resume_stopping_rule",
    "sae_worklist",
    "safety_status",
    "update_adverse_event",
]

#: fields the user enters (a change of one of them after its first entry needs a reason);
#: every other stored column is derived from them
_INPUT = ("term", "specify", "grade", "serious", "seriousness_criteria", "relatedness_product",
          "relatedness_procedure", "procedure", "onset_date", "resolution_date", "outcome",
          "action_taken", "aware_at")  # fmt: skip
_STATE = tuple(f for f in _INPUT if f != "aware_at")
_LEGACY_OPTIONAL = ("relatedness_procedure", "seriousness_criteria", "aware_at", "action_taken")
_RESUMES = ("resume", "resume_modified")


def _plan() -> Any:
    try:
        return active_protocol().safety
    except StoreError:
        return None


def _death_marker(pk: int) -> str:
    return f"died: adverse event {selectors.ae_record_id(pk)} "


def adverse_event(ref: AdverseEvent | int | str) -> AdverseEvent:
    """The adverse event ``ref`` (instance, pk, ``"12"`` or ``"AE-12"``); NotFoundError."""
    if isinstance(ref, AdverseEvent):
        return AdverseEvent.objects.select_related("participant").get(pk=ref.pk)
    text = str(ref).strip()
    digits = text[3:] if text.upper().startswith("AE-") else text
    ae = AdverseEvent.objects.select_related("participant").filter(
        pk=int(digits)).first() if digits.isdigit() else None
    if ae is None:
        raise NotFoundError(f"adverse event {ref!r} does not exist")
    return ae


# ============================================================================ adverse events
def _facts(p: Participant, stored: AdverseEvent | None = None) -> AdverseEventFacts:
    consent = Consent.objects.filter(participant=p).aggregate(first=Min("date"))["first"]
    admins = tuple(Administration.objects.filter(participant=p).order_by("date", "pk")
                   .values_list("date", "route"))
    death = None
    if p.status == ParticipantStatus.DIED and not (
            stored is not None and p.status_reason.startswith(_death_marker(stored.pk))):
        death = p.status_date
    legacy = stored is not None and stored.ctcae_version is None
    empty = frozenset(f for f in _LEGACY_OPTIONAL if getattr(stored, f) in (None, [])
                      ) if legacy else frozenset()
    return AdverseEventFacts(
        participant=p.study_id, screening_date=p.screening_date, consent_date=consent,
        administrations=admins, death_date=death, plan=_plan(),
        stored_term=stored.term if stored is not None else None,
        stored_uncoded=legacy and stored is not None and stored.meddra_code is None,
        legacy_empty=empty, participant_status=p.status,
        enrolment_date=p.enrolment_date)


def check_adverse_event(
    *, participant: Participant | str, adverse_event: AdverseEvent | None = None, **values: Any
) -> tuple[Participant, dict[str, Any]]:
    """Judge an adverse event without writing: ``(participant, values to store)`` or
    :class:`~hepatrial.trials.validators.RuleViolation` with every problem.

    ``values``: the keys of :data:`hepatrial.trials.validators.adverse_event.FIELDS`
    (``aware_local`` "YYYY-MM-DD HH:MM" + ``aware_time_zone`` (default the trial's) [+
    ``aware_fold``], or an aware ``aware_at``); ``adverse_event``: the stored event when the
    state is a change of it."""
    p = _participant(participant)
    if "relatedness" in values:
        raise StoreError("adverse event: relatedness is judged separately: give "
                         "relatedness_product and relatedness_procedure")
    bad = sorted(set(values) - set(FIELDS))
    if bad:
        raise StoreError(f"adverse event: unknown field(s) {', '.join(bad)} (known: "
                         f"{', '.join(FIELDS)})")
    return p, validate_adverse_event(values, _facts(p, adverse_event))


def record_adverse_event(
    *, participant: Participant | str, term: Any = None, grade: Any = None,
    onset_date: Any = None, relatedness_product: Any = None, relatedness_procedure: Any = None,
    action_taken: Any = None, outcome: Any = AEOutcome.UNKNOWN, serious: Any = False,
    seriousness_criteria: Any = (), specify: Any = None, meddra_code: Any = None,
    procedure: Any = None, resolution_date: Any = None, aware_local: Any = None,
    aware_time_zone: Any = None, aware_fold: Any = None, aware_at: Any = None, user: Any = None,
) -> AdverseEvent:
    """Record an adverse event (see :func:`check_adverse_event` for the values; every value
    left out is judged empty: the rules name each one that is required).

    Refused, with every problem at once, by the adverse-event rules (CTCAE term and grade,
    grade 5 fatal and serious with the criterion death, dates against consent, screening,
    administrations and death, causality before the cause, seriousness criteria, awareness
    time). A fatal event makes the participant ``died`` on the date of death in the same
    transaction; the stopping rules are evaluated and the safety notifications written.
    Needs ``enter_data`` on the participant's site (the system account may).
    """
    values = {
        "term": term, "grade": grade, "onset_date": onset_date,
        "relatedness_product": relatedness_product,
        "relatedness_procedure": relatedness_procedure, "action_taken": action_taken,
        "outcome": outcome, "serious": serious,
        "seriousness_criteria": list(seriousness_criteria or []), "specify": specify,
        "meddra_code": meddra_code, "procedure": procedure, "resolution_date": resolution_date,
        "aware_local": aware_local, "aware_time_zone": aware_time_zone,
        "aware_fold": aware_fold, "aware_at": aware_at,
    }  # fmt: skip
    user = acting_user(user)
    require_permission(user, "enter_data", _participant(participant))
    with transaction.atomic():
        p, ok = check_adverse_event(participant=participant, **values)
        ae = AdverseEvent(participant=p, **ok)
        ae.save(user=user)
        _sync_death(ae, None, user, "")
        _refresh_quietly(user)
    return ae


def update_adverse_event(
    event: AdverseEvent | int | str, *, reason: str | None = None, user: Any = None,
    **changes: Any,
) -> AdverseEvent:
    """Follow up or correct an adverse event: the new state is judged by the same rules as a
    new event. A reason is needed unless only empty values are filled (data entry, e.g. the
    resolution date). The date of death follows a fatal event; a fatal event corrected to
    non-fatal gives the participant back the status before the death."""
    if "relatedness" in changes:
        raise StoreError("adverse event: relatedness is judged separately: give "
                         "relatedness_product and relatedness_procedure")
    bad = sorted(set(changes) - set(FIELDS))
    if bad:
        raise StoreError(
            f"adverse event {event}: field(s) {', '.join(bad)} cannot be changed here "
            f"(allowed: {', '.join(FIELDS)})"
        )
    user = acting_user(user)
    with transaction.atomic():
        ae = adverse_event(event)
        require_permission(user, "enter_data", ae.participant)
        state: dict[str, Any] = {k: getattr(ae, k) for k in _STATE}
        new_aware = any(k in changes for k in ("aware_at", "aware_local"))
        if not new_aware:
            state["aware_at"] = ae.aware_at
            state["aware_time_zone"] = ae.aware_time_zone
        state.update(changes)
        if "aware_local" in changes and "aware_at" not in changes:
            state["aware_at"] = None
        _p, ok = check_adverse_event(participant=ae.participant, adverse_event=ae, **state)
        if not new_aware:
            ok["aware_local"], ok["aware_time_zone"] = ae.aware_local, ae.aware_time_zone
        old = {k: getattr(ae, k) for k in ok}
        changed = sorted(k for k in ok if old[k] != ok[k])
        if not changed:
            return ae
        typed = {k: ok[k] for k in changed if k in _INPUT}
        before = {k: (old[k].casefold() if k == "term" and isinstance(old[k], str) else old[k])
                  for k in typed}  # fmt: skip
        after = {k: (v.casefold() if k == "term" and isinstance(v, str) else v)
                 for k, v in typed.items()}  # fmt: skip
        needing = changes_needing_reason(before, after)
        if needing:
            why = require_reason(reason, f"changing adverse event {ae} ({', '.join(needing)})")
        else:
            what = ", ".join(sorted(typed)) or "the CTCAE v5.0 coding"
            why = (reason or "").strip() or f"data entry: {what} entered"
        for k, val in ok.items():
            setattr(ae, k, val)
        ae.save(user=user, reason=why)
        _sync_death(ae, old, user, why)
        _refresh_quietly(user)
    return adverse_event(ae)


def _sync_death(ae: AdverseEvent, before: Mapping[str, Any] | None, user: Any,
                why: str) -> None:  # fmt: skip
    """The participant's status after a write of ``ae`` (same transaction)."""
    p = Participant.objects.get(pk=ae.participant_id)
    marker = _death_marker(ae.pk)
    text = f"{marker}({ae.label}, grade {ae.grade})"
    if ae.outcome == AEOutcome.FATAL:
        if p.status != ParticipantStatus.DIED:
            p.status, p.status_date, p.status_reason = ParticipantStatus.DIED, \
                ae.resolution_date, text
            p.save(user=user, reason=f"died: fatal adverse event {selectors.ae_record_id(ae.pk)} "
                   f"({ae.label})")
        elif p.status_reason.startswith(marker) and p.status_date != ae.resolution_date:
            p.status_date, p.status_reason = ae.resolution_date, text
            p.save(user=user, reason=f"date of death corrected with adverse event "
                   f"{selectors.ae_record_id(ae.pk)}: {why}")
        return
    was_fatal = before is not None and before.get("outcome") == AEOutcome.FATAL
    if not (was_fatal and p.status == ParticipantStatus.DIED and p.status_reason.startswith(
            marker)):
        return
    other = AdverseEvent.objects.filter(participant_id=p.pk, outcome=AEOutcome.FATAL).exclude(
        pk=ae.pk).order_by("resolution_date", "pk").first()
    if other is not None:
        p.status_date = other.resolution_date
        p.status_reason = f"{_death_marker(other.pk)}({other.label}, grade {other.grade})"
        p.save(user=user, reason=f"death recorded by adverse event {other.pk} (adverse event "
               f"{ae.pk} is no longer fatal: {why})")
        return
    prev = None
    for h in p.history.order_by("-history_id"):
        if h.status != ParticipantStatus.DIED:
            prev = h
            break
    if prev is None:  # pragma: no cover - a participant is never created died
        raise StoreError(f"participant {p}: no status before the death to go back to")
    p.status, p.status_date, p.status_reason = prev.status, prev.status_date, prev.status_reason
    p.save(user=user, reason=f"death recorded by adverse event {selectors.ae_record_id(ae.pk)} "
           f"withdrawn (the event is no longer fatal): {why}")


# ============================================================================ signing
def _signer(user: Any, action: str, participant: Participant | None) -> tuple[Any, str]:
    acting = acting_user(user)
    if role_of(acting) == "system":
        raise PermissionDenied(f"{action}: the system account cannot sign; a named user must "
                               "(--user NAME)")
    if not acting.is_active:
        raise PermissionDenied(f"{action}: account {acting.get_username()!r} is deactivated")
    return acting, require_permission(acting, action, participant=participant)


def _signature(acting: Any, role: str, meaning: str, covered: Iterable[Any]) -> dict[str, Any]:
    """The signature columns, written under the ledger lock (call inside the transaction)."""
    text = str(meaning or "").strip()
    if not text:
        raise StoreError("sign: the meaning of the signature is required")
    if len(text) > 300:
        raise StoreError("sign: the meaning is longer than 300 characters")
    lock_ledger()
    manifest: list[list[Any]] = []
    for obj in covered:
        hlabel = type(obj).history.model._meta.label_lower
        entry = AuditLedger.objects.filter(history_model=hlabel, object_pk=str(obj.pk)).order_by(
            "-seq").values_list("seq", "digest").first()
        if entry is None:
            raise AuditIntegrityError(f"{obj._meta.label_lower} {obj.pk} has no entry in the "
                                      "audit ledger; run `hepatrial audit verify` before signing")
        manifest.append([obj._meta.label_lower, obj.pk, int(entry[0]), str(entry[1])])
    seq, chain = head()
    return {"signer": acting, "printed_name": printed_name_of(acting), "signer_role": role,
            "meaning": text, "signed_at": timezone.now(), "ledger_seq": seq,
            "ledger_hash": chain, "manifest": manifest,
            "manifest_digest": manifest_digest(manifest)}


def _utc_time(value: Any, tz: str | None, fold: Any, what: str, default: _dt.datetime
              ) -> tuple[_dt.datetime, str, str]:  # fmt: skip
    """(UTC time, wall-clock text, zone) of an entered time (None: ``default``)."""
    from hepatrial.errors import InputError

    zone = tz or (_plan().reporting.time_zone if _plan() is not None else "UTC")
    if value is None or (isinstance(value, str) and not value.strip()):
        return default, "", ""
    if isinstance(value, _dt.datetime) and value.tzinfo is not None:
        return value.astimezone(_dt.UTC), "", ""
    wall = parse_wall_time(value)
    if wall is None:
        raise RuleViolation([Problem(what, "submitted_at", f"{value!r} is not a date and time "
                                     "(YYYY-MM-DD HH:MM)")])
    try:
        utc = ps.local_to_utc(wall, zone, fold=None if fold in (None, "") else int(fold))
    except (InputError, KeyError, ValueError) as e:
        raise RuleViolation([Problem(what, "submitted_at", str(e))]) from None
    return utc, wall.isoformat(sep=" ", timespec="minutes"), zone


# ============================================================================ SAE chain
def sae_worklist(*, now: _dt.datetime | None = None, overdue_only: bool = False
                 ) -> list[dict[str, Any]]:  # fmt: skip
    """Every report the serious adverse events owe, with its due date and status
    (:func:`hepatrial.trials.selectors.sae_cases`); ``overdue_only``: the overdue ones."""
    cases = selectors.sae_cases(_plan(), now or timezone.now())
    if overdue_only:
        cases = [dict(c, reports=[r for r in c["reports"] if r["status"] == "overdue"])
                 for c in cases]
        cases = [c for c in cases if c["reports"]]
    return cases


def _case(ae: AdverseEvent, now: _dt.datetime) -> dict[str, Any]:
    return next(c for c in selectors.sae_cases(_plan(), now, pks=[ae.pk])) if ae.serious else {
        "reports": [], "susar": False, "fatal_or_life_threatening": False, "submitted": []}


def report_sae(
    event: AdverseEvent | int | str, *, kind: str, narrative: str, user: Any,
    password: str | None, submitted: Any = None, time_zone: str | None = None,
    fold: Any = None, final: bool = False, meaning: str | None = None,
) -> SAEReport:
    """Sign and record one report of the SAE chain (``initial``, ``follow_up``,
    ``susar_7_day``, ``susar_15_day``, ``susar_follow_up``; rules:
    :func:`hepatrial.trials.validators.sae.validate_sae_report`).

    ``submitted``: when it was sent — a wall-clock "YYYY-MM-DD HH:MM" in ``time_zone``
    (default the trial's; ``fold`` for a repeated hour), an aware datetime, or None (now).
    The initial and follow-up reports are the investigator's (``report_sae``), the expedited
    ones the sponsor's (``assess_sae``). The report stores the deadline it answered and
    whether it met it.
    """
    ae = adverse_event(event)
    now = timezone.now()
    rid = selectors.ae_record_id(ae.pk)
    at, local, zone = _utc_time(submitted, time_zone, fold, f"adverse event {rid} SAE report",
                                now)
    case = _case(ae, now)
    facts = SaeReportFacts(
        adverse_event=rid, serious=ae.serious, aware_at=ae.aware_at, outcome=ae.outcome,
        made=tuple((r.kind, r.submitted_at, r.final) for r in case["submitted"]),
        dues=tuple(r["due"] for r in case["reports"]), susar=case["susar"],
        fatal_or_life_threatening=case["fatal_or_life_threatening"])
    ok = validate_sae_report({"kind": kind, "narrative": narrative, "submitted_at": at,
                              "final": final}, facts, now=now)
    action = "report_sae" if ok["kind"] in ("initial", "follow_up") else "assess_sae"
    acting, role = _signer(user, action, ae.participant)
    label = dict(vocab.SAE_REPORT_KIND)[ok["kind"]].split(",")[0].split(" (")[0]
    check_signing_password(acting, password)
    with transaction.atomic():
        r = SAEReport(adverse_event=ae, kind=ok["kind"], submitted_at=ok["submitted_at"],
                      submitted_local=local, time_zone=zone, deadline=ok["deadline"],
                      on_time=ok["on_time"], narrative=ok["narrative"], final=ok["final"],
                      **_signature(acting, role, meaning or f"I submit this {label}", [ae]))
        r.save(user=acting)
        _refresh_quietly(acting)
    return r


def assess_sae(
    event: AdverseEvent | int | str, *, assessor: str, relatedness_product: str,
    relatedness_procedure: str, comment: str, user: Any, password: str | None,
    procedure: str | None = None, expectedness: str | None = None, meaning: str | None = None,
) -> SAEAssessment:
    """Sign and record a causality assessment of an SAE by the ``investigator`` (permission
    ``report_sae``; the event's relatedness becomes this assessment's, judged by the
    adverse-event rules) or the ``sponsor`` (``assess_sae``; with the expectedness when the
    event is suspected of the product). The SUSAR decision is stored with it: serious,
    suspected of the product in the investigator's or the sponsor's opinion (the higher
    counts), unexpected (the sponsor's expectedness, else the reference safety information's).
    """
    ae = adverse_event(event)
    rid = selectors.ae_record_id(ae.pk)
    facts = SaeAssessmentFacts(rid, ae.serious, ae.relatedness_product or ae.relatedness)
    ok = validate_sae_assessment({
        "assessor": assessor, "relatedness_product": relatedness_product,
        "relatedness_procedure": relatedness_procedure, "procedure": procedure,
        "expectedness": expectedness, "comment": comment}, facts)  # fmt: skip
    changes = {k: ok[k] for k in ("relatedness_product", "relatedness_procedure", "procedure")
               if getattr(ae, k) != ok[k]}
    if ok["assessor"] == "investigator" and changes:
        state = {k: getattr(ae, k) for k in _STATE} | changes
        state.update(aware_at=ae.aware_at, aware_time_zone=ae.aware_time_zone)
        check_adverse_event(participant=ae.participant, adverse_event=ae, **state)
    action = "report_sae" if ok["assessor"] == "investigator" else "assess_sae"
    acting, role = _signer(user, action, ae.participant)
    check_signing_password(acting, password)
    with transaction.atomic():
        if ok["assessor"] == "investigator" and changes:
            ae = update_adverse_event(ae, reason=f"investigator causality assessment (signed): "
                                      f"{ok['comment']}", user=acting, **changes)
        plan = _plan()
        rel = max((x for x in (ae.relatedness_product or ae.relatedness,
                               ok["relatedness_product"]) if x),
                  key=vocab.codes(vocab.RELATEDNESS).index)
        expected = ok["expectedness"] or ae.expectedness_product
        if expected is None and rel in vocab.RELATED_CODES and plan is not None and (
                ae.ctcae_version):
            expected = ps.expectedness(plan, ae.term, ae.grade, "product")
        susar = bool(expected) and ps.is_susar(ae.serious, rel, expected)
        who = "investigator's" if ok["assessor"] == "investigator" else "sponsor's"
        a = SAEAssessment(adverse_event=ae, assessor=ok["assessor"],
                          relatedness_product=ok["relatedness_product"],
                          relatedness_procedure=ok["relatedness_procedure"],
                          procedure=ok["procedure"], expectedness=ok["expectedness"],
                          susar=susar, comment=ok["comment"],
                          **_signature(acting, role, meaning or f"I sign the {who} causality "
                                       "assessment of this serious adverse event", [ae]))
        a.save(user=acting)
        _refresh_quietly(acting)
    return a


# ============================================================================ stopping rules
@dataclass(frozen=True)
class StoreSafetyStatus:
    """The stopping rules as the store holds them: the evaluator's answer now
    (``evaluation``) and the pauses the store latched (``latched``: paused until a signed DSMB
    decision resumes them, even when the evaluator no longer finds the rule triggered).
    ``error``: the rules could not be evaluated (then nothing is allowed)."""

    evaluation: ps.SafetyStatus | None
    latched: tuple[str, ...] = ()
    error: str | None = None
    states: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def rules(self) -> tuple[ps.RuleStatus, ...]:
        """The evaluator's rule statuses, in protocol order."""
        return self.evaluation.rules if self.evaluation is not None else ()

    @property
    def pausing_rules(self) -> tuple[str, ...]:
        """Rules that pause now: the evaluator's and the latched ones, in protocol order."""
        return tuple(r.rule_id for r in self.rules if r.paused or r.rule_id in self.latched)

    @property
    def enrolment_pausing_rules(self) -> tuple[str, ...]:
        """The pausing rules that pause enrolment (every kind but the sentinel dosing gate)."""
        return tuple(r.rule_id for r in self.rules
                     if (r.paused or r.rule_id in self.latched) and r.kind != "sentinel")

    @property
    def dosing_allowed(self) -> bool:
        """False while a rule pauses dosing (or the rules cannot be evaluated)."""
        return self.error is None and not self.pausing_rules

    @property
    def enrolment_allowed(self) -> bool:
        """False while a stopping rule pauses enrolment (or the rules cannot be evaluated)."""
        return self.error is None and not self.enrolment_pausing_rules

    def rule(self, rule_id: str) -> ps.RuleStatus:
        """The evaluator's status of one rule (KeyError naming the known ids)."""
        for r in self.rules:
            if r.rule_id == rule_id:
                return r
        raise KeyError(f"no stopping rule {rule_id!r} (known: "
                       f"{', '.join(r.rule_id for r in self.rules) or 'none'})")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``hepatrial safety status --json``): the evaluator's dict with the
        store's pauses (``pausing_rules``, ``dosing_allowed``, ``enrolment_allowed`` include
        the latched pauses), ``latched`` and ``error``."""
        base = self.evaluation.as_dict() if self.evaluation is not None else {
            "as_of": None, "rules": [], "uncoded_events": []}
        latched = set(self.latched)
        for r in base["rules"]:
            r["latched"] = r["rule_id"] in latched
            r["pausing"] = bool(r["paused"] or r["latched"])
            st = self.states.get(r["rule_id"])
            r["latched_since"] = None if st is None or not st.get("paused") else st.get("since")
        return {**base, "paused": bool(self.pausing_rules), "pausing_rules": list(
            self.pausing_rules), "dosing_allowed": self.dosing_allowed,
            "enrolment_allowed": self.enrolment_allowed, "latched": list(self.latched),
            "error": self.error}  # fmt: skip


def safety_status(*, at: _dt.datetime | None = None) -> StoreSafetyStatus:
    """Evaluate the protocol's stopping rules on the store's records as of ``at`` (default
    now) with the store's latched pauses (a latch counts from its start: one that began after
    ``at`` was not in force then). Writes nothing."""
    proto = active_protocol()
    if proto.safety is None:
        return StoreSafetyStatus(None)
    return _status(proto, _safety_data(proto), at or timezone.now(), _rule_states())


def _safety_data(proto: Any, exclude: Administration | int | None = None
                 ) -> ps.SafetyData | ps.SafetyDataError:  # fmt: skip
    """The store's safety records (:func:`hepatrial.trials.selectors.safety_data`), or why
    they cannot be read; ``exclude`` (an administration or its pk): that administration left
    out — the dosing gate judging a correction of it (the facts before it was given)."""
    try:
        data = selectors.safety_data(proto)
    except ps.SafetyDataError as e:
        return e
    if exclude is not None:
        skip = f"ADM-{getattr(exclude, 'pk', exclude)}"
        data = replace(data, administrations=tuple(
            a for a in data.administrations if a.id != skip))
    return data


def _rule_states() -> dict[str, StoppingRuleState]:
    return {s.rule_id: s for s in StoppingRuleState.objects.order_by("rule_id")}


def _status(proto: Any, data: ps.SafetyData | ps.SafetyDataError, at: _dt.datetime,
            states: Mapping[str, StoppingRuleState]) -> StoreSafetyStatus:  # fmt: skip
    """The rules on ``data`` as of ``at`` with the latches of ``states`` started by then."""
    latched = tuple(k for k, s in states.items() if s.paused and (s.since is None or s.since <= at))
    info = {k: {"paused": s.paused, "since": s.since.isoformat() if s.since else None,
                "resumed_by": s.resumed_by_id} for k, s in states.items()}  # fmt: skip
    try:
        if isinstance(data, ps.SafetyDataError):
            raise data
        ev = ps.evaluate_stopping_rules(proto, data, at)
    except ps.SafetyDataError as e:
        return StoreSafetyStatus(None, latched, f"the stopping rules cannot be evaluated: {e}",
                                 info)
    known = {r.rule_id for r in ev.rules}
    return StoreSafetyStatus(ev, tuple(r for r in latched if r in known), None, info)


def refresh_safety_status(*, user: Any = None) -> StoreSafetyStatus:
    """Evaluate the stopping rules now, latch every newly pausing rule (audited state row) and
    write the due notifications: stopping rule triggered, SAE, SUSAR, death, overdue report
    (each once). Call it after every write that can change the answer (adverse event,
    administration, lab, death/status, DSMB decision), inside the writer's transaction."""
    user = acting_user(user)
    st = safety_status()
    if st.evaluation is None:
        return st
    with transaction.atomic():
        states = {s.rule_id: s for s in StoppingRuleState.objects.select_for_update()}
        known = _notified()
        changed = False
        for r in st.evaluation.rules:
            if r.kind == "sentinel" or not r.paused:
                continue
            s = states.get(r.rule_id)
            if s is not None and s.paused:
                continue
            first = s is None
            if s is None:
                s = StoppingRuleState(rule_id=r.rule_id, kind=r.kind)
            s.paused, s.since, s.reasons, s.resumed_by = True, r.since, list(r.reasons), None
            s.save(user=user, reason=None if first else f"paused again: {'; '.join(r.reasons)}")
            changed = True
            _notify(f"stopping_rule_triggered:{r.rule_id}:{r.since.isoformat() if r.since else ''}",
                    "stopping_rule_triggered",
                    f"[hepatrial] Stopping rule {r.rule_id} pauses enrolment and dosing",
                    _rule_text(r, "paused enrolment and dosing"), rule_id=r.rule_id, user=user,
                    known=known)
        _notify_cases(user, known)
    return safety_status() if changed else st


def _refresh_quietly(user: Any) -> None:
    """:func:`refresh_safety_status` for a data write: a record is never refused because the
    rules cannot be evaluated (the error shows in ``safety status`` and pauses dosing)."""
    try:
        with transaction.atomic():
            refresh_safety_status(user=user)
    except ps.SafetyDataError:  # pragma: no cover - safety_status catches it already
        pass


def _rule_text(r: ps.RuleStatus, what: str) -> str:
    since = r.since.isoformat() if r.since else "now"
    lines = [f"Stopping rule {r.rule_id} ({r.kind}) {what} since {since}.", "", r.text, ""]
    lines += [f"- {x}" for x in r.reasons]
    lines += ["", "Only a signed DSMB decision resumes it: hepatrial safety resume "
              f"{r.rule_id} --decision TEXT --user NAME --password-stdin"]
    return "\n".join(lines) + "\n"


def dosing_pause(participant: Participant | str | None = None, *,
                 at: _dt.datetime | None = None,
                 exclude: Administration | int | None = None) -> DosingPause | None:  # fmt: skip
    """The pause the dosing gate must respect (:class:`hepatrial.protocol.dosing.DosingPause`
    naming every pausing rule and why), or None when dosing is allowed.

    Judged as of ``at``, the time the cells are (or were) given (default now): the gate judges
    what was in force when the product was given, so a back-dated administration meets the
    rules as they stood on its date, not as they stand today.

    * In force at ``at``: every rule the evaluator finds pausing on the records known by
      ``at`` (administrations dated on or before ``at``'s day in the trial's time zone, DSMB
      decisions dated by ``at``, adverse events with their onset and their recording by
      ``at``) and every pause the store latched with a start on or before ``at``. So a pause
      resumed since still refuses a dose dated while it was in force.
    * In force now and the dose within it: a stopping rule pausing now also refuses a dose
      dated after its evidence happened — the rule pauses as of ``at`` on the clinical dates
      (onset of the adverse events, date of death, lab dates; not when they were recorded).
      A pause latched now whose evidence all dates from after ``at`` does not refuse the dose
      (the cells were given before anything that paused the trial happened).
    * The sentinel rule (e.g. SR-SENTINEL: a minimum interval after the previous participant's
      first dose, and a review recorded as a DSMB ``resume`` on the rule between that dose's
      day and ``at``) is judged as of ``at`` only, and only for the participant's first
      administration: a ``participant`` dosed on or before ``at``'s day (by another
      administration than ``exclude``) is not subject to it. Administrations dated after
      ``at`` do not count, neither as the previous participant's dose nor as this one's.
    * ``exclude``: the administration being corrected (the update path) is left out of the
      data, so a correction is judged on the facts before it was given.

    Rules that cannot be evaluated pause dosing (fail safe)."""
    proto = active_protocol()
    if proto.safety is None:
        return None
    now = timezone.now()
    when = at or now
    data, states = _safety_data(proto, exclude), _rule_states()
    st = _status(proto, data, when, states)
    if st.error is not None or isinstance(data, ps.SafetyDataError):
        return DosingPause(rule="stopping rules", reason=str(st.error))
    pausing: dict[str, StoreSafetyStatus] = dict.fromkeys(st.pausing_rules, st)
    if when < now:
        st_now = _status(proto, data, now, states)
        if st_now.error is not None:
            return DosingPause(rule="stopping rules", reason=st_now.error)
        # pausing now, not at ``when``: refuses the dose if it pauses at ``when`` on the
        # clinical dates (evaluated only when there is such a rule: the common case has none)
        late = [rid for rid in st_now.pausing_rules
                if rid not in pausing and st_now.rule(rid).kind != "sentinel"]
        if late:
            clinical = replace(
                data, adverse_events=tuple(replace(x, recorded_at=None)
                                           for x in data.adverse_events),
                deaths=tuple(replace(x, recorded_at=None) for x in data.deaths))
            then = {r.rule_id for r in ps.evaluate_stopping_rules(proto, clinical, when).rules
                    if r.paused}
            pausing.update((rid, st_now) for rid in late if rid in then)
    rules = [r.rule_id for r in st.rules if r.rule_id in pausing]
    if participant is not None and rules:
        sid = _participant(participant).study_id
        day = when.astimezone(proto.safety.reporting.tz).date()
        if any(a.participant_id == sid and a.date <= day for a in data.administrations):
            rules = [r for r in rules if st.rule(r).kind != "sentinel"]
    return _pause(pausing, rules, at=at, now_found=[r for r in rules if pausing[r] is not st])


def enrolment_pause(*, at: _dt.datetime | None = None) -> DosingPause | None:
    """The pause the enrolment service must respect (the stopping rules that pause enrolment:
    every kind but the sentinel dosing gate), or None when enrolment is allowed."""
    st = safety_status(at=at)
    if st.error is not None:
        return DosingPause(rule="stopping rules", reason=st.error)
    return _pause(st, list(st.enrolment_pausing_rules))


def _pause(sts: StoreSafetyStatus | Mapping[str, StoreSafetyStatus], rules: list[str], *,
           at: _dt.datetime | None = None, now_found: Iterable[str] = ()
           ) -> DosingPause | None:  # fmt: skip
    """The pause naming ``rules``, each with its status (``sts``: one status, or the status
    each rule was found pausing in); ``now_found``: rules pausing now whose evidence dates
    from before the dose at ``at`` (named so)."""
    late = set(now_found)
    if not rules:
        return None
    parts = []
    for rid in rules:
        st = sts if isinstance(sts, StoreSafetyStatus) else sts[rid]
        r = st.rule(rid)
        why = r.reasons[0] if r.reasons and r.paused else (
            "paused until a signed DSMB decision resumes it" if rid in st.latched else "")
        if rid in late and at is not None:
            why = (f"{why}; " if why else "") + ("in force now, and its evidence dates from "
                                                 f"before this dose of {at.isoformat()}")
        text = r.text + (f" ({why})" if why else "")
        parts.append(text if len(rules) == 1 else f"{rid}: {text}")
    return DosingPause(rule=", ".join(rules), reason="; ".join(parts))


def _decision_time(value: Any, rule_id: Any, decision: Any, now: _dt.datetime) -> _dt.datetime:
    """The time a DSMB decision is dated (``at``): an aware datetime not in the future, not
    before the latest decision recorded on the rule, and — for a resume — not before the
    latched pause it lifts began (a resume dated earlier would lift a pause it never saw)."""
    what = f"DSMB decision on {rule_id!r}" if isinstance(rule_id, str) else "DSMB decision"
    c = Checker(what)
    t = aware_datetime(c, "decided_at", value, now=now)
    c.done()
    assert t is not None
    problems = []
    latest = max((selectors.dsmb_decided_at(d) for d in DSMBDecision.objects.filter(
        rule_id=rule_id)), default=None)
    if latest is not None and t < latest:
        problems.append(Problem(what, "decided_at", f"{t.isoformat()} is before the latest "
                                f"decision recorded on {rule_id} ({latest.isoformat()}): "
                                "decisions on a rule are recorded in their order"))
    state = StoppingRuleState.objects.filter(rule_id=rule_id, paused=True).first()
    if (decision in _RESUMES and state is not None and state.since is not None
            and t < state.since):
        problems.append(Problem(what, "decided_at", f"{t.isoformat()} is before the pause of "
                                f"{rule_id} began ({state.since.isoformat()}): a decision "
                                "dated then cannot resume it"))
    if problems:
        raise RuleViolation(problems)
    return t


def record_dsmb_decision(*, rule_id: str, decision: str, reason: str, user: Any,
                         password: str | None, meaning: str | None = None,
                         at: Any = None) -> DSMBDecision:
    """Sign and record a DSMB decision on a stopping rule (``dsmb_decide``; rules:
    :func:`hepatrial.trials.validators.sae.validate_dsmb_decision`). ``resume`` /
    ``resume_modified`` lift the rule's pause (the latch and, for the evaluator, all evidence
    before the decision); ``terminate`` latches it for good. Notifies the resumption.

    ``at``: when the DSMB decided (its meeting or review; an aware datetime, default now),
    e.g. the sentinel review entered after the meeting: the rules are judged as of then (a
    resume needs the rule pausing then), the decision counts from then for the stopping rules
    (stored as ``rule_status["decided_at"]``, read by
    :func:`hepatrial.trials.selectors.safety_data`), and the signature keeps the time it was
    signed (``signed_at``). Refused in the future, before the latest decision recorded on the
    rule, or (a resume) before the latched pause began."""
    decided = None if at is None else _decision_time(at, rule_id, decision, timezone.now())
    st = safety_status(at=decided)
    if st.error is not None:
        raise StoreError(st.error)
    terminated = {d.rule_id: f"DSMB-{d.pk}" for d in DSMBDecision.objects.filter(
        decision="terminate")}
    facts = DsmbDecisionFacts(rules=tuple(r.rule_id for r in st.rules),
                              pausing=st.pausing_rules, terminated=terminated)
    ok = validate_dsmb_decision({"rule_id": rule_id, "decision": decision, "reason": reason},
                                facts)
    acting, role = _signer(user, "dsmb_decide", None)
    check_signing_password(acting, password)
    r = st.rule(ok["rule_id"])
    snapshot = {**r.as_dict(), "latched": ok["rule_id"] in st.latched}
    if decided is not None:
        snapshot["decided_at"] = decided.isoformat()
    label = dict(vocab.DSMB_DECISION)[ok["decision"]]
    with transaction.atomic():
        state = StoppingRuleState.objects.select_for_update().filter(rule_id=r.rule_id).first()
        d = DSMBDecision(rule_id=r.rule_id, decision=ok["decision"], reason=ok["reason"],
                         rule_status=snapshot,
                         **_signature(acting, role, meaning or f"DSMB decision on {r.rule_id}: "
                                      f"{label}", [state] if state is not None else []))
        d.save(user=acting)
        if ok["decision"] in _RESUMES or ok["decision"] == "terminate":
            if state is None:
                state = StoppingRuleState(rule_id=r.rule_id, kind=r.kind)
            resumed = ok["decision"] in _RESUMES
            state.paused = not resumed
            state.resumed_by = d if resumed else None
            state.since = state.since if state.pk else r.since
            state.reasons = [f"{'resumed' if resumed else 'terminated'} by DSMB decision "
                             f"DSMB-{d.pk}: {ok['reason']}"]
            state.save(user=acting, reason=state.reasons[0] if state.pk else None)
        if ok["decision"] in _RESUMES:
            _notify(f"stopping_rule_resumed:{r.rule_id}:DSMB-{d.pk}", "stopping_rule_resumed",
                    f"[hepatrial] Stopping rule {r.rule_id} resumed by the DSMB",
                    f"The DSMB resumed stopping rule {r.rule_id} ({label}) on "
                    f"{selectors.dsmb_decided_at(d).isoformat()}, signed by {d.printed_name}"
                    f"{'' if decided is None else ' on ' + d.signed_at.isoformat()}."
                    "\n\nReason: "
                    f"{ok['reason']}\n\n{r.text}\n", rule_id=r.rule_id, user=acting)
        _refresh_quietly(acting)
    return d


def resume_stopping_rule(rule_id: str, *, decision: str, user: Any, password: str | None,
                         modified: bool = False, at: Any = None) -> DSMBDecision:
    """Resume a paused stopping rule by a signed DSMB decision whose text (``decision``) is
    its reason (``hepatrial safety resume``); ``modified``: resume with a protocol
    modification; ``at``: when the DSMB decided (default now; see
    :func:`record_dsmb_decision`)."""
    return record_dsmb_decision(rule_id=rule_id, decision="resume_modified" if modified
                                else "resume", reason=decision, user=user, password=password,
                                at=at)


# ============================================================================ notifications
def _addresses(code: str, participant: Participant | None) -> list[str]:
    from django.contrib.auth import get_user_model

    out = list(getattr(settings, "HEPATRIAL_SAFETY_RECIPIENTS", {}).get(code, []))
    if code in vocab.codes(vocab.ROLES):
        qs = get_user_model().objects.filter(is_active=True, trial_profile__role=code).exclude(
            email="")
        if participant is not None and code in SITE_ROLES:
            qs = qs.filter(site_memberships__site_id=participant.site_id)
        out += list(qs.values_list("email", flat=True))
    return sorted(set(out))


def _notify(key: str, event: str, subject: str, body: str, *,
            participant: Participant | None = None, ae: AdverseEvent | None = None,
            rule_id: str = "", user: Any = None,
            known: set[str] | None = None) -> SafetyNotification | None:  # fmt: skip
    """Write the notification ``key`` once (and send it when the transaction commits);
    ``known``: the keys already written, read once by a caller that writes many
    (:func:`_notified`); else the store is asked for this key."""
    key = key[:200]  # as stored (the column's length), so that the test below finds it
    if (key in known if known is not None else
            SafetyNotification.objects.filter(key=key).exists()):
        return None
    plan = _plan()
    roles = plan.recipients(event) if plan is not None else ()
    if not roles:
        return None
    if known is not None:
        known.add(key)
    recipients = {code: _addresses(code, participant) for code in roles}
    to = sorted({a for v in recipients.values() for a in v})
    n = SafetyNotification(
        key=key, event=event, subject=subject[:300], body=body, recipients=recipients,
        status=NotificationStatus.PENDING if to else NotificationStatus.NO_ADDRESS,
        backend=str(settings.EMAIL_BACKEND)[:200], participant=participant, adverse_event=ae,
        rule_id=rule_id)
    n.save(user=_user(user))
    if to:
        pk = n.pk
        transaction.on_commit(lambda: _deliver(pk))
    return n


def _deliver(pk: int) -> None:
    from django.core.mail import EmailMessage

    n = SafetyNotification.objects.filter(pk=pk).first()
    if n is None or n.status != NotificationStatus.PENDING:
        return
    to = sorted({a for v in n.recipients.values() for a in v})
    if n.backend.endswith("dummy.EmailBackend"):
        n.status, n.error = NotificationStatus.FAILED, (
            "no e-mail backend is configured (HEPATRIAL_EMAIL_BACKEND): not sent")
    else:
        try:
            EmailMessage(n.subject, n.body, settings.DEFAULT_FROM_EMAIL, to).send()
        except Exception as e:  # any delivery failure is recorded, not raised
            n.status, n.error = NotificationStatus.FAILED, f"{type(e).__name__}: {e}"
        else:
            n.status, n.sent_at = NotificationStatus.SENT, timezone.now()
    with transaction.atomic():
        n.save(user=system_user(), reason=f"delivery: {n.status}"
               + (f" ({n.error})" if n.error else ""))


def deliver_pending() -> int:
    """Send every notification still pending (e.g. after a crash between the write and the
    send); returns how many were tried."""
    pks = list(SafetyNotification.objects.filter(status=NotificationStatus.PENDING)
               .order_by("pk").values_list("pk", flat=True))
    for pk in pks:
        _deliver(pk)
    return len(pks)


def _local(t: _dt.datetime | None) -> str:
    if t is None:
        return "-"
    plan = _plan()
    tz = plan.reporting.tz if plan is not None else _dt.UTC
    return (f"{t.astimezone(tz).strftime('%Y-%m-%d %H:%M')} {tz} "
            f"({t.astimezone(_dt.UTC).strftime('%Y-%m-%d %H:%M')} UTC)")


def _ae_text(ae: AdverseEvent) -> str:
    crit = ", ".join(ae.seriousness_criteria or []) or "-"
    proc = f" ({ae.procedure})" if ae.procedure else ""
    return (f"Adverse event {selectors.ae_record_id(ae.pk)} of participant "
            f"{ae.participant.study_id}: {ae.label}, CTCAE grade {ae.grade}"
            + (f" ({ae.grade_definition})" if ae.grade_definition else "")
            + f"\nSystem organ class: {ae.soc or 'not coded'}; MedDRA {ae.meddra_code or '-'}"
            f"\nOnset {ae.onset_date}; outcome {ae.outcome}; action taken "
            f"{ae.action_taken or '-'}\nSerious: {'yes' if ae.serious else 'no'} (criteria: "
            f"{crit})\nRelatedness: product {ae.relatedness_product or ae.relatedness}, "
            f"procedure{proc} {ae.relatedness_procedure or '-'}\nExpectedness: product "
            f"{ae.expectedness_product or '-'}, procedure {ae.expectedness_procedure or '-'}"
            f"\nSite aware: {_local(ae.aware_at)}\n")


def _notified() -> set[str]:
    """The keys of the notifications written (:func:`_notify`'s ``known``)."""
    return set(SafetyNotification.objects.values_list("key", flat=True))


def _notify_cases(user: Any, known: set[str]) -> None:
    now = timezone.now()
    for case in selectors.sae_cases(_plan(), now):
        ae = case["adverse_event"]
        rid = case["id"]
        dues = "".join(f"- {r['kind']}: due {_local(r['deadline'])}: {r['status']}\n"
                       for r in case["reports"])
        _notify(f"sae:{rid}", "sae", f"[hepatrial] Serious adverse event {rid} "
                f"({ae.participant.study_id}: {ae.label}, grade {ae.grade})",
                _ae_text(ae) + "\nReports due:\n" + (dues or "- none (no awareness time)\n"),
                participant=ae.participant, ae=ae, user=user, known=known)
        if case["susar"]:
            _notify(f"susar:{rid}", "susar", f"[hepatrial] SUSAR {rid} "
                    f"({ae.participant.study_id}: {ae.label}, grade {ae.grade})",
                    _ae_text(ae) + "\nSuspected unexpected serious adverse reaction (serious, "
                    "suspected of the product, unexpected against the reference safety "
                    "information).\nReports due:\n" + dues, participant=ae.participant, ae=ae,
                    user=user, known=known)
        for r in case["reports"]:
            if r["status"] == "overdue":
                _notify(f"report_overdue:{rid}:{r['kind']}:{r['deadline'].isoformat()}",
                        "report_overdue", f"[hepatrial] Overdue {r['kind']} report of {rid}",
                        f"The {r['kind']} report of {rid} was due {_local(r['deadline'])} "
                        f"({r['basis']}; {r['source']}).\n\n" + _ae_text(ae),
                        participant=ae.participant, ae=ae, user=user, known=known)
    for p in Participant.objects.filter(status=ParticipantStatus.DIED).order_by("study_id"):
        _notify(f"death:{p.study_id}", "death", f"[hepatrial] Death of participant {p.study_id}",
                f"Participant {p.study_id} died on {p.status_date} ({p.status_reason}).\n",
                participant=p, user=user, known=known)


# ============================================================================ lab proposals
def propose_lab_adverse_events(participant: Participant | str, *,
                               user: Any = None) -> list[LabAEProposal]:  # fmt: skip
    """Propose an adverse event for every CTCAE lab grade of ``participant`` that rose from
    baseline (:func:`hepatrial.trials.validators.adverse_event.lab_grade_rises` on the store's
    labs of the analytes :data:`hepatrial.protocol.ctcae_terms.LAB_TERMS` grades, baseline =
    the protocol's baseline visit); a proposal whose lab was since corrected so that it no
    longer rises is withdrawn. Each (lab, grade) is proposed once. Returns the new proposals.

    Call it after every lab write (``record_lab``/``update_lab``/imports) and on demand
    (``hepatrial safety scan``)."""
    from hepatrial.protocol.ctcae_terms import LAB_TERMS, lab_term

    p = _participant(participant)
    user = acting_user(user)
    base_code = active_protocol().baseline_visit.code
    labs = list(LabResult.objects.filter(participant=p, analyte__in=list(LAB_TERMS))
                .select_related("visit").order_by("visit__nominal_day", "visit__code", "pk"))
    wanted: dict[tuple[int, int], tuple[LabResult, int, int]] = {}
    for analyte in LAB_TERMS:
        rows = [x for x in labs if x.analyte == analyte]
        base = next((x for x in rows if x.visit.code == base_code), None)
        if base is None:
            continue
        post = [(x, x.value) for x in rows if x.visit.nominal_day > base.visit.nominal_day]
        for lab, g, bg in lab_grade_rises(analyte, base.value, post):
            wanted[(lab.pk, g)] = (lab, g, bg)
    new: list[LabAEProposal] = []
    with transaction.atomic():
        existing = {(x.lab_id, x.grade): x for x in LabAEProposal.objects.filter(participant=p)}
        base_of = {x.analyte: x for x in labs if x.visit.code == base_code}
        for key, (lab, g, bg) in sorted(wanted.items()):
            if key in existing:
                continue
            t = lab_term(lab.analyte)
            b = base_of[lab.analyte]
            prop = LabAEProposal(
                participant=p, lab=lab, analyte=lab.analyte, term=t.term,
                meddra_code=t.meddra_code, visit_code=lab.visit.code,
                specimen_date=lab.specimen_date or lab.visit.actual_date, value=lab.value,
                unit=lab.unit, grade=g, baseline_value=b.value, baseline_grade=bg,
                reference=dict(LAB_REFERENCE[lab.analyte]))
            prop.save(user=user)
            new.append(prop)
        for key, prop in existing.items():
            if prop.status == ProposalStatus.PROPOSED and key not in wanted:
                prop.status = ProposalStatus.WITHDRAWN
                prop.reason = (f"lab {prop.analyte} at {prop.visit_code} corrected: it is no "
                               f"longer grade {prop.grade} above the baseline grade")
                prop.save(user=user, reason=prop.reason)
    return new


def _proposal(ref: LabAEProposal | int | str) -> LabAEProposal:
    pk = ref.pk if isinstance(ref, LabAEProposal) else ref
    prop = LabAEProposal.objects.select_related("participant").filter(
        pk=int(str(pk).removeprefix("LAB-"))).first() if str(pk).removeprefix(
        "LAB-").isdigit() else None  # fmt: skip
    if prop is None:
        raise NotFoundError(f"lab AE proposal {ref!r} does not exist")
    return prop


def confirm_lab_proposal(proposal: LabAEProposal | int | str, *, user: Any,
                         **values: Any) -> AdverseEvent:  # fmt: skip
    """Confirm a proposal as an adverse event (``review_lab_ae``): term, grade (default the
    proposal's) and onset (default the specimen date) from the proposal, the rest from
    ``values`` (as :func:`record_adverse_event`), judged by the adverse-event rules."""
    prop = _proposal(proposal)
    if prop.status != ProposalStatus.PROPOSED:
        raise StoreError(f"lab AE proposal {prop.pk} is {prop.status}: only a proposed one "
                         "can be confirmed")
    acting, _role = _signer(user, "review_lab_ae", prop.participant)
    values = {"term": prop.term, "grade": prop.grade, "onset_date": prop.specimen_date,
              **values}  # fmt: skip
    with transaction.atomic():
        ae = record_adverse_event(participant=prop.participant, user=acting, **values)
        prop.status, prop.adverse_event = ProposalStatus.CONFIRMED, ae
        prop.decided_by, prop.decided_at = acting, timezone.now()
        prop.reason = f"confirmed as adverse event {selectors.ae_record_id(ae.pk)}"
        prop.save(user=acting, reason=prop.reason)
    return ae


def dismiss_lab_proposal(proposal: LabAEProposal | int | str, *, reason: str,
                         user: Any) -> LabAEProposal:  # fmt: skip
    """Dismiss a proposal with the investigator's reason (``review_lab_ae``)."""
    prop = _proposal(proposal)
    why = require_reason(reason, f"dismissing lab AE proposal {prop.pk}")
    if prop.status != ProposalStatus.PROPOSED:
        raise StoreError(f"lab AE proposal {prop.pk} is {prop.status}: only a proposed one "
                         "can be dismissed")
    acting, _role = _signer(user, "review_lab_ae", prop.participant)
    with transaction.atomic():
        prop.status, prop.reason = ProposalStatus.DISMISSED, why
        prop.decided_by, prop.decided_at = acting, timezone.now()
        prop.save(user=acting, reason=f"dismissed: {why}")
    return prop
