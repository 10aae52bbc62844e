"""Rules of an administration (infusion) of the cell product.

:func:`validate_administration` judges the state an administration is about to be written in,
on creation and on every change, from the values and the facts the service passes in
(:class:`AdministrationFacts`; nothing here reads the database). :func:`dose_deviation` is the
protocol's dose rule, run by the service on creation and on every change of the dose.

Rules (field: reason):

* ``participant``: enrolled (has an enrolment date, day 0) and the administration is not
  dated before the enrolment, nor after the participant's withdrawal, death or
  transplantation.
* ``route``: a route code the protocol allows (``product.routes``).
* ``cells_total``: a positive number of cells; ``cells_per_kg``: positive when given (and
  needed when the protocol doses per kg). A dose outside the protocol's
  ``cells_min``-``cells_max`` is **not refused**: it is stored and the service records a major
  ``dosing`` protocol deviation (ICH E3 §10.2: deviations are reported, not hidden).
* ``volume_ml``: positive, at most 2 decimals and 6 digits before the point (never rounded).
* ``date``: a date, not in the future, not before the release of its batch.
* ``operator``: who gave it (non-empty).
* ``batch_id`` (chain of identity, FACT-JACIE standards / ISBT 128): the batch exists, belongs
  to this participant (autologous product) and has been released.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hepatrial.protocol.models import Product
from hepatrial.trials.validators import _values as v
from hepatrial.trials.validators._common import Checker
from hepatrial.trials.validators._common import today as _today
from hepatrial.vocab import ROUTE, codes

__all__ = ["AdministrationFacts", "BatchInfo", "dose_deviation", "validate_administration"]

#: participant statuses after which nothing more is given (the status date ends treatment)
ENDED = ("withdrawn", "died", "transplanted", "screen_failed")


@dataclass(frozen=True)
class BatchInfo:
    """The batch an administration names, as stored."""

    batch_id: str
    participant: str
    released: bool
    release_date: _dt.date | None


@dataclass(frozen=True)
class AdministrationFacts:
    """What the store knows that an administration's rules need (gathered by the service)."""

    participant: str
    enrolment_date: _dt.date | None
    status: str
    status_date: _dt.date | None
    #: the protocol's product (routes, dose range); None when the protocol has none
    product: Product | None
    #: the batch named by ``batch_id``; None when no batch has that id
    batch: BatchInfo | None


def dose_deviation(
    cells_total: float, cells_per_kg: float | None, product: Product | None
) -> str | None:
    """Description of the dosing deviation when the dose is outside the protocol's range, else
    None: the protocol's own dose rule (:meth:`hepatrial.protocol.models.Product.dose_problem`;
    per kg with the weight the administration's ``cells_per_kg`` was computed from)."""
    if product is None:
        return None
    if product.dose_basis == "per_kg":
        if not cells_per_kg:
            return None  # validate_administration refuses a per-kg dose without cells_per_kg
        return product.dose_problem(cells_total, cells_total / cells_per_kg)
    return product.dose_problem(cells_total)


def validate_administration(
    values: Mapping[str, Any], facts: AdministrationFacts, *, today: _dt.date | None = None
) -> dict[str, Any]:
    """Check an administration's state; return the typed values or raise ``RuleViolation``
    with every problem.

    ``values``: ``route``, ``cells_total``, ``cells_per_kg``, ``volume_ml``, ``date``,
    ``operator``, ``batch_id`` (the participant is in ``facts``).
    """
    today = today or _today()
    c = Checker(f"participant {facts.participant} administration")
    prod = facts.product
    route = v.choice(c, "route", values.get("route"), codes(ROUTE))
    if route is not None and prod is not None and route not in prod.routes:
        c.fail("route", f"{route!r} is not allowed by the protocol ({', '.join(prod.routes)})")
    cells = v.number(c, "cells_total", values.get("cells_total"), positive=True)
    per_kg = v.number(c, "cells_per_kg", values.get("cells_per_kg"), required=False,
                      positive=True)
    if prod is not None and prod.dose_basis == "per_kg" and per_kg is None and (
        "cells_per_kg" not in {p.field for p in c}
    ):
        c.fail("cells_per_kg", "the protocol doses per kg of body weight: give cells_per_kg "
               "(or record the participant's weight first)")
    volume = v.decimal(c, "volume_ml", values.get("volume_ml"), max_digits=8, places=2,
                       positive=True)
    d = v.date(c, "date", values.get("date"))
    v.not_future(c, "date", d, today)
    operator = v.text(c, "operator", values.get("operator"), max_length=100)

    # the participant receives it while enrolled
    if facts.enrolment_date is None:
        c.fail("participant", f"{facts.participant} is not enrolled (status {facts.status}): "
               "only an enrolled participant receives the product")
    elif d is not None and d < facts.enrolment_date:
        c.fail("date", f"{d} is before the participant's enrolment on {facts.enrolment_date}")
    if (
        d is not None
        and facts.status in ENDED
        and facts.status_date is not None
        and d > facts.status_date
    ):
        c.fail("date", f"{d} is after the participant's status {facts.status!r} on "
               f"{facts.status_date}")

    # chain of identity: the named batch exists, is this participant's and is released
    batch_id = v.text(c, "batch_id", values.get("batch_id"), max_length=60)
    if batch_id is not None:
        b = facts.batch
        if b is None or b.batch_id != batch_id:
            c.fail("batch_id", f"batch {batch_id!r} does not exist (register and release the "
                   "batch first)")
        else:
            if b.participant != facts.participant:
                c.fail("batch_id", f"batch {batch_id!r} belongs to participant {b.participant} "
                       f"(chain of identity), not to {facts.participant}")
            if not b.released:
                c.fail("batch_id", f"batch {batch_id!r} has not been released")
            elif b.release_date is not None and d is not None and d < b.release_date:
                c.fail("date", f"{d} is before the release of batch {batch_id!r} on "
                       f"{b.release_date}")
    c.done()
    return {
        "route": route,
        "cells_total": cells,
        "cells_per_kg": per_kg,
        "volume_ml": volume,
        "date": d,
        "operator": operator,
        "batch_id": batch_id,
    }
