"""The lifecycle of an autologous cell-product batch, vein to vein, as a pure state machine.

:func:`check_transition` takes the batch's current :class:`State`, the :class:`Action` asked
for, the :class:`Facts` the store gathered and the protocol's :class:`~hepatrial.protocol.
models.Product`, and returns a :class:`Decision`: the next state, or **every** unmet condition
(named, with the reason), and the deviations the step records. It reads no database and keeps
no state: the product service applies a decision under a row lock and stores it as an
append-only custody event (who, when, where, temperature) — the chain of custody.

State diagram (``STATE_DIAGRAM``; ``*`` = from every state of the main line up to received at
the bedside, and from returned)::

    harvested --receive--> received --start_manufacture--> in_manufacture
      --complete_manufacture--> qc --submit_for_review--> qa_review
    qa_review --release--> released
    qa_review --release_exceptionally--> exceptional_release
    released | exceptional_release --dispatch--> dispatched
      --receive_at_bedside--> received_at_bedside --administer--> administered
    dispatched | received_at_bedside --return--> returned
    * --quarantine--> quarantined --investigate--> under_investigation
    under_investigation --resume--> the state it was quarantined from, when that was before
      release (harvested ... qa_review); qa_review otherwise (a released product that was
      quarantined needs a new QA release)
    quarantined | under_investigation | returned --destroy--> destroyed
    administered and destroyed are final.

Every path to ``administered`` passes ``release`` or ``release_exceptionally`` (tested with
hypothesis over random sequences of steps).

Sources of the conditions:

* receipt and acceptance of the starting material (time, temperature, volume), chain of
  identity checked at each hand-over: FACT-JACIE International Standards for Hematopoietic
  Cellular Therapy (8th ed., 2021), parts C/D (collection, processing, labelling, distribution);
  21 CFR 1271.265 (receipt, pre-distribution shipment, distribution) and 1271.290 (tracking);
  ISBT 128 ST-028 chain of identity.
* in-process controls complete and met before QC: EU GMP Guidelines for ATMPs (EudraLex vol. 4
  part IV, 2017) §10 and §11; FACT-JACIE processing standards.
* release by QA who did not manufacture the batch ("four eyes"), every specified test with a
  result meeting its limit, an e-signature: EU GMP part IV §11.3 (batch release, independence
  of the quality function), 21 CFR 11.50/11.70 (signature manifestation and linking).
* exceptional release of an out-of-specification product: EU GMP part IV §11.5
  ("Administration of out of specification products"): exceptional, under the treating
  physician's responsibility, documented, the sponsor informed; here a medical justification
  signed by QA and by the investigator, recorded as a major protocol deviation (ICH E3 §10.2).
* rapid release before the final sterility result (Gram stain): EU GMP part IV §11.4; the
  later result is followed up (:meth:`Product.release_assessment` ``pending``).
* shelf life from formulation and transport temperature: FACT-JACIE distribution standards;
  21 CFR 1271.260 (storage) and 1271.265.
"""

from __future__ import annotations

import datetime as _dt
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hepatrial.protocol.coi import validate_coi
from hepatrial.protocol.models import Product, TemperatureRange

__all__ = [
    "EDGES",
    "RELEASE_STATES",
    "STATE_DIAGRAM",
    "TRANSITIONS",
    "Action",
    "Decision",
    "Deviation",
    "Facts",
    "Signature",
    "State",
    "TemperatureReading",
    "Unmet",
    "allowed_actions",
    "check_transition",
    "excursions",
]


class State(StrEnum):
    """States of a batch (``value`` is the stored code)."""

    HARVESTED = "harvested"
    RECEIVED = "received"
    IN_MANUFACTURE = "in_manufacture"
    QC = "qc"
    QA_REVIEW = "qa_review"
    RELEASED = "released"
    EXCEPTIONAL_RELEASE = "exceptional_release"
    DISPATCHED = "dispatched"
    RECEIVED_AT_BEDSIDE = "received_at_bedside"
    ADMINISTERED = "administered"
    QUARANTINED = "quarantined"
    UNDER_INVESTIGATION = "under_investigation"
    RETURNED = "returned"
    DESTROYED = "destroyed"


class Action(StrEnum):
    """Steps of the lifecycle (``value`` is the stored code of a custody event)."""

    RECEIVE = "receive"
    START_MANUFACTURE = "start_manufacture"
    COMPLETE_MANUFACTURE = "complete_manufacture"
    SUBMIT_FOR_REVIEW = "submit_for_review"
    RELEASE = "release"
    RELEASE_EXCEPTIONALLY = "release_exceptionally"
    DISPATCH = "dispatch"
    RECEIVE_AT_BEDSIDE = "receive_at_bedside"
    ADMINISTER = "administer"
    QUARANTINE = "quarantine"
    INVESTIGATE = "investigate"
    RESUME = "resume"
    RETURN = "return"
    DESTROY = "destroy"


S, A = State, Action
#: states before release, in order (the main line up to QA review)
PRE_RELEASE: tuple[State, ...] = (S.HARVESTED, S.RECEIVED, S.IN_MANUFACTURE, S.QC, S.QA_REVIEW)
#: states in which the product has been released and not been quarantined since
RELEASE_STATES = frozenset({S.RELEASED, S.EXCEPTIONAL_RELEASE, S.DISPATCHED,
                            S.RECEIVED_AT_BEDSIDE})  # fmt: skip
_QUARANTINABLE = frozenset(PRE_RELEASE) | RELEASE_STATES | {S.RETURNED}

#: action -> (states it may start from, state it leads to; None = decided by the facts)
TRANSITIONS: Mapping[Action, tuple[frozenset[State], State | None]] = {
    A.RECEIVE: (frozenset({S.HARVESTED}), S.RECEIVED),
    A.START_MANUFACTURE: (frozenset({S.RECEIVED}), S.IN_MANUFACTURE),
    A.COMPLETE_MANUFACTURE: (frozenset({S.IN_MANUFACTURE}), S.QC),
    A.SUBMIT_FOR_REVIEW: (frozenset({S.QC}), S.QA_REVIEW),
    A.RELEASE: (frozenset({S.QA_REVIEW}), S.RELEASED),
    A.RELEASE_EXCEPTIONALLY: (frozenset({S.QA_REVIEW}), S.EXCEPTIONAL_RELEASE),
    A.DISPATCH: (frozenset({S.RELEASED, S.EXCEPTIONAL_RELEASE}), S.DISPATCHED),
    A.RECEIVE_AT_BEDSIDE: (frozenset({S.DISPATCHED}), S.RECEIVED_AT_BEDSIDE),
    A.ADMINISTER: (frozenset({S.RECEIVED_AT_BEDSIDE}), S.ADMINISTERED),
    A.QUARANTINE: (_QUARANTINABLE, S.QUARANTINED),
    A.INVESTIGATE: (frozenset({S.QUARANTINED}), S.UNDER_INVESTIGATION),
    A.RESUME: (frozenset({S.UNDER_INVESTIGATION}), None),
    A.RETURN: (frozenset({S.DISPATCHED, S.RECEIVED_AT_BEDSIDE}), S.RETURNED),
    A.DESTROY: (frozenset({S.QUARANTINED, S.UNDER_INVESTIGATION, S.RETURNED}), S.DESTROYED),
}


def _edges() -> frozenset[tuple[State, Action, State]]:
    out = set()
    for action, (sources, target) in TRANSITIONS.items():
        for s in sources:
            if target is not None:
                out.add((s, action, target))
            else:  # resume: back to a pre-release state
                out.update((s, action, t) for t in PRE_RELEASE)
    return frozenset(out)


#: every (from, action, to) the machine can ever take
EDGES: frozenset[tuple[State, Action, State]] = _edges()

#: the state diagram of the module docstring, as text
STATE_DIAGRAM: str = textwrap.dedent(
    (__doc__ or "").split("from returned)::\n", 1)[1].split("\nEvery path", 1)[0]
).strip("\n")


def allowed_actions(state: State | str) -> tuple[Action, ...]:
    """The actions that may start from ``state`` (their conditions still apply)."""
    s = State(state)
    return tuple(a for a, (sources, _t) in TRANSITIONS.items() if s in sources)


# ---------------------------------------------------------------------- inputs and outputs
@dataclass(frozen=True)
class Unmet:
    """One unmet condition: its name (stable, for tests and messages) and why."""

    condition: str
    reason: str

    def __str__(self) -> str:
        return f"{self.condition}: {self.reason}"


@dataclass(frozen=True)
class Deviation:
    """A protocol deviation a step records (``category`` from ``hepatrial.vocab.
    DEVIATION_CATEGORY``; ``severity`` ``major`` or ``minor``)."""

    category: str
    severity: str
    description: str


@dataclass(frozen=True)
class Signature:
    """An e-signature as the store verified it (re-entered password, 21 CFR 11.200): who, in
    which role, its meaning (``release``, ``exceptional_release``, ``medical_justification``)
    and when."""

    signer: str
    role: str
    meaning: str
    signed_at: _dt.datetime


@dataclass(frozen=True)
class TemperatureReading:
    """One reading of a temperature logger (aware datetime, °C)."""

    at: _dt.datetime
    celsius: float


@dataclass(frozen=True)
class Facts:
    """What the store knows that a step's conditions need. Leave unknown facts at their
    defaults: a condition that needs one is then unmet ("not recorded"), never assumed met.

    Times are timezone-aware datetimes (UTC in the store)."""

    #: when the step happens and who does it (user name and roles)
    at: _dt.datetime | None = None
    actor: str | None = None
    actor_roles: frozenset[str] = frozenset()
    #: why (quarantine, investigation, resume, return, destroy)
    reason: str = ""
    #: the batch's chain-of-identity id (made at harvest) and the id scanned at this step
    coi: str | None = None
    coi_scanned: str | None = None
    #: receipt of the starting material
    collected_at: _dt.datetime | None = None
    volume_ml: float | None = None
    receipt_temperature_c: float | None = None
    #: manufacture: every operator of a manufacturing step, the in-process control results
    #: (step code -> control name -> result), the end of formulation (start of shelf life)
    operators: frozenset[str] = frozenset()
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    formulated_at: _dt.datetime | None = None
    #: QC results (test name -> result) and the participant's weight (per-kg limits)
    results: Mapping[str, Any] = field(default_factory=dict)
    weight_kg: float | None = None
    #: release: QA's e-signature; exceptional release: justification and investigator's
    #: signature
    signature: Signature | None = None
    justification: str = ""
    investigator_signature: Signature | None = None
    #: transport logger readings from dispatch to bedside receipt
    transit_readings: tuple[TemperatureReading, ...] = ()
    #: the product's temperature recorded with this step (°C; None: not recorded): in
    #: storage at dispatch, on arrival at the bedside
    step_temperature_c: float | None = None
    #: the state the batch was quarantined from (resume)
    quarantined_from: State | None = None
    #: administration: the unmet conditions of the dosing gate (None = gate not run)
    gate_unmet: tuple[Unmet, ...] | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`check_transition`."""

    action: Action
    from_state: State
    to_state: State | None
    unmet: tuple[Unmet, ...]
    deviations: tuple[Deviation, ...] = ()

    @property
    def allowed(self) -> bool:
        """True when every condition holds (``to_state`` is then the next state)."""
        return not self.unmet

    def message(self) -> str:
        """One line per unmet condition, after a heading naming the step."""
        if self.allowed:
            return f"{self.action.value}: {self.from_state.value} -> {self.to_state}"
        lines = [f"{self.action.value} refused ({len(self.unmet)} unmet condition(s)):"]
        lines += [f"  {u}" for u in self.unmet]
        return "\n".join(lines)


# ---------------------------------------------------------------------- helpers
def _aware(t: Any) -> bool:
    return isinstance(t, _dt.datetime) and t.tzinfo is not None and t.utcoffset() is not None


class _Conditions:
    def __init__(self) -> None:
        self.unmet: list[Unmet] = []

    def fail(self, condition: str, reason: str) -> None:
        self.unmet.append(Unmet(condition, reason))

    def time(self, condition: str, value: Any, what: str) -> bool:
        if value is None:
            self.fail(condition, f"{what} is not recorded")
            return False
        if not _aware(value):
            self.fail(condition, f"{what} {value!r} has no time zone")
            return False
        return True


def excursions(readings: tuple[TemperatureReading, ...], allowed: TemperatureRange) -> list[str]:
    """Each reading outside ``allowed``, as text (``2009-02-01T08:30:00+00:00 9.1 °C``)."""
    return [f"{r.at.isoformat()} {r.celsius:g} °C" for r in sorted(readings, key=lambda r: r.at)
            if not allowed.contains(r.celsius)]


def _coi_check(c: _Conditions, facts: Facts) -> None:
    if facts.coi is None:
        c.fail("coi_scanned", "the batch has no chain-of-identity id")
        return
    if facts.coi_scanned is None:
        c.fail("coi_scanned", "the chain-of-identity id was not scanned")
        return
    res = validate_coi(facts.coi_scanned)
    if not res.ok:
        c.fail("coi_scanned", res.reason)
    elif facts.coi_scanned.rstrip("\r\n") != facts.coi:
        c.fail("coi_scanned", f"scanned {facts.coi_scanned!r} is not this batch's "
               f"chain-of-identity id {facts.coi!r}")


def _actor(c: _Conditions, facts: Facts) -> None:
    if not facts.actor:
        c.fail("actor", "who performs the step is not recorded")


def _reason(c: _Conditions, facts: Facts, what: str) -> None:
    if not facts.reason.strip():
        c.fail("reason", f"give the reason for the {what}")


def _role(c: _Conditions, facts: Facts, role: str, what: str) -> None:
    if role not in facts.actor_roles:
        c.fail(f"{role}_role", f"{what} needs the {role!r} role; {facts.actor or 'the user'} "
               f"has {', '.join(sorted(facts.actor_roles)) or 'no role'}")


def _shelf_life(c: _Conditions, facts: Facts, product: Product) -> None:
    if product.shelf_life_hours is None:
        return
    ok = c.time("within_shelf_life", facts.formulated_at, "the time of formulation")
    ok = c.time("within_shelf_life", facts.at, "the time of the step") and ok
    if not ok:
        return
    assert facts.formulated_at is not None and facts.at is not None
    expiry = product.expiry(facts.formulated_at)
    assert expiry is not None
    if facts.at < facts.formulated_at:
        c.fail("within_shelf_life", f"{facts.at.isoformat()} is before the formulation at "
               f"{facts.formulated_at.isoformat()}")
    elif facts.at > expiry:
        c.fail("within_shelf_life", f"expired at {expiry.isoformat()} "
               f"({product.shelf_life_hours:g} h after formulation); it is now "
               f"{facts.at.isoformat()}")


def _four_eyes(c: _Conditions, facts: Facts, what: str) -> None:
    if facts.actor and facts.actor in facts.operators:
        c.fail("four_eyes", f"{facts.actor} manufactured this batch and cannot {what} it "
               "(release by an independent QA person)")


def _signature(c: _Conditions, sig: Signature | None, signer: str | None, meaning: str,
               condition: str = "e_signature") -> None:
    if sig is None:
        c.fail(condition, f"the {meaning.replace('_', ' ')} is not e-signed")
    elif signer is not None and sig.signer != signer:
        c.fail(condition, f"signed by {sig.signer}, not by {signer} who performs the step")
    elif sig.meaning != meaning:
        c.fail(condition, f"the signature means {sig.meaning!r}, not {meaning!r}")


# ---------------------------------------------------------------------- the transition function
def check_transition(
    state: State | str, action: Action | str, facts: Facts, product: Product | None
) -> Decision:
    """Whether ``action`` may be taken from ``state`` given ``facts``: the next state, or every
    unmet condition; plus the deviations the step records. Pure: nothing is read or written.

    Conditions by action (name: meaning):

    * every action — ``state``: the action starts from this state; ``protocol``: the
      protocol declares a product; ``actor``: who does it is recorded.
    * receive — ``coi_scanned`` (the scanned id is valid and the batch's),
      ``receipt_time`` (within ``max_hours_to_processing`` of collection),
      ``receipt_temperature`` (within the starting material's transport range),
      ``starting_volume`` (within the accepted aspirate volume).
    * complete_manufacture — ``in_process_controls`` (every step recorded, every control with
      a result meeting its limit), ``formulated`` (the time of formulation, not in the future).
    * submit_for_review — ``release_results`` (every release test has a valid result, or is
      pending as its rapid test allows).
    * release — ``qa_role``, ``four_eyes`` (the releaser did not manufacture the batch),
      ``e_signature`` (the releaser's, meaning ``release``), ``specification`` (every test
      met), ``within_shelf_life``.
    * release_exceptionally — ``qa_role``, ``four_eyes``, ``e_signature`` (QA's, meaning
      ``exceptional_release``), ``out_of_specification`` (something is not met, else release
      normally), ``medical_justification`` (text), ``investigator_signature`` (an
      investigator other than the QA signer, meaning ``medical_justification``),
      ``within_shelf_life``; records a **major** deviation.
    * dispatch — ``coi_scanned``, ``within_shelf_life``, ``storage_temperature`` (a
      temperature recorded at dispatch is within the product's storage range).
    * receive_at_bedside — ``coi_scanned``, ``transport_temperature`` (logger readings
      present, none outside the product's transport range, nor the temperature recorded on
      arrival), ``within_shelf_life``.
    * administer — every unmet condition of the dosing gate
      (:func:`hepatrial.protocol.dosing.check_administration`), or ``dosing_gate`` when it was
      not run.
    * quarantine, investigate, return — ``reason``; resume — ``qa_role``, ``reason``,
      ``quarantined_from``; destroy — ``qa_role``, ``reason``.
    """
    st = State(state)
    act = Action(action)
    c = _Conditions()
    sources, target = TRANSITIONS[act]
    if st not in sources:
        c.fail("state", f"cannot {act.value} a batch that is {st.value} (allowed from: "
               f"{', '.join(sorted(s.value for s in sources))})")
    if product is None:
        c.fail("protocol", "the protocol declares no product")
        return Decision(act, st, None, tuple(c.unmet))
    _actor(c, facts)
    deviations: list[Deviation] = []

    if act is A.RECEIVE:
        _coi_check(c, facts)
        sm = product.starting_material
        if sm is not None:
            if sm.max_hours_to_processing is not None and (
                c.time("receipt_time", facts.collected_at, "the time of collection")
                & c.time("receipt_time", facts.at, "the time of receipt")
            ):
                assert facts.at is not None and facts.collected_at is not None
                hours = (facts.at - facts.collected_at).total_seconds() / 3600
                if hours < 0:
                    c.fail("receipt_time", "received before it was collected")
                elif hours > sm.max_hours_to_processing:
                    c.fail("receipt_time", f"received {hours:.1f} h after collection (at most "
                           f"{sm.max_hours_to_processing:g} h)")
            if sm.transport_temp_c is not None:
                t = facts.receipt_temperature_c
                if t is None:
                    c.fail("receipt_temperature", "the temperature at receipt is not recorded")
                elif not sm.transport_temp_c.contains(t):
                    c.fail("receipt_temperature", f"{t:g} °C at receipt is outside "
                           f"{sm.transport_temp_c.text}")
            if facts.volume_ml is None:
                c.fail("starting_volume", "the volume received is not recorded")
            elif not sm.volume_ok(facts.volume_ml):
                c.fail("starting_volume", f"{facts.volume_ml:g} mL is outside the accepted "
                       f"{sm.volume_ml_min:g}-{sm.volume_ml_max:g} mL")

    elif act is A.COMPLETE_MANUFACTURE:
        for step in product.manufacturing:
            got = facts.steps.get(step.code)
            if got is None:
                c.fail("in_process_controls", f"step {step.code} ({step.label}) is not recorded")
                continue
            for ctl in step.controls:
                if got.get(ctl.name) is None:
                    c.fail("in_process_controls", f"{step.code}.{ctl.name}: no result")
                    continue
                outcome, why = ctl.assess(got[ctl.name])
                if outcome != "pass":
                    c.fail("in_process_controls", f"{step.code}.{ctl.name}: {why}")
        if c.time("formulated", facts.formulated_at, "the time of formulation") and (
            facts.at is not None and _aware(facts.at) and facts.formulated_at > facts.at  # type: ignore[operator]
        ):
            c.fail("formulated", "the time of formulation is after the step")

    elif act is A.SUBMIT_FOR_REVIEW:
        for a in product.release_assessment(facts.results, weight_kg=facts.weight_kg):
            if a.outcome in ("missing", "invalid"):
                c.fail("release_results", f"{a.name}: {a.reason}")

    elif act in (A.RELEASE, A.RELEASE_EXCEPTIONALLY):
        exceptional = act is A.RELEASE_EXCEPTIONALLY
        _role(c, facts, "qa", "a release")
        _four_eyes(c, facts, "release")
        _signature(c, facts.signature, facts.actor,
                   "exceptional_release" if exceptional else "release")
        unmet_tests = [a for a in product.release_assessment(facts.results,
                                                              weight_kg=facts.weight_kg)
                       if not a.met]  # fmt: skip
        if not product.release_spec:
            c.fail("specification", "the protocol has no release specification")
        elif not exceptional:
            for a in unmet_tests:
                c.fail("specification", f"{a.name}: {a.reason}")
        else:
            if not unmet_tests:
                c.fail("out_of_specification", "the batch meets its specification: release "
                       "it normally")
            if not facts.justification.strip():
                c.fail("medical_justification", "an exceptional release needs the "
                       "investigator's documented medical justification")
            inv = facts.investigator_signature
            _signature(c, inv, None, "medical_justification", "investigator_signature")
            if inv is not None:
                if inv.role != "investigator":
                    c.fail("investigator_signature", f"{inv.signer} signed as {inv.role!r}, "
                           "not as the investigator")
                if facts.signature is not None and inv.signer == facts.signature.signer:
                    c.fail("investigator_signature", "the investigator and QA must be two "
                           "different people")
            if unmet_tests:
                deviations.append(Deviation(
                    "other", "major",
                    "exceptional release of an out-of-specification batch ("
                    + "; ".join(f"{a.name}: {a.reason}" for a in unmet_tests)
                    + f"); medical justification: {facts.justification.strip()}",
                ))  # fmt: skip
        _shelf_life(c, facts, product)

    elif act is A.DISPATCH:
        _coi_check(c, facts)
        _shelf_life(c, facts, product)
        t, rng = facts.step_temperature_c, product.storage_temp_c
        if t is not None and rng is not None and not rng.contains(t):
            c.fail("storage_temperature", f"{t:g} °C at dispatch is outside the storage range "
                   f"{rng.text}")

    elif act is A.RECEIVE_AT_BEDSIDE:
        _coi_check(c, facts)
        rng = product.transport_temp_c
        if rng is not None:
            if not facts.transit_readings:
                c.fail("transport_temperature", "no transport temperature record")
            else:
                bad = excursions(facts.transit_readings, rng)
                if bad:
                    c.fail("transport_temperature", f"{len(bad)} reading(s) outside "
                           f"{rng.text}: {', '.join(bad)}")
            t = facts.step_temperature_c
            if t is not None and not rng.contains(t):
                c.fail("transport_temperature", f"{t:g} °C on arrival at the bedside is "
                       f"outside {rng.text}")
        _shelf_life(c, facts, product)

    elif act is A.ADMINISTER:
        if facts.gate_unmet is None:
            c.fail("dosing_gate", "the dosing gate was not run for this administration")
        else:
            c.unmet.extend(facts.gate_unmet)

    elif act in (A.QUARANTINE, A.INVESTIGATE, A.RETURN):
        _reason(c, facts, act.value)

    elif act is A.RESUME:
        _role(c, facts, "qa", "closing an investigation")
        _reason(c, facts, "resumption (the investigation's conclusion)")
        if facts.quarantined_from is None:
            c.fail("quarantined_from", "the state the batch was quarantined from is not given")
        elif State(facts.quarantined_from) not in _QUARANTINABLE:
            c.fail("quarantined_from", f"a batch is never quarantined from "
                   f"{State(facts.quarantined_from).value}")
        else:
            back = State(facts.quarantined_from)
            target = back if back in PRE_RELEASE else S.QA_REVIEW

    elif act is A.DESTROY:
        _role(c, facts, "qa", "destruction")
        _reason(c, facts, "destruction")

    unmet = tuple(c.unmet)
    return Decision(act, st, None if unmet else target, unmet, tuple(deviations))
