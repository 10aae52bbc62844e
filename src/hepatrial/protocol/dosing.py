"""The dosing gate: may this batch be given to this participant, now, at this dose?

:func:`check_administration` is a pure function of plain dataclasses (:class:`GateBatch`,
:class:`GateParticipant`, :class:`AdministrationRequest`, an optional :class:`DosingPause`)
and the protocol's product. It returns **every** unmet condition, named and with its reason,
and the deviations an allowed administration records. The store runs it on every path that
writes an administration (page, API, CLI, import, edit) — one rule, one place.

Conditions (``Unmet.condition``):

=============================  ===========================================================
``protocol``                   the protocol declares a product
``batch_exists``               the batch named exists
``batch_belongs``              it is this participant's (autologous: chain of identity)
``batch_released``             it is released (normally or exceptionally) and not since
                               quarantined, returned, destroyed or already administered;
                               the administration is not before the release
``within_shelf_life``          formulated, and given before formulation + shelf life
``transport_temperature``      logger readings in transit exist and none is outside the
                               product's transport range
``coi_scanned``                the scanned chain-of-identity id is valid (check character)
                               and is the batch's id, made for this participant
``patient_identifiers``        at least two patient identifiers were checked at the
                               bedside and each matches the participant's record
``participant_enrolled``       the participant is enrolled
``participant_eligible``       the participant's eligibility is determined and met
``dosing_not_paused``          no stopping rule pauses dosing (the pause is an input)
``route_allowed``              the route is one the protocol allows
``weight_recorded``            a weight exists when the dose is per kg
``dose_in_range``              the dose (total, or per kg of the latest weight) is in the
                               protocol's range — or an explicit override with its reason
                               is given, which records a **major** ``dosing`` deviation
=============================  ===========================================================

Sources: FACT-JACIE International Standards (administration: identity of recipient and
product verified at the bedside); FDA draft guidance "Considerations for the Development of
CAR T Cell Products" (2022; at least two patient identifiers on labels and at the bedside);
21 CFR 1271.290 (tracking from donor to recipient); ISBT 128 ST-028 (chain of identity);
ICH E6(R3) 4.1 / 21 CFR 11.10(f) (operational checks enforcing the permitted sequence);
ICH E3 §10.2 (dosing deviations reported).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

from hepatrial.protocol.coi import coi_matches_participant, validate_coi
from hepatrial.protocol.models import Product
from hepatrial.protocol.product_lifecycle import (
    RELEASE_STATES,
    Deviation,
    TemperatureReading,
    Unmet,
    excursions,
)

__all__ = [
    "CONDITIONS",
    "MIN_IDENTIFIERS",
    "AdministrationRequest",
    "DosingPause",
    "GateBatch",
    "GateParticipant",
    "GateResult",
    "check_administration",
]

#: patient identifiers checked at the bedside (FDA CAR-T draft guidance 2022: at least two)
MIN_IDENTIFIERS = 2


@dataclass(frozen=True)
class GateBatch:
    """The batch as stored: its lifecycle state (:class:`~hepatrial.protocol.
    product_lifecycle.State` value; a store without the full lifecycle passes ``released``
    for a released batch) and the facts the gate checks."""

    batch_id: str
    participant: str
    coi: str
    state: str
    released_at: _dt.datetime | None = None
    formulated_at: _dt.datetime | None = None
    transit_readings: tuple[TemperatureReading, ...] = ()


@dataclass(frozen=True)
class GateParticipant:
    """The participant as stored: study id, the identifiers kept on the record (kind ->
    value, e.g. ``{"study_id": "K01", "year_of_birth": "1962", "hospital_number": ...}``),
    status, whether eligibility was met (None = not determined) and the latest weight."""

    study_id: str
    identifiers: Mapping[str, str]
    status: str
    eligible: bool | None
    weight_kg: float | None = None
    weight_date: _dt.date | None = None


@dataclass(frozen=True)
class AdministrationRequest:
    """An administration as entered: the participant and batch named, the id scanned from
    the product's label, the patient identifiers checked at the bedside (kind -> value), the
    route, the dose, when and by whom; ``dose_override_reason`` gives an out-of-range dose
    deliberately (recorded as a major deviation)."""

    participant: str
    batch_id: str
    scanned_coi: str
    identifiers: Mapping[str, str]
    route: str
    cells_total: float
    at: _dt.datetime
    operator: str
    volume_ml: float | None = None
    dose_override_reason: str = ""


@dataclass(frozen=True)
class DosingPause:
    """Dosing paused by a stopping rule (from the safety module): which rule and why."""

    rule: str
    reason: str


@dataclass(frozen=True)
class GateResult:
    """Every unmet condition, the deviations to record, and the dose per kg (when a weight
    is known)."""

    unmet: tuple[Unmet, ...]
    deviations: tuple[Deviation, ...] = ()
    cells_per_kg: float | None = None

    @property
    def allowed(self) -> bool:
        """True when the administration may be recorded."""
        return not self.unmet

    def message(self) -> str:
        """A heading and one line per unmet condition."""
        if self.allowed:
            return "administration allowed"
        return "\n".join([f"administration refused ({len(self.unmet)} unmet condition(s)):"]
                         + [f"  {u}" for u in self.unmet])


#: the condition names, in the order they are checked
CONDITIONS: tuple[str, ...] = (
    "protocol", "batch_exists", "batch_belongs", "batch_released", "within_shelf_life",
    "transport_temperature", "coi_scanned", "patient_identifiers", "participant_enrolled",
    "participant_eligible", "dosing_not_paused", "route_allowed", "weight_recorded",
    "dose_in_range",
)  # fmt: skip


def _aware(t: object) -> bool:
    return isinstance(t, _dt.datetime) and t.tzinfo is not None and t.utcoffset() is not None


def check_administration(
    request: AdministrationRequest,
    batch: GateBatch | None,
    participant: GateParticipant | None,
    product: Product | None,
    *,
    pause: DosingPause | None = None,
) -> GateResult:
    """Judge an administration against every condition of the gate (module docstring).

    ``batch``: the stored batch whose id is ``request.batch_id`` (None when none has it);
    ``participant``: the stored participant ``request.participant`` (None when unknown);
    ``pause``: the stopping rule currently pausing dosing, if any.
    """
    unmet: list[Unmet] = []
    fail = lambda cond, why: unmet.append(Unmet(cond, why))  # noqa: E731
    deviations: list[Deviation] = []
    at = request.at
    if not _aware(at):
        fail("within_shelf_life", f"the time of administration {at!r} has no time zone")
        at = None
    if product is None:
        fail("protocol", "the protocol declares no product: nothing may be administered")

    # the batch: exists, is this participant's, released, in date, kept cold
    if batch is None or batch.batch_id != request.batch_id:
        fail("batch_exists", f"batch {request.batch_id!r} does not exist")
        batch = None
    else:
        if batch.participant != request.participant:
            fail("batch_belongs", f"batch {batch.batch_id!r} belongs to participant "
                 f"{batch.participant}, not to {request.participant} (autologous product)")
        if batch.state == "administered":
            fail("batch_released", f"batch {batch.batch_id!r} has already been administered")
        elif batch.state not in RELEASE_STATES:
            fail("batch_released", f"batch {batch.batch_id!r} is {batch.state}, not released")
        elif batch.released_at is None:
            fail("batch_released", f"batch {batch.batch_id!r} has no release time")
        elif at is not None and _aware(batch.released_at) and at < batch.released_at:
            fail("batch_released", f"{at.isoformat()} is before the release of batch "
                 f"{batch.batch_id!r} at {batch.released_at.isoformat()}")
        if product is not None and product.shelf_life_hours is not None:
            f = batch.formulated_at
            if f is None or not _aware(f):
                fail("within_shelf_life", "the time of formulation is not recorded")
            elif at is not None:
                expiry = product.expiry(f)
                assert expiry is not None
                if at < f:
                    fail("within_shelf_life", f"{at.isoformat()} is before the formulation "
                         f"at {f.isoformat()}")
                elif at > expiry:
                    fail("within_shelf_life", f"expired at {expiry.isoformat()} "
                         f"({product.shelf_life_hours:g} h after formulation)")
        if product is not None and product.transport_temp_c is not None:
            if not batch.transit_readings:
                fail("transport_temperature", "no transport temperature record")
            else:
                bad = excursions(batch.transit_readings, product.transport_temp_c)
                if bad:
                    fail("transport_temperature", f"{len(bad)} reading(s) outside "
                         f"{product.transport_temp_c.text}: {', '.join(bad)}")

    # identity at the bedside: the scanned label and two patient identifiers
    res = validate_coi(request.scanned_coi)
    if not res.ok:
        fail("coi_scanned", res.reason)
    else:
        scanned = request.scanned_coi.rstrip("\r\n")
        if batch is not None and scanned != batch.coi:
            fail("coi_scanned", f"scanned {scanned!r} is not the chain-of-identity id of "
                 f"batch {batch.batch_id!r} ({batch.coi!r})")
        elif not coi_matches_participant(scanned, request.participant):
            fail("coi_scanned", f"scanned {scanned!r} was not made for participant "
                 f"{request.participant}")
    presented = {k: v for k, v in request.identifiers.items() if str(v).strip()}
    if len(presented) < MIN_IDENTIFIERS:
        fail("patient_identifiers", f"{len(presented)} patient identifier(s) checked; at "
             f"least {MIN_IDENTIFIERS} are needed")
    if participant is not None:
        for kind, value in sorted(presented.items()):
            on_record = participant.identifiers.get(kind)
            if on_record is None:
                fail("patient_identifiers", f"{kind!r} is not an identifier on the "
                     f"participant's record ({', '.join(sorted(participant.identifiers))})")
            elif str(value).strip() != str(on_record).strip():
                fail("patient_identifiers", f"{kind} {str(value).strip()!r} does not match "
                     "the participant's record")

    # the participant
    if participant is None or participant.study_id != request.participant:
        fail("participant_enrolled", f"participant {request.participant!r} does not exist")
        participant = None
    else:
        if participant.status != "enrolled":
            fail("participant_enrolled", f"{participant.study_id} is {participant.status}, "
                 "not enrolled")
        if participant.eligible is None:
            fail("participant_eligible", f"the eligibility of {participant.study_id} is not "
                 "determined")
        elif not participant.eligible:
            fail("participant_eligible", f"{participant.study_id} does not meet the "
                 "eligibility criteria")
    if pause is not None:
        fail("dosing_not_paused", f"dosing is paused by stopping rule {pause.rule}: "
             f"{pause.reason}")

    # route and dose
    cells_per_kg = None
    weight = participant.weight_kg if participant is not None else None
    if weight is not None and (isinstance(weight, bool) or not math.isfinite(weight)
                               or weight <= 0):
        weight = None
    if product is not None:
        if request.route not in product.routes:
            fail("route_allowed", f"{request.route!r} is not a route the protocol allows "
                 f"({', '.join(product.routes)})")
        cells = request.cells_total
        if isinstance(cells, bool) or not isinstance(cells, int | float) or not (
            math.isfinite(cells) and cells > 0
        ):
            fail("dose_in_range", f"{cells!r} is not a positive number of cells")
        else:
            if weight is not None:
                cells_per_kg = cells / weight
            if product.dose_basis == "per_kg" and weight is None:
                fail("weight_recorded", "the dose is per kg of body weight and the "
                     "participant has no weight recorded")
            else:
                problem = product.dose_problem(cells, weight)
                if problem is not None:
                    why = request.dose_override_reason.strip()
                    if not why:
                        fail("dose_in_range", problem + " (give an override with its reason "
                             "to administer it; it is recorded as a major deviation)")
                    else:
                        deviations.append(Deviation(
                            "dosing", "major", f"{problem}; administered by override: {why}"))
    return GateResult(tuple(unmet), tuple(deviations), cells_per_kg)
