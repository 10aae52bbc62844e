"""Rules of an administration (infusion) of the cell product, and the dosing gate.

:func:`validate_administration` judges the state an administration is about to be written in,
on creation and on every change, from the values and the facts the service passes in
(:class:`AdministrationFacts`; nothing here reads the database). It checks the values
themselves and then runs **the dosing gate**,
:func:`hepatrial.protocol.dosing.check_administration`, on the batch, the participant and the
safety pause as the store holds them — one rule, one place, for every path that writes an
administration (the services, hence the admin, the CLI, the importer, the API and pages).
A refusal is one :class:`~hepatrial.trials.validators.RuleViolation` naming every problem:
each field problem under its field, each unmet condition of the gate under the condition's
name (``batch_released``, ``within_shelf_life``, ``coi_scanned``, ``patient_identifiers``,
``dose_in_range``, ...; :data:`hepatrial.protocol.dosing.CONDITIONS`).

Rules of the values (field: reason):

* ``route``: a route code (the gate checks the protocol allows it).
* ``cells_total``: a positive number of cells; ``cells_per_kg``: positive when given.
* ``volume_ml``: positive, at most 2 decimals and 6 digits before the point (never rounded).
* ``administered_at``: the start of the infusion, a date and time with its time zone, not in
  the future, not before the participant's enrolment day, nor after the participant's
  withdrawal, death or transplantation (``date`` is its day, UTC).
* ``operator``: who gave it (non-empty).
* ``batch_id``, ``scanned_coi``: given; ``identifiers``: an object ``{kind: value}`` of the
  patient identifiers checked at the bedside.
* ``dose_override_reason``: text (an out-of-range dose is given only with it; the gate then
  records a major ``dosing`` deviation, ICH E3 §10.2).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hepatrial.protocol.dosing import (
    AdministrationRequest,
    DosingPause,
    GateBatch,
    GateParticipant,
    GateResult,
    check_administration,
)
from hepatrial.protocol.models import Product
from hepatrial.trials.validators import _values as v
from hepatrial.trials.validators._common import Checker
from hepatrial.trials.validators.product import aware_datetime
from hepatrial.vocab import ROUTE, codes

__all__ = ["ENDED", "AdministrationFacts", "validate_administration"]

#: participant statuses after which nothing more is given (the status date ends treatment)
ENDED = ("withdrawn", "died", "transplanted", "screen_failed")


@dataclass(frozen=True)
class AdministrationFacts:
    """What the store knows that an administration's rules need (gathered by the service).

    ``batch``/``person`` are the gate's view of the stored batch and participant *as they
    were before this administration* (for a correction, the batch's state before it was
    given and the participant's status then), ``pause`` the stopping rule pausing dosing.
    """

    participant: str
    enrolment_date: _dt.date | None
    status: str
    status_date: _dt.date | None
    product: Product | None
    batch: GateBatch | None
    person: GateParticipant | None
    pause: DosingPause | None = None


def validate_administration(
    values: Mapping[str, Any], facts: AdministrationFacts, *, now: _dt.datetime | None = None
) -> tuple[dict[str, Any], GateResult]:
    """Check an administration and run the dosing gate; return ``(typed values, gate
    result)`` (the result's deviations are to be recorded) or raise ``RuleViolation`` with
    every problem and every unmet condition.

    ``values``: ``route``, ``cells_total``, ``cells_per_kg``, ``volume_ml``,
    ``administered_at``, ``operator``, ``batch_id``, ``scanned_coi``, ``identifiers``,
    ``dose_override_reason``.
    """
    now = now or _dt.datetime.now(_dt.UTC)
    c = Checker(f"participant {facts.participant} administration")
    route = v.choice(c, "route", values.get("route"), codes(ROUTE))
    cells = v.number(c, "cells_total", values.get("cells_total"), positive=True)
    per_kg = v.number(c, "cells_per_kg", values.get("cells_per_kg"), required=False,
                      positive=True)
    volume = v.decimal(c, "volume_ml", values.get("volume_ml"), max_digits=8, places=2,
                       positive=True)
    at = aware_datetime(c, "administered_at", values.get("administered_at"), now=now)
    d = at.date() if at is not None else None
    if d is not None and facts.enrolment_date is not None and d < facts.enrolment_date:
        c.fail("administered_at", f"{d} is before the participant's enrolment on "
               f"{facts.enrolment_date}")
    if (d is not None and facts.status in ENDED and facts.status_date is not None
            and d > facts.status_date):
        c.fail("administered_at", f"{d} is after the participant's status {facts.status!r} on "
               f"{facts.status_date}")
    operator = v.text(c, "operator", values.get("operator"), max_length=100)
    batch_id = v.text(c, "batch_id", values.get("batch_id"), max_length=60)
    scanned = v.text(c, "scanned_coi", values.get("scanned_coi"), max_length=40)
    ids = values.get("identifiers")
    identifiers: dict[str, str] = {}
    if ids is None:
        ids = {}
    if not isinstance(ids, Mapping):
        c.fail("identifiers", f"{ids!r} is not an object {{kind: value}} of patient identifiers")
    else:
        for k, x in ids.items():
            if not isinstance(x, str | int) or isinstance(x, bool):
                c.fail(f"identifiers.{k}", f"{x!r} is not text")
            else:
                identifiers[str(k).strip()] = str(x).strip()
    override = v.text(c, "dose_override_reason", values.get("dose_override_reason", ""),
                      max_length=2000, required=False)
    # the gate runs whatever the values' problems, so that a refusal names every unmet
    # condition; a condition that only repeats a bad value's problem is left out
    placeholder = []
    if at is None:
        placeholder.append(("within_shelf_life", "the time of administration None"))
    if cells is None:
        placeholder.append(("dose_in_range", "nan is not"))
    if route is None:
        placeholder.append(("route_allowed", "'' is not"))
    request = AdministrationRequest(
        participant=facts.participant, batch_id=batch_id or "", scanned_coi=scanned or "",
        identifiers=identifiers, route=route or "",
        cells_total=cells if cells is not None else float("nan"),
        at=at,  # type: ignore[arg-type]  # None: the gate names it; left out above
        operator=operator or "", volume_ml=float(volume) if volume is not None else None,
        dose_override_reason=override or "",
    )
    gate = check_administration(request, facts.batch, facts.person, facts.product,
                                pause=facts.pause)
    for u in gate.unmet:
        if not any(u.condition == k and u.reason.startswith(r) for k, r in placeholder):
            c.fail(u.condition, u.reason)
    c.done()
    if per_kg is None and gate.cells_per_kg is not None:
        per_kg = gate.cells_per_kg
    return {
        "route": route,
        "cells_total": cells,
        "cells_per_kg": per_kg,
        "volume_ml": volume,
        "administered_at": at,
        "date": d,
        "operator": operator,
        "batch_id": batch_id,
        "scanned_coi": scanned,
        "identifiers_checked": identifiers,
        "dose_override_reason": override or None,
    }, gate
