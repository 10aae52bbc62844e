"""The cell product vein to vein: one service for every step of a batch's lifecycle.

Every step is precondition-checked by the pure state machine
(:func:`hepatrial.protocol.product_lifecycle.check_transition`) applied **under a row lock**
— the audit-ledger lock first (the store's one lock order; ``pg_advisory_xact_lock`` on
PostgreSQL, the ``BEGIN IMMEDIATE`` write lock on SQLite), then ``SELECT ... FOR UPDATE`` of
the batch row, then the batch is read again — and stored as an append-only
:class:`~hepatrial.trials.models.product.CustodyEvent` (who, when, where, temperature, the
scanned id): the chain of custody, in the audit ledger like every record. A refused step
raises :class:`ProductStepRefused` naming **every** unmet condition and writes nothing.

The lifecycle (``hepatrial.protocol.product_lifecycle.STATE_DIAGRAM``)::

    record_harvest ........................ (harvested; the chain-of-identity id is made)
    register_batch ........ receive ....... harvested -> received (receipt at the facility)
    start_manufacture ..... start_manufacture ......... received -> in_manufacture
    record_manufacturing_step, record_qc_result (data; no state change)
    complete_manufacture .. complete_manufacture ...... in_manufacture -> qc
    submit_for_review ..... submit_for_review ......... qc -> qa_review
    release_batch ......... release (QA e-signature) .. qa_review -> released
    release_batch_exceptionally (QA + investigator) ... qa_review -> exceptional_release
    dispatch_batch ........ dispatch .................. released* -> dispatched
    receive_at_bedside .... receive_at_bedside ........ dispatched -> received_at_bedside
    record_administration . administer (dosing gate) .. received_at_bedside -> administered
    quarantine_batch, investigate_batch, resume_batch, return_batch, destroy_batch

Who may do what (:mod:`.permissions`): harvest, bedside receipt, administration and
observations ``administer_product`` (coordinator, investigator); receipt at the facility,
manufacture, QC, dispatch, quarantine, investigation and return ``manage_product`` (QA, data
manager); release, resumption and destruction ``release_product`` (QA), each on the
participant's site; the system account (CLI and import writes without ``--user``) may do
everything but sign, so it can never release.

**The dosing gate** runs on every write of an administration (create and correction):
:func:`record_administration` and :func:`update_administration` call
:func:`hepatrial.trials.validators.administration.validate_administration` with the batch,
the participant and the safety pause as stored (see :func:`_administration_facts`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from hepatrial.errors import StoreError
from hepatrial.protocol.dosing import DosingPause, GateBatch, GateParticipant
from hepatrial.protocol.product_lifecycle import (
    RELEASE_STATES,
    Action,
    Decision,
    Deviation,
    Facts,
    Signature,
    State,
    TemperatureReading,
    Unmet,
    check_transition,
)
from hepatrial.trials.audit.bulk import bulk_create as audit_bulk_create
from hepatrial.trials.audit.chain import _canon, _dumps, head, lock_ledger
from hepatrial.trials.models import (
    AuditLedger,
    ClinicalAssessment,
    DeviationCategory,
    EligibilityAssessment,
    Participant,
    ProtocolDeviation,
)
from hepatrial.trials.models.product import (
    Administration,
    BatchRelease,
    CellProductBatch,
    CustodyEvent,
    Harvest,
    InProcessControlResult,
    ManufacturingStep,
    PostInfusionObservation,
    ProductSignature,
    QcResult,
)
from hepatrial.trials.services._common import _participant, _site
from hepatrial.trials.services.accounts import (
    acting_user,
    check_signing_password,
    printed_name_of,
)
from hepatrial.trials.services.measurements import _reason_for
from hepatrial.trials.services.permissions import require_permission, role_of
from hepatrial.trials.services.protocol import active_protocol
from hepatrial.trials.validators import Problem, RuleViolation
from hepatrial.trials.validators.administration import (
    AdministrationFacts,
    validate_administration,
)
from hepatrial.trials.validators.product import (
    BatchFacts,
    HarvestFacts,
    ObservationFacts,
    QcFacts,
    StepFacts,
    aware_datetime,
    validate_batch,
    validate_harvest,
    validate_observation,
    validate_qc,
    validate_step,
)

__all__ = [
    "ProductStepRefused",
    "check_administration",
    "check_qc_result",
    "complete_manufacture",
    "destroy_batch",
    "dispatch_batch",
    "dosing_pause",
    "investigate_batch",
    "patient_identifiers",
    "product_signature_status",
    "quarantine_batch",
    "receive_at_bedside",
    "record_administration",
    "record_harvest",
    "record_manufacturing_step",
    "record_observation",
    "record_qc_result",
    "record_qc_results",
    "register_batch",
    "release_batch",
    "release_batch_exceptionally",
    "release_batches",
    "resume_batch",
    "return_batch",
    "start_manufacture",
    "submit_for_review",
    "update_administration",
    "update_qc_result",
]

S, A = State, Action


class ProductStepRefused(StoreError):
    """A lifecycle step refused by the state machine: ``unmet`` lists every unmet condition
    (:class:`~hepatrial.protocol.product_lifecycle.Unmet`: ``condition``, ``reason``)."""

    def __init__(self, batch: str, decision: Decision) -> None:
        self.batch_id = batch
        self.decision = decision
        self.unmet = decision.unmet
        super().__init__(f"batch {batch}: {decision.message()}")


def _product() -> Any:
    return active_protocol().product


def _now() -> _dt.datetime:
    return timezone.now().astimezone(_dt.UTC)


def _when(value: Any, what: str, *, default_now: bool = True) -> _dt.datetime:
    """A step's time: aware, not in the future (default: now)."""
    from hepatrial.trials.validators._common import Checker

    if value is None and default_now:
        return _now()
    c = Checker(what)
    t = aware_datetime(c, "at", value, now=_now())
    c.done()
    assert t is not None
    return t


def _username(user: Any) -> str:
    return str(user.get_username())


def patient_identifiers(p: Participant) -> dict[str, str]:
    """The identifiers on a participant's record that a label prints and the bedside checks
    (at least two: FDA CAR-T draft guidance 2022): the study id and the year of birth (the
    store keeps no name or date of birth of a pseudonymised participant)."""
    return {"study_id": p.study_id, "year_of_birth": str(p.year_of_birth)}


def _history_label(model: type) -> str:
    return model.history.model._meta.label_lower  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- locking, events
def _lock_batch(batch: CellProductBatch | str) -> CellProductBatch:
    """The batch row, locked for this transaction (ledger lock first, then the row)."""
    lock_ledger()
    bid = batch.batch_id if isinstance(batch, CellProductBatch) else str(batch)
    b = (
        CellProductBatch.objects.select_for_update()
        .filter(batch_id=bid)
        .first()
    )
    if b is None:
        from hepatrial.errors import NotFoundError

        raise NotFoundError(f"batch {bid!r} does not exist")
    return CellProductBatch.objects.select_related("participant", "participant__site",
                                                   "harvest").get(pk=b.pk)


def _last_event(harvest_id: int) -> CustodyEvent | None:
    return CustodyEvent.objects.filter(harvest_id=harvest_id).order_by("-seq").first()


def _append_event(
    *, participant: Participant, harvest: Harvest, batch: CellProductBatch | None, action: str,
    from_state: str, to_state: str, at: _dt.datetime, user: Any, location: str = "",
    temperature_c: float | None = None, scanned_coi: str = "", reason: str = "",
    details: Mapping[str, Any] | None = None,
) -> CustodyEvent:
    last = _last_event(harvest.pk)
    ev = CustodyEvent(
        participant=participant, harvest=harvest, batch=batch,
        seq=1 if last is None else last.seq + 1, action=action, from_state=from_state,
        to_state=to_state, at=at, recorded_at=_now(), actor=user,
        actor_name=printed_name_of(user) if role_of(user) != "system" else _username(user),
        location=location or "", temperature_c=temperature_c, scanned_coi=scanned_coi or "",
        reason=reason or "", details=dict(details or {}),
    )  # fmt: skip
    ev.save(user=user, reason=f"custody: {action}")
    return ev


def _roles(user: Any) -> frozenset[str]:
    r = role_of(user)
    return frozenset({r}) if r else frozenset()


def _time_order(b: CellProductBatch, at: _dt.datetime) -> list[Unmet]:
    last = _last_event(b.harvest_id) if b.harvest_id else None
    if last is not None and at < last.at:
        return [Unmet("time_order", f"{at.isoformat()} is before the previous step "
                      f"({last.action} at {last.at.astimezone(_dt.UTC).isoformat()})")]
    return []


def _decide(b: CellProductBatch, action: Action, facts: Facts) -> Decision:
    """``check_transition`` on the batch's state, plus the store's own conditions (a batch
    without the lifecycle; the time order of the chain of custody)."""
    state = b.state
    extra: list[Unmet] = []
    if state is None:
        extra.append(Unmet("state", f"batch {b.batch_id} was registered before the product "
                           "lifecycle (no harvest, no state): it cannot take lifecycle steps"))
        state = S.RELEASED.value if b.released else S.QA_REVIEW.value
    d = check_transition(state, action, facts, _product())
    if facts.at is not None:
        extra += _time_order(b, facts.at)
    if extra:
        d = Decision(d.action, d.from_state, None, tuple(extra) + d.unmet, d.deviations)
    return d


def _transition(
    batch: CellProductBatch | str, action: Action, *, user: Any, permission: str,
    at: Any = None, facts: Mapping[str, Any] | None = None, location: str = "",
    temperature_c: float | None = None, scanned_coi: str | None = None, reason: str = "",
    details: Mapping[str, Any] | None = None,
    changes: Mapping[str, Any] | Callable[[CellProductBatch], Mapping[str, Any]] | None = None,
) -> CellProductBatch:
    """Apply one lifecycle step to a batch: lock, gather the facts, decide, write the custody
    event and the batch's new state (and ``changes``), or raise :class:`ProductStepRefused`."""
    acting = acting_user(user)
    when = _when(at, f"batch {getattr(batch, 'batch_id', batch)} {action.value}")
    with transaction.atomic():
        b = _lock_batch(batch)
        require_permission(acting, permission, participant=b.participant)
        f = _gather(b, when, acting, reason=reason, coi_scanned=scanned_coi, **dict(facts or {}))
        d = _decide(b, action, f)
        if not d.allowed:
            raise ProductStepRefused(b.batch_id, d)
        assert d.to_state is not None
        _record_deviations(b.participant, d.deviations, when, acting)
        _append_event(participant=b.participant, harvest=b.harvest, batch=b,
                      action=action.value, from_state=str(b.state), to_state=d.to_state.value,
                      at=when, user=acting, location=location, temperature_c=temperature_c,
                      scanned_coi=scanned_coi or "", reason=reason, details=details)
        old = b.state
        new = changes(b) if callable(changes) else (changes or {})
        b.state = d.to_state.value
        for k, val in new.items():
            setattr(b, k, val)
        b.save(user=acting, reason=f"{action.value}: {old} -> {b.state}")
    return b


def _record_deviations(p: Participant, deviations: Iterable[Deviation], at: _dt.datetime,
                       user: Any) -> list[ProtocolDeviation]:
    out = []
    for dev in deviations:
        pd_ = ProtocolDeviation(participant=p, category=dev.category, description=dev.description,
                                date=at.date(), major=dev.severity == "major",
                                detected_by="system")
        pd_.save(user=user)
        out.append(pd_)
    return out


# ---------------------------------------------------------------------- facts of a batch
def _latest_weight(p: Participant, on: _dt.date | None) -> tuple[float, _dt.date] | None:
    """The participant's latest weight recorded on or before ``on`` (kg, visit date)."""
    qs = ClinicalAssessment.objects.filter(participant=p, weight_kg__isnull=False,
                                           visit__actual_date__isnull=False)
    if on is not None:
        qs = qs.filter(visit__actual_date__lte=on)
    c = qs.select_related("visit").order_by("-visit__actual_date", "-pk").first()
    if c is None:
        return None
    return float(c.weight_kg), c.visit.actual_date


def _results(b: CellProductBatch) -> dict[str, Any]:
    return {q.test: q.value for q in QcResult.objects.filter(batch=b).order_by("test")}


def _steps(b: CellProductBatch) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in ManufacturingStep.objects.filter(batch=b).order_by("pk"):
        out[s.step] = {}
    for r in InProcessControlResult.objects.filter(batch=b).select_related("step"):
        out.setdefault(r.step.step, {})[r.control] = r.value
    return out


def _operators(b: CellProductBatch, user: Any) -> frozenset[str]:
    """Everyone who manufactured the batch: each step's operator and whoever recorded a step
    (as user names; an operator written as the releasing user's printed or full name counts
    as that user)."""
    names = {str(o).strip() for o in ManufacturingStep.objects.filter(batch=b)
             .values_list("operator", flat=True)}
    hist = ManufacturingStep.history.model.objects.filter(  # type: ignore[attr-defined]
        batch_id=b.pk, history_user__isnull=False)
    names |= set(hist.values_list("history_user__username", flat=True))
    own = {printed_name_of(user).strip().casefold(), (user.get_full_name() or "").strip()
           .casefold(), _username(user).casefold()} - {""}
    if any(n.casefold() in own for n in names):
        names.add(_username(user))
    return frozenset(n for n in names if n)


def _transit_readings(b: CellProductBatch) -> tuple[TemperatureReading, ...]:
    ev = (CustodyEvent.objects.filter(batch=b, action=A.RECEIVE_AT_BEDSIDE.value)
          .order_by("-seq").first())
    if ev is None:
        return ()
    out = []
    for at, c in (ev.details or {}).get("readings", []):
        out.append(TemperatureReading(_dt.datetime.fromisoformat(at), float(c)))
    return tuple(out)


def _gather(b: CellProductBatch, at: _dt.datetime, user: Any, **extra: Any) -> Facts:
    """The :class:`Facts` of a step of batch ``b`` from the store (plus ``extra``)."""
    h = b.harvest
    w = _latest_weight(b.participant, at.date())
    values: dict[str, Any] = {
        "at": at, "actor": _username(user), "actor_roles": _roles(user),
        "coi": h.coi if h is not None else (b.coi_identifier or None),
        "collected_at": h.collected_at if h is not None else None,
        "operators": _operators(b, user), "steps": _steps(b),
        "formulated_at": b.formulated_at, "results": _results(b),
        "weight_kg": w[0] if w else None,
        "transit_readings": _transit_readings(b),
        "quarantined_from": State(b.quarantined_from) if b.quarantined_from else None,
    }
    values.update({k: val for k, val in extra.items() if val is not None})
    return Facts(**values)


# ---------------------------------------------------------------------- harvest and batch
def record_harvest(
    *,
    participant: Participant | str,
    collected_at: Any,
    operator: str,
    volume_ml: Any,
    anticoagulant_lot: str = "",
    container: str = "",
    transport: str = "",
    collection_site: str = "",
    site: Any = None,
    user: Any = None,
) -> Harvest:
    """Record the collection of the starting material and make its chain-of-identity id
    (:func:`hepatrial.protocol.coi.make_coi`: site, collection date (UTC), the next sequence
    number of that site and date — unique, assigned under the ledger lock — and the
    participant binding, with its ISO/IEC 7064 MOD 37-2 check character). The first custody
    event of the chain (``harvest``) is written with it. ``site`` defaults to the
    participant's site."""
    from hepatrial.protocol.coi import make_coi

    acting = acting_user(user)
    with transaction.atomic():
        lock_ledger()
        p = _participant(participant)
        require_permission(acting, "administer_product", participant=p)
        s = p.site if site is None else _site(site)
        ok = validate_harvest(
            {"collected_at": collected_at, "operator": operator, "volume_ml": volume_ml,
             "anticoagulant_lot": anticoagulant_lot, "container": container,
             "transport": transport, "collection_site": collection_site},
            HarvestFacts(p.study_id, p.status, p.screening_date, s.code, _product()),
            now=_now(),
        )  # fmt: skip
        day = ok["collected_at"].date()
        last = (Harvest.objects.filter(site=s, collection_date=day).order_by("-sequence")
                .values_list("sequence", flat=True).first())
        seq = (last or 0) + 1
        if seq > 999:
            raise StoreError(f"site {s.code}: 999 harvests on {day} already (the chain-of-"
                             "identity id has three digits for the sequence)")
        coi = make_coi(s.code, p.study_id, day, seq)
        h = Harvest(participant=p, site=s, collection_date=day, sequence=seq, coi=coi, **ok)
        h.save(user=acting)
        _append_event(participant=p, harvest=h, batch=None, action="harvest", from_state="",
                      to_state=S.HARVESTED.value, at=ok["collected_at"], user=acting,
                      location=f"site {s.code}" + (f", {ok['collection_site']}"
                                                   if ok["collection_site"] else ""),
                      details={"volume_ml": str(ok["volume_ml"]), "operator": ok["operator"]})
    return h


def _harvest_by_coi(coi: Any) -> Harvest | None:
    if not isinstance(coi, str):
        return None
    return Harvest.objects.select_related("participant").filter(coi=coi.rstrip("\r\n")).first()


def register_batch(
    *,
    participant: Participant | str,
    coi: str,
    batch_id: str | None = None,
    facility: str = "",
    received_at: Any = None,
    receipt_temperature_c: float | None = None,
    volume_ml: Any = None,
    user: Any = None,
) -> CellProductBatch:
    """Register the batch made from a harvest at its receipt by the manufacturing facility:
    ``coi`` is the chain-of-identity id scanned (or typed) from the container. The receipt is
    the lifecycle's ``receive`` step (harvested -> received): the id valid and the harvest's,
    received within the protocol's hours of collection, at the transport temperature, the
    volume in the accepted range (``volume_ml``: as measured at receipt; default the harvested
    volume). ``batch_id`` defaults to ``B-`` + the chain-of-identity id. Refused (nothing
    written) with every unmet condition."""
    acting = acting_user(user)
    when = _when(received_at, f"participant {participant} batch receipt")
    with transaction.atomic():
        lock_ledger()
        p = _participant(participant)
        require_permission(acting, "manage_product", participant=p)
        h = _harvest_by_coi(coi)
        bid = batch_id if batch_id is not None else (f"B-{h.coi}" if h is not None else "")
        try:
            ok = validate_batch(
                {"batch_id": bid, "coi": coi, "facility": facility},
                BatchFacts(p.study_id, p.status,
                           h.participant.study_id if h is not None else None,
                           h is not None and CellProductBatch.objects.filter(harvest=h).exists(),
                           CellProductBatch.objects.filter(batch_id=str(bid).strip()).exists()),
            )  # fmt: skip
        except RuleViolation as exc:
            from hepatrial.protocol.coi import validate_coi

            check = validate_coi(coi) if isinstance(coi, str) else None
            if h is None and check is not None and not check.ok:
                exc.problems.append(Problem(f"participant {p.study_id} batch", "coi",
                                            check.reason))
                raise RuleViolation(exc.problems) from None
            raise
        assert h is not None
        vol = h.volume_ml if volume_ml is None else volume_ml
        f = Facts(at=when, actor=_username(acting), actor_roles=_roles(acting), coi=h.coi,
                  coi_scanned=coi, collected_at=h.collected_at,
                  volume_ml=float(vol) if vol is not None else None,
                  receipt_temperature_c=receipt_temperature_c)
        d = check_transition(S.HARVESTED, A.RECEIVE, f, _product())
        last = _last_event(h.pk)
        if last is not None and when < last.at:
            late = Unmet("time_order", f"{when.isoformat()} is before the harvest at "
                         f"{last.at.astimezone(_dt.UTC).isoformat()}")
            d = Decision(d.action, d.from_state, None, (late, *d.unmet))
        if not d.allowed:
            raise ProductStepRefused(ok["batch_id"], d)
        b = CellProductBatch(batch_id=ok["batch_id"], participant=p, coi_identifier=h.coi,
                             harvest=h, state=S.RECEIVED.value, facility=ok["facility"],
                             received_at=when)
        b.save(user=acting)
        _append_event(participant=p, harvest=h, batch=b, action=A.RECEIVE.value,
                      from_state=S.HARVESTED.value, to_state=S.RECEIVED.value, at=when,
                      user=acting, location=ok["facility"], temperature_c=receipt_temperature_c,
                      scanned_coi=coi, details={"volume_ml": str(vol)})
    return b


# ---------------------------------------------------------------------- manufacture
def start_manufacture(batch: CellProductBatch | str, *, at: Any = None, user: Any = None,
                      location: str = "") -> CellProductBatch:
    """received -> in_manufacture."""
    return _transition(batch, A.START_MANUFACTURE, user=user, permission="manage_product",
                       at=at, location=location)


def record_manufacturing_step(
    batch: CellProductBatch | str,
    *,
    step: str,
    started_at: Any,
    completed_at: Any,
    operator: str,
    reagents: Sequence[Mapping[str, Any]] = (),
    controls: Mapping[str, Any] | None = None,
    notes: str = "",
    user: Any = None,
) -> ManufacturingStep:
    """Record a manufacturing step of a batch in manufacture: who, when, the reagents and
    their lots, and the results of the step's in-process controls (a failing result is kept;
    :func:`complete_manufacture` refuses it)."""
    acting = acting_user(user)
    with transaction.atomic():
        b = _lock_batch(batch)
        require_permission(acting, "manage_product", participant=b.participant)
        if b.state != S.IN_MANUFACTURE.value:
            raise ProductStepRefused(b.batch_id, Decision(
                A.COMPLETE_MANUFACTURE, State(b.state or S.QA_REVIEW), None,
                (Unmet("state", f"manufacturing steps are recorded while the batch is in "
                       f"manufacture; it is {b.state}"),)))  # fmt: skip
        ok = validate_step(
            {"step": step, "started_at": started_at, "completed_at": completed_at,
             "operator": operator, "reagents": list(reagents), "controls": controls or {},
             "notes": notes},
            StepFacts(b.batch_id, _product(), b.received_at,
                      frozenset(ManufacturingStep.objects.filter(batch=b)
                                .values_list("step", flat=True))),
            now=_now(),
        )  # fmt: skip
        ctl = ok.pop("controls")
        s = ManufacturingStep(participant=b.participant, batch=b, **ok)
        s.save(user=acting)
        audit_bulk_create(InProcessControlResult, [
            InProcessControlResult(participant=b.participant, batch=b, step=s, control=name,
                                   value=value, value_as_entered=entered, unit=unit)
            for name, (value, entered, unit) in ctl.items()], user=acting)
    return s


def complete_manufacture(
    batch: CellProductBatch | str, *, formulated_at: Any, volume_ml: Any = None, at: Any = None,
    user: Any = None,
) -> CellProductBatch:
    """in_manufacture -> qc: every step of the protocol recorded with every in-process control
    met; the time of formulation (start of the shelf life) and the formulated volume (default
    the protocol's dose volume) are stored."""
    from hepatrial.trials.validators._common import Checker

    c = Checker(f"batch {getattr(batch, 'batch_id', batch)} formulation")
    f_at = aware_datetime(c, "formulated_at", formulated_at, now=_now())
    vol = None
    if volume_ml is not None:
        from hepatrial.trials.validators import _values as v

        vol = v.decimal(c, "volume_ml", volume_ml, max_digits=7, places=2, positive=True)
    c.done()
    if vol is None:
        vol = Decimal(str(_product().volume_ml)) if _product() is not None else None
    return _transition(batch, A.COMPLETE_MANUFACTURE, user=user, permission="manage_product",
                       at=at if at is not None else f_at, facts={"formulated_at": f_at},
                       changes={"formulated_at": f_at, "formulated_volume_ml": vol},
                       details={"formulated_at": f_at.isoformat() if f_at else None,
                                "volume_ml": str(vol) if vol is not None else None})


# ---------------------------------------------------------------------- QC
def _qc_facts(b: CellProductBatch) -> QcFacts:
    return QcFacts(b.batch_id, _product(),
                   b.harvest.collection_date if b.harvest_id else None, b.state)


def check_qc_result(
    batch: CellProductBatch | str, *, test: str, result: Any, analyst: str, tested_on: Any,
    unit: str | None = None, method: str = "", source: str = "entry",
) -> dict[str, Any]:
    """Judge a QC result without writing: the typed values, or ``RuleViolation``."""
    b = batch if isinstance(batch, CellProductBatch) else CellProductBatch.objects.select_related(
        "harvest").filter(batch_id=str(batch)).first()
    if b is None:
        from hepatrial.errors import NotFoundError

        raise NotFoundError(f"batch {batch!r} does not exist")
    return validate_qc({"test": test, "result": result, "unit": unit, "analyst": analyst,
                        "tested_on": tested_on, "method": method, "source": source},
                       _qc_facts(b))


def record_qc_result(
    batch: CellProductBatch | str,
    *,
    test: str,
    result: Any,
    analyst: str,
    tested_on: Any,
    unit: str | None = None,
    method: str = "",
    source: str = "entry",
    reason: str | None = None,
    user: Any = None,
) -> QcResult:
    """Record a QC (release-test) result: the value as entered and typed, in the
    specification's unit, with the analyst, date, method and source (``entry`` or the lab
    file). A test already recorded for the batch is a correction: its new value needs
    ``reason`` (the old one stays in the history; a release signature covering it then shows
    as invalidated)."""
    acting = acting_user(user)
    with transaction.atomic():
        b = _lock_batch(batch)
        require_permission(acting, "manage_product", participant=b.participant)
        ok = check_qc_result(b, test=test, result=result, analyst=analyst, tested_on=tested_on,
                             unit=unit, method=method, source=source)
        q = QcResult.objects.filter(batch=b, test=ok["test"]).first()
        if q is None:
            q = QcResult(participant=b.participant, batch=b, **ok)
            q.save(user=acting)
            return q
        old = {k: getattr(q, k) for k in ok}
        why = _reason_for(old, ok, reason, f"batch {b.batch_id} QC {q.test}")
        if why is not None:
            for k, val in ok.items():
                setattr(q, k, val)
            q.save(user=acting, reason=why)
    return q


def record_qc_results(
    batch: CellProductBatch | str, results: Sequence[Mapping[str, Any]], *,
    reason: str | None = None, user: Any = None,
) -> list[QcResult]:
    """Record several QC results of one batch at once (a lab sheet, an imported file): each
    a mapping of :func:`record_qc_result`'s arguments (``test``, ``result``, ``unit``,
    ``analyst``, ``tested_on``, ``method``, ``source``). All or nothing: every problem of every
    result is raised together (``RuleViolation``); a test given twice is refused. New results
    are written in one bulk insert (history and ledger); a changed one needs ``reason``."""
    acting = acting_user(user)
    keys = ("test", "result", "unit", "analyst", "tested_on", "method", "source")
    with transaction.atomic():
        b = _lock_batch(batch)
        require_permission(acting, "manage_product", participant=b.participant)
        facts = _qc_facts(b)
        problems: list[Problem] = []
        typed: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for i, r in enumerate(results, 1):
            bad = sorted(set(r) - set(keys))
            if bad:
                problems.append(Problem(f"batch {b.batch_id} QC result {i}", "",
                                        f"unknown field(s) {', '.join(bad)}"))
                continue
            try:
                ok = validate_qc({"unit": None, "method": "", "source": "entry", **r}, facts)
            except RuleViolation as exc:
                problems.extend(exc.problems)
                continue
            if ok["test"] in seen:
                problems.append(Problem(f"batch {b.batch_id} QC {ok['test']}", "test",
                                        f"given twice (results {seen[ok['test']]} and {i})"))
                continue
            seen[ok["test"]] = i
            typed.append(ok)
        if problems:
            raise RuleViolation(problems)
        stored = {q.test: q for q in QcResult.objects.filter(batch=b)}
        new = [QcResult(participant=b.participant, batch=b, **ok) for ok in typed
               if ok["test"] not in stored]
        out = audit_bulk_create(QcResult, new, user=acting)
        for ok in typed:
            q = stored.get(ok["test"])
            if q is None:
                continue
            why = _reason_for({k: getattr(q, k) for k in ok}, ok, reason,
                              f"batch {b.batch_id} QC {q.test}")
            if why is not None:
                for k, val in ok.items():
                    setattr(q, k, val)
                q.save(user=acting, reason=why)
            out.append(q)
    return out  # type: ignore[return-value]


def update_qc_result(qc: QcResult, *, reason: str | None = None, user: Any = None,
                     **changes: Any) -> QcResult:
    """Correct a QC result (``result``, ``unit``, ``analyst``, ``tested_on``, ``method``):
    the same rules as a new result; a reason for every changed value."""
    allowed = {"result", "unit", "analyst", "tested_on", "method", "source"}
    bad = sorted(set(changes) - allowed)
    if bad:
        raise StoreError(f"QC result {qc}: field(s) {', '.join(bad)} cannot be changed here "
                         f"(allowed: {', '.join(sorted(allowed))})")
    state = {"result": qc.value_as_entered if isinstance(qc.value, str) else qc.value,
             "unit": qc.unit, "analyst": qc.analyst, "tested_on": qc.tested_on,
             "method": qc.method, "source": qc.source, **changes}
    b = CellProductBatch.objects.get(pk=qc.batch_id)
    return record_qc_result(b, test=qc.test, reason=reason, user=user, **state)


def submit_for_review(batch: CellProductBatch | str, *, at: Any = None, user: Any = None
                      ) -> CellProductBatch:
    """qc -> qa_review: every release test has a valid result (or is pending as its rapid
    test allows)."""
    return _transition(batch, A.SUBMIT_FOR_REVIEW, user=user, permission="manage_product",
                       at=at)


# ---------------------------------------------------------------------- release
def _manifest(b: CellProductBatch) -> list[list[Any]]:
    """``[[model label, pk, ledger seq, digest], ...]`` of the rows a release signs: the
    harvest, the manufacturing steps and their controls, the QC results (sorted)."""
    groups: list[tuple[type, list[int]]] = [
        (Harvest, [b.harvest_id] if b.harvest_id else []),
        (ManufacturingStep, list(ManufacturingStep.objects.filter(batch=b)
                                 .values_list("pk", flat=True))),
        (InProcessControlResult, list(InProcessControlResult.objects.filter(batch=b)
                                      .values_list("pk", flat=True))),
        (QcResult, list(QcResult.objects.filter(batch=b).values_list("pk", flat=True))),
    ]
    out: list[list[Any]] = []
    for model, pks in groups:
        if not pks:
            continue
        latest: dict[str, tuple[int, str]] = {}
        rows = (AuditLedger.objects.filter(history_model=_history_label(model),
                                           object_pk__in=[str(p) for p in pks])
                .order_by("seq").values_list("object_pk", "seq", "digest"))
        for opk, seq, digest in rows:
            latest[opk] = (int(seq), str(digest))
        for pk in sorted(pks):
            seq, digest = latest.get(str(pk), (0, ""))
            out.append([model._meta.label_lower, int(pk), seq, digest])
    out.sort(key=lambda e: (e[0], e[1]))
    return out


def _digest(manifest: list[list[Any]]) -> str:
    return hashlib.sha256(_dumps(_canon(manifest)).encode("utf-8")).hexdigest()


def _sign(b: CellProductBatch, signer: Any, role: str, meaning: str, at: _dt.datetime
          ) -> ProductSignature:
    manifest = _manifest(b)
    seq, chain = head()
    sig = ProductSignature(participant=b.participant, batch=b, signer=signer,
                           printed_name=printed_name_of(signer), role=role, meaning=meaning,
                           signed_at=at, ledger_seq=seq, ledger_hash=chain, manifest=manifest,
                           manifest_digest=_digest(manifest))
    sig.save(user=signer, reason=f"signed: {meaning}")
    return sig


def product_signature_status(sig: ProductSignature) -> str:
    """``valid``, ``invalidated by change seq N`` (N: the first ledger entry after the signing
    of a signed row, or of a row of that kind added to the batch since) or ``altered: ...``
    (the manifest no longer matches its digest). Recomputed, never stored."""
    if _digest(sig.manifest) != sig.manifest_digest:
        return "altered: the manifest does not match its digest"
    models = {m._meta.label_lower: m for m in (Harvest, ManufacturingStep,
                                               InProcessControlResult, QcResult)}
    covered: dict[str, set[str]] = {}
    for label, pk, *_rest in [*sig.manifest, *_manifest(sig.batch)]:
        covered.setdefault(label, set()).add(str(pk))
    first: int | None = None
    for label, pks in sorted(covered.items()):
        seq = (AuditLedger.objects.filter(seq__gt=sig.ledger_seq,
                                          history_model=_history_label(models[label]),
                                          object_pk__in=sorted(pks))
               .order_by("seq").values_list("seq", flat=True).first())
        if seq is not None and (first is None or seq < first):
            first = int(seq)
    return "valid" if first is None else f"invalidated by change seq {first}"


def _assessment(b: CellProductBatch, weight: float | None) -> list[dict[str, Any]]:
    prod = _product()
    vol = float(b.formulated_volume_ml) if b.formulated_volume_ml is not None else None
    return [{"test": a.name, "outcome": a.outcome, "reason": a.reason,
             "criterion": a.criterion, "result": a.result}
            for a in prod.release_assessment(_results(b), weight_kg=weight, volume_ml=vol)]


def _conclusion(assessment: list[dict[str, Any]]) -> str:
    bad = [a for a in assessment if a["outcome"] not in ("pass", "pending")]
    pending = [a["test"] for a in assessment if a["outcome"] == "pending"]
    if bad:
        return "out of specification: " + "; ".join(f"{a['test']}: {a['reason']}" for a in bad)
    if pending:
        return f"meets the specification; pending (rapid release): {', '.join(pending)}"
    return "meets the specification"


def _check_signer(user: Any, password: str | None, action: str, participant: Participant
                  ) -> tuple[Any, str]:
    """Permission, then the re-entered password (its failure is counted and committed)."""
    from hepatrial.errors import AuthenticationFailed

    acting = acting_user(user)
    role = require_permission(acting, action, participant=participant)
    if role == "system":
        from hepatrial.errors import PermissionDenied

        raise PermissionDenied(f"{action}: the system account cannot e-sign; a named QA user "
                               "must (--user NAME)")
    if not acting.is_active:
        raise AuthenticationFailed(f"account {acting.get_username()!r} is deactivated")
    check_signing_password(acting, password)
    return acting, role


def _release_one(b_ref: CellProductBatch | str, acting: Any, role: str, *,
                 released_at: Any, exceptional: bool = False, justification: str = "",
                 investigator: Any = None) -> CellProductBatch:
    when = _when(released_at, f"batch {getattr(b_ref, 'batch_id', b_ref)} release")
    b = _lock_batch(b_ref)
    require_permission(acting, "release_product", participant=b.participant)
    now = _now()
    meaning = "exceptional_release" if exceptional else "release"
    sig = Signature(_username(acting), role, meaning, now)
    inv_sig = None
    if investigator is not None:
        inv_sig = Signature(_username(investigator[0]), investigator[1],
                            "medical_justification", now)
    f = _gather(b, when, acting, signature=sig, justification=justification,
                investigator_signature=inv_sig)
    d = _decide(b, A.RELEASE_EXCEPTIONALLY if exceptional else A.RELEASE, f)
    if not d.allowed:
        raise ProductStepRefused(b.batch_id, d)
    assert d.to_state is not None
    weight = f.weight_kg
    assessment = _assessment(b, weight)
    qa = _sign(b, acting, role, meaning, now)
    inv = _sign(b, investigator[0], investigator[1], "medical_justification", now) \
        if investigator is not None else None
    devs = _record_deviations(b.participant, d.deviations, when, acting)
    rel = BatchRelease(participant=b.participant, batch=b, exceptional=exceptional,
                       released_at=when, assessment=_canon(assessment),
                       conclusion=_conclusion(assessment),
                       weight_kg=Decimal(str(weight)) if weight is not None else None,
                       qa_signature=qa, justification=justification.strip(),
                       investigator_signature=inv, deviation=devs[0] if devs else None)
    rel.save(user=acting)
    _append_event(participant=b.participant, harvest=b.harvest, batch=b,
                  action=d.action.value, from_state=str(b.state), to_state=d.to_state.value,
                  at=when, user=acting, reason=justification.strip(),
                  details={"signature": qa.pk, "investigator_signature": inv.pk if inv else None,
                           "conclusion": rel.conclusion})
    old = b.state
    b.state = d.to_state.value
    b.released = True
    b.released_at = when
    b.release_date = when.date()
    b.save(user=acting, reason=f"{d.action.value}: {old} -> {b.state} (e-signed by "
           f"{qa.printed_name})")
    return b


def release_batch(
    batch: CellProductBatch | str, *, user: Any, password: str | None, released_at: Any = None,
) -> CellProductBatch:
    """qa_review -> released: the e-signed act of a QA user (password re-entered, 21 CFR
    11.200) who did not manufacture the batch, allowed only when every release test has a
    result meeting its limit (or pending as its rapid test allows) and within shelf life.
    Writes the signature (manifest of the signed rows' ledger entries), the
    :class:`BatchRelease` (the QA review: every test's verdict) and the custody event.
    ``released_at`` (default now) is the time of release entered (not in the future)."""
    p = _batch_participant(batch)
    acting, role = _check_signer(user, password, "release_product", p)
    with transaction.atomic():
        return _release_one(batch, acting, role, released_at=released_at)


def release_batches(
    batches: Sequence[CellProductBatch | str], *, user: Any, password: str | None,
    released_at: Mapping[str, Any] | Any = None,
) -> list[CellProductBatch]:
    """Release several batches in one signing session: the password is re-entered once for
    the series (21 CFR 11.200(a)(1)(i): a series of signings during one continuous period of
    controlled access), each batch gets its own signature and checks; all or nothing.
    ``released_at``: one time for all, or ``{batch id: time}``."""
    if not batches:
        return []
    first = _batch_participant(batches[0])
    acting, role = _check_signer(user, password, "release_product", first)
    out = []
    with transaction.atomic():
        for b in batches:
            bid = b.batch_id if isinstance(b, CellProductBatch) else str(b)
            when = released_at.get(bid) if isinstance(released_at, Mapping) else released_at
            out.append(_release_one(b, acting, role, released_at=when))
    return out


def release_batch_exceptionally(
    batch: CellProductBatch | str, *, user: Any, password: str | None, justification: str,
    investigator: Any, investigator_password: str | None, released_at: Any = None,
) -> CellProductBatch:
    """qa_review -> exceptional_release of an out-of-specification batch (EU GMP part IV
    §11.5): QA signs the release (meaning ``exceptional_release``), the investigator — an
    investigator of the participant's site, another person — signs the documented medical
    ``justification`` (meaning ``medical_justification``); both passwords are re-entered. A
    major deviation is recorded. Refused when the batch meets its specification."""
    p = _batch_participant(batch)
    acting, role = _check_signer(user, password, "release_product", p)
    inv, inv_role = _check_signer(investigator, investigator_password, "sign", p)
    with transaction.atomic():
        return _release_one(batch, acting, role, released_at=released_at, exceptional=True,
                            justification=str(justification or ""),
                            investigator=(inv, inv_role))


def _batch_participant(batch: CellProductBatch | str) -> Participant:
    bid = batch.batch_id if isinstance(batch, CellProductBatch) else str(batch)
    b = CellProductBatch.objects.select_related("participant").filter(batch_id=bid).first()
    if b is None:
        from hepatrial.errors import NotFoundError

        raise NotFoundError(f"batch {bid!r} does not exist")
    return b.participant


# ---------------------------------------------------------------------- distribution
def _bid_of(batch: CellProductBatch | str) -> str:
    """The batch id of a batch or of its id."""
    return str(getattr(batch, "batch_id", batch))


def _celsius(bid: str, value: Any) -> float | None:
    """A temperature typed for a step as °C (None when not recorded); not a number -> the
    batch's step refused naming ``temperature_c``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    from hepatrial.scores.numbers import number_problem
    from hepatrial.trials.validators._common import Checker

    text = str(value).strip()
    why = None if isinstance(value, (int, float)) else number_problem(text)
    if why is None:
        x = float(value)
        if x == x and abs(x) != float("inf"):
            return x
        why = "is not a finite number"
    c = Checker(f"batch {bid}")
    c.fail("temperature_c", f"{value!r} is not a temperature in °C: {why}")
    c.done()
    return None


def dispatch_batch(
    batch: CellProductBatch | str, *, scanned_coi: str, at: Any = None, location: str = "",
    temperature_c: float | None = None, user: Any = None,
) -> CellProductBatch:
    """released | exceptional_release -> dispatched: the label scanned, within shelf life,
    ``temperature_c`` (the storage temperature at dispatch, when recorded) within the
    product's storage range."""
    return _transition(batch, A.DISPATCH, user=user, permission="manage_product", at=at,
                       scanned_coi=scanned_coi, location=location, temperature_c=temperature_c,
                       facts={"step_temperature_c": _celsius(_bid_of(batch), temperature_c)})


def receive_at_bedside(
    batch: CellProductBatch | str, *, scanned_coi: str, readings: Sequence[Any],
    at: Any = None, location: str = "", temperature_c: float | None = None, user: Any = None,
) -> CellProductBatch:
    """dispatched -> received_at_bedside: the label scanned, the transport logger's
    ``readings`` (``(time, °C)`` pairs; every one within the product's transport range),
    within shelf life. The readings are kept in the custody event."""
    from hepatrial.trials.validators._common import Checker

    bid = getattr(batch, "batch_id", batch)
    c = Checker(f"batch {bid} transport record")
    typed: list[TemperatureReading] = []
    for i, r in enumerate(readings, 1):
        try:
            t_raw, celsius = r
        except (TypeError, ValueError):
            c.fail(f"readings[{i}]", f"{r!r} is not a (time, °C) pair")
            continue
        t = aware_datetime(c, f"readings[{i}]", t_raw, now=_now())
        try:
            x = float(celsius)
        except (TypeError, ValueError):
            c.fail(f"readings[{i}]", f"{celsius!r} is not a temperature in °C")
            continue
        if t is not None:
            typed.append(TemperatureReading(t, x))
    c.done()
    typed.sort(key=lambda r: r.at)
    return _transition(
        batch, A.RECEIVE_AT_BEDSIDE, user=user, permission="administer_product", at=at,
        scanned_coi=scanned_coi, location=location, temperature_c=temperature_c,
        facts={"transit_readings": tuple(typed),
               "step_temperature_c": _celsius(bid, temperature_c)},
        details={"readings": [[r.at.isoformat(), r.celsius] for r in typed]},
    )


# ---------------------------------------------------------------------- exceptions
def quarantine_batch(batch: CellProductBatch | str, *, reason: str, at: Any = None,
                     user: Any = None) -> CellProductBatch:
    """-> quarantined (from any state up to received at the bedside, or returned), with the
    reason; the state it came from is kept for :func:`resume_batch`."""
    return _transition(batch, A.QUARANTINE, user=user, permission="manage_product", at=at,
                       reason=reason, changes=lambda b: {"quarantined_from": b.state})


def investigate_batch(batch: CellProductBatch | str, *, reason: str, at: Any = None,
                      user: Any = None) -> CellProductBatch:
    """quarantined -> under_investigation, with the reason (what is investigated)."""
    return _transition(batch, A.INVESTIGATE, user=user, permission="manage_product", at=at,
                       reason=reason)


def _resumed(b: CellProductBatch) -> dict[str, Any]:
    out: dict[str, Any] = {"quarantined_from": None}
    if b.quarantined_from in {s.value for s in RELEASE_STATES} | {S.RETURNED.value}:
        out.update({"released": False, "released_at": None, "release_date": None})
    return out


def resume_batch(batch: CellProductBatch | str, *, reason: str, at: Any = None,
                 user: Any = None) -> CellProductBatch:
    """under_investigation -> the state it was quarantined from (before release), or QA
    review (a released batch needs a new release); QA only, with the investigation's
    conclusion as reason."""
    return _transition(batch, A.RESUME, user=user, permission="release_product", at=at,
                       reason=reason, changes=_resumed)


def return_batch(batch: CellProductBatch | str, *, reason: str, at: Any = None,
                 user: Any = None) -> CellProductBatch:
    """dispatched | received_at_bedside -> returned, with the reason."""
    return _transition(batch, A.RETURN, user=user, permission="manage_product", at=at,
                       reason=reason)


def destroy_batch(batch: CellProductBatch | str, *, reason: str, at: Any = None,
                  method: str = "", user: Any = None) -> CellProductBatch:
    """quarantined | under_investigation | returned -> destroyed (QA, with the reason and the
    method of destruction). Final."""
    return _transition(batch, A.DESTROY, user=user, permission="release_product", at=at,
                       reason=reason, details={"method": method} if method else None)


# ---------------------------------------------------------------------- the dosing gate
def dosing_pause(participant: Participant, *, at: _dt.datetime | None = None,
                 exclude: Administration | None = None) -> DosingPause | None:
    """The stopping rule that paused dosing when the cells were given (``at``, default now),
    from the safety module (``services.safety.dosing_pause``); None when none did.
    ``exclude``: the administration being corrected (left out of the facts).

    The gate judges what was in force at ``at``: a back-dated administration meets the
    sentinel interval and review as they stood on its date (the previous participant's first
    dose before it, a review recorded between that dose and ``at``), and a pause latched with
    a start on or before ``at`` refuses it — a pause in force now refuses every dose dated
    within it, one that began after ``at`` does not (see
    :func:`hepatrial.trials.services.safety.dosing_pause`)."""
    from hepatrial.trials.services import safety as _safety

    return _safety.dosing_pause(participant, at=at, exclude=exclude)


def _eligible(p: Participant) -> bool | None:
    a = EligibilityAssessment.objects.filter(participant=p).order_by("-assessed_on", "-pk").first()
    return None if a is None else a.eligible


_ENDED = ("completed", "withdrawn", "died", "transplanted")


def _administration_facts(
    p: Participant, b: CellProductBatch | None, at: _dt.datetime | None,
    stored: Administration | None = None,
) -> AdministrationFacts:
    """The gate's facts as the store holds them — for a correction (``stored``), as they were
    before the administration: the batch's state before it was given, the participant
    enrolled when a later status (completed, withdrawn, ...) was reached after it, and the
    stopping rules without the administration itself. The safety pause is judged as of
    ``at``, the (corrected) time the cells were given (:func:`dosing_pause`)."""
    gate_batch = None
    if b is not None:
        state = b.state or (S.RELEASED.value if b.released else S.QA_REVIEW.value)
        if stored is not None and stored.batch_id == b.batch_id and state == S.ADMINISTERED:
            ev = (CustodyEvent.objects.filter(batch=b, action=A.ADMINISTER.value)
                  .order_by("-seq").first())
            state = ev.from_state if ev is not None else S.RECEIVED_AT_BEDSIDE.value
        released_at = b.released_at
        if released_at is None and b.release_date is not None:
            released_at = _dt.datetime.combine(b.release_date, _dt.time(0), _dt.UTC)
        gate_batch = GateBatch(batch_id=b.batch_id, participant=b.participant.study_id,
                               coi=b.harvest.coi if b.harvest_id else (b.coi_identifier or ""),
                               state=state, released_at=released_at,
                               formulated_at=b.formulated_at,
                               transit_readings=_transit_readings(b))
    status = p.status
    day = at.date() if at is not None else None
    if (status in _ENDED and p.enrolment_date is not None and day is not None
            and p.status_date is not None and day <= p.status_date):
        status = "enrolled"  # the participant was enrolled when the product was given
    w = _latest_weight(p, day)
    person = GateParticipant(study_id=p.study_id, identifiers=patient_identifiers(p),
                             status=status, eligible=_eligible(p),
                             weight_kg=w[0] if w else None, weight_date=w[1] if w else None)
    return AdministrationFacts(participant=p.study_id, enrolment_date=p.enrolment_date,
                               status=p.status, status_date=p.status_date, product=_product(),
                               batch=gate_batch, person=person,
                               pause=dosing_pause(p, at=at, exclude=stored))


def _admin_values(values: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("route", "cells_total", "cells_per_kg", "volume_ml", "administered_at", "operator",
            "batch_id", "scanned_coi", "identifiers", "dose_override_reason")
    return {k: values.get(k) for k in keys}


def _peek_time(value: Any) -> _dt.datetime | None:
    from hepatrial.trials.validators._common import Checker

    t = aware_datetime(Checker("x"), "at", value)
    return t


def check_administration(
    *,
    participant: Participant | str,
    batch_id: Any,
    scanned_coi: Any,
    identifiers: Mapping[str, Any] | None,
    route: Any,
    cells_total: Any,
    volume_ml: Any,
    administered_at: Any,
    operator: Any,
    cells_per_kg: Any = None,
    dose_override_reason: str = "",
    administration: Administration | None = None,
) -> tuple[Participant, dict[str, Any], Any]:
    """Judge an administration without writing it (the admin form's check): ``(participant,
    typed values, gate result)`` or ``RuleViolation`` naming every problem and every unmet
    condition of the dosing gate, and the batch's lifecycle ``state`` (an administration
    needs a batch received at the bedside)."""
    p = _participant(participant)
    b = (CellProductBatch.objects.select_related("participant", "harvest")
         .filter(batch_id=str(batch_id).strip()).first() if batch_id is not None else None)
    values = _admin_values({
        "route": route, "cells_total": cells_total, "cells_per_kg": cells_per_kg,
        "volume_ml": volume_ml, "administered_at": administered_at, "operator": operator,
        "batch_id": batch_id, "scanned_coi": scanned_coi, "identifiers": identifiers,
        "dose_override_reason": dose_override_reason,
    })  # fmt: skip
    facts = _administration_facts(p, b, _peek_time(administered_at), administration)
    problems: list[Problem] = []
    ok: dict[str, Any] = {}
    gate: Any = None
    try:
        ok, gate = validate_administration(values, facts, now=_now())
    except RuleViolation as exc:
        problems = list(exc.problems)
    if b is not None and facts.batch is not None and facts.batch.state in {
        s.value for s in RELEASE_STATES
    } and facts.batch.state != S.RECEIVED_AT_BEDSIDE.value:
        problems.append(Problem(f"participant {p.study_id} administration", "state",
                                f"batch {b.batch_id} is {facts.batch.state}: it is given only "
                                "after its receipt at the bedside (receive it first)"))
    if problems:
        raise RuleViolation(problems)
    return p, ok, gate


def _record_gate_deviations(a: Administration, gate: Any, user: Any, note: str = "") -> None:
    for dev in gate.deviations:
        ProtocolDeviation(participant=a.participant, category=DeviationCategory.DOSING,
                          description=f"{dev.description} (administration of {a.date}{note})",
                          date=a.date, major=dev.severity == "major",
                          detected_by="system").save(user=user)


def record_administration(
    *,
    participant: Participant | str,
    batch_id: str,
    scanned_coi: str,
    identifiers: Mapping[str, Any],
    route: str,
    cells_total: Any,
    volume_ml: Any,
    administered_at: Any,
    operator: str,
    cells_per_kg: Any = None,
    dose_override_reason: str = "",
    user: Any = None,
) -> Administration:
    """Record an infusion of a batch received at the bedside, through the dosing gate.

    Refused (nothing written), with every unmet condition named, unless the batch exists, is
    this participant's, is released (and not since quarantined, returned or administered),
    has been received at the bedside, is within shelf life and its transport readings within
    range; the scanned id is valid and the batch's; the patient identifiers (at least two)
    match the record; the participant is enrolled and eligible and dosing is not paused; the
    route is allowed; and the dose is in the protocol's range (per kg from the latest weight
    when the rule is per kg) — or ``dose_override_reason`` gives it deliberately, which records
    a major ``dosing`` deviation. Under the batch's row lock, so two administrations of one
    batch never both succeed. ``cells_per_kg`` defaults to cells / the latest weight."""
    acting = acting_user(user)
    with transaction.atomic():
        lock_ledger()
        p = _participant(participant)
        require_permission(acting, "administer_product", participant=p)
        b = (CellProductBatch.objects.select_for_update()
             .filter(batch_id=str(batch_id).strip()).first() if batch_id else None)
        p, ok, gate = check_administration(
            participant=p, batch_id=batch_id, scanned_coi=scanned_coi, identifiers=identifiers,
            route=route, cells_total=cells_total, volume_ml=volume_ml,
            administered_at=administered_at, operator=operator, cells_per_kg=cells_per_kg,
            dose_override_reason=dose_override_reason,
        )  # fmt: skip
        assert b is not None
        b = CellProductBatch.objects.select_related("participant", "harvest").get(pk=b.pk)
        d = _decide(b, A.ADMINISTER, Facts(at=ok["administered_at"], actor=_username(acting),
                                           actor_roles=_roles(acting), gate_unmet=()))
        if not d.allowed:
            raise ProductStepRefused(b.batch_id, d)
        a = Administration(participant=p, route=ok["route"], cells_total=ok["cells_total"],
                           cells_per_kg=ok["cells_per_kg"], volume_ml=ok["volume_ml"],
                           date=ok["date"], operator=ok["operator"], batch=b,
                           administered_at=ok["administered_at"],
                           scanned_coi=ok["scanned_coi"],
                           identifiers_checked=ok["identifiers_checked"],
                           dose_override_reason=ok["dose_override_reason"])
        a.save(user=acting)
        _record_gate_deviations(a, gate, acting)
        _append_event(participant=p, harvest=b.harvest, batch=b, action=A.ADMINISTER.value,
                      from_state=str(b.state), to_state=S.ADMINISTERED.value,
                      at=ok["administered_at"], user=acting, scanned_coi=ok["scanned_coi"],
                      details={"administration": a.pk, "route": ok["route"],
                               "cells_total": ok["cells_total"],
                               "identifiers": sorted(ok["identifiers_checked"])})
        old = b.state
        b.state = S.ADMINISTERED.value
        b.save(user=acting, reason=f"administer: {old} -> administered")
    return a


_ADMIN_FIELDS = ("route", "cells_total", "cells_per_kg", "volume_ml", "administered_at",
                 "operator", "scanned_coi", "identifiers", "dose_override_reason")


def update_administration(
    administration: Administration, *, reason: str | None = None, user: Any = None,
    **changes: Any,
) -> Administration:
    """Correct an administration (route, cells, cells per kg, volume, time, operator, scanned
    id, identifiers, dose override): the corrected state goes through the same dosing gate,
    with the facts as they were before the product was given; a corrected dose outside the
    range needs its override reason and records a major ``dosing`` deviation. The batch of an
    administration is never changed (the chain of custody records it as given). A reason is
    needed unless only empty values are filled."""
    what = str(administration)
    if "batch_id" in changes or "batch" in changes:
        raise StoreError(f"{what}: the batch of an administration cannot be changed (the chain "
                         "of custody records it as given); quarantine and investigate instead")
    bad = sorted(set(changes) - set(_ADMIN_FIELDS))
    if bad:
        raise StoreError(f"{what}: field(s) {', '.join(bad)} cannot be changed here "
                         f"(allowed: {', '.join(_ADMIN_FIELDS)})")
    acting = acting_user(user)
    with transaction.atomic():
        lock_ledger()
        a = Administration.objects.select_for_update().get(pk=administration.pk)
        a = Administration.objects.select_related("participant", "batch").get(pk=a.pk)
        require_permission(acting, "administer_product", participant=a.participant)
        state = {"route": a.route, "cells_total": a.cells_total,
                 "cells_per_kg": a.cells_per_kg, "volume_ml": a.volume_ml,
                 "administered_at": a.administered_at, "operator": a.operator,
                 "scanned_coi": a.scanned_coi, "identifiers": a.identifiers_checked or {},
                 "dose_override_reason": a.dose_override_reason or ""}
        new = {**state, **changes}
        if "cells_total" in changes and "cells_per_kg" not in changes:
            new["cells_per_kg"] = None  # derived again from the weight
        _p, ok, gate = check_administration(participant=a.participant, batch_id=a.batch_id,
                                            administration=a, **new)
        cols = {"route": "route", "cells_total": "cells_total", "cells_per_kg": "cells_per_kg",
                "volume_ml": "volume_ml", "administered_at": "administered_at",
                "date": "date", "operator": "operator", "scanned_coi": "scanned_coi",
                "identifiers_checked": "identifiers_checked",
                "dose_override_reason": "dose_override_reason"}
        old = {k: getattr(a, k) for k in cols}
        typed = {k: ok[k] for k in cols}
        why = _reason_for(old, typed, reason, what)
        if why is None:
            return administration
        old_dose = a.cells_total
        for k in cols:
            setattr(a, k, typed[k])
        a.save(user=acting, reason=why)
        if a.cells_total != old_dose:
            _record_gate_deviations(a, gate, acting, f", corrected from {old_dose:.4g} cells")
    administration.refresh_from_db()
    return administration


# ---------------------------------------------------------------------- observations
def record_observation(
    administration: Administration,
    *,
    minute: int,
    observed_at: Any,
    observer: str,
    heart_rate: Any = None,
    systolic_bp: Any = None,
    diastolic_bp: Any = None,
    respiratory_rate: Any = None,
    temperature_c: Any = None,
    spo2: Any = None,
    reaction: bool = False,
    reaction_description: str = "",
    reaction_term: str | None = None,
    reaction_grade: Any = None,
    reaction_serious: bool = False,
    reaction_relatedness: str = "probable",
    reaction_action: str = "infusion_interrupted",
    user: Any = None,
) -> PostInfusionObservation:
    """Record the vital signs at ``minute`` (0, 15, 30 or 60) after the start of an infusion.
    An infusion ``reaction`` opens an adverse event (``services.record_adverse_event``: the
    CTCAE ``reaction_term`` and ``reaction_grade``, related to the product and the infusion
    by ``reaction_relatedness``, ``reaction_action`` the action taken with the product, onset
    the day of the observation) linked to the observation, in the same transaction."""
    acting = acting_user(user)
    with transaction.atomic():
        lock_ledger()
        a = Administration.objects.select_related("participant").get(pk=administration.pk)
        require_permission(acting, "administer_product", participant=a.participant)
        at = a.administered_at
        ok = validate_observation(
            {"minute": minute, "observed_at": observed_at, "observer": observer,
             "heart_rate": heart_rate, "systolic_bp": systolic_bp, "diastolic_bp": diastolic_bp,
             "respiratory_rate": respiratory_rate, "temperature_c": temperature_c,
             "spo2": spo2, "reaction": reaction, "reaction_description": reaction_description,
             "reaction_term": reaction_term, "reaction_grade": reaction_grade},
            ObservationFacts(a.participant.study_id, at, frozenset(
                PostInfusionObservation.objects.filter(administration=a)
                .values_list("minute", flat=True))),
            now=_now(),
        )  # fmt: skip
        term = ok.pop("reaction_term", None)
        grade = ok.pop("reaction_grade", None)
        ae = None
        if ok["reaction"]:
            ae = _open_adverse_event(a, term, grade, bool(reaction_serious),
                                     reaction_relatedness, reaction_action, ok["observed_at"],
                                     acting)
        o = PostInfusionObservation(participant=a.participant, administration=a,
                                    adverse_event=ae, **ok)
        o.save(user=acting)
    return o


#: the procedure (``hepatrial.vocab.SAFETY_PROCEDURE``) of an infusion by each route
PROCEDURE_OF_ROUTE = {"portal_vein": "portal_vein_injection",
                      "peripheral_vein": "peripheral_infusion",
                      "hepatic_artery": "hepatic_artery_injection"}


def _open_adverse_event(a: Administration, term: str, grade: int, serious: bool,
                        relatedness: str, action: str, at: _dt.datetime, user: Any) -> Any:
    """``services.record_adverse_event`` for an infusion reaction: related to the product and
    to the infusion (the procedure of the administration's route) by ``relatedness``, onset
    the day of the observation, the site aware at the observation, outcome unknown yet."""
    import inspect

    from hepatrial.trials.services.safety import record_adverse_event

    params = inspect.signature(record_adverse_event).parameters
    kw: dict[str, Any] = {"participant": a.participant, "term": term, "grade": grade,
                          "serious": serious, "onset_date": at.date(), "user": user}
    if "relatedness" in params:  # the adverse-event service before issue 12
        kw["relatedness"] = relatedness
    else:
        kw.update({"relatedness_product": relatedness, "relatedness_procedure": relatedness,
                   "procedure": PROCEDURE_OF_ROUTE.get(a.route), "outcome": "unknown",
                   "action_taken": action, "aware_at": at})
    return record_adverse_event(**kw)
