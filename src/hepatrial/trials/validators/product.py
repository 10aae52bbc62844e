"""Rules of a cell-product batch: identity, release tests and release.

One function, :func:`validate_batch`, judges the state a batch is about to be written in — at
registration (never released), at release and at every later change — from the values and
the facts the service passes in (:class:`BatchFacts`; nothing here reads the database).

Rules (field: reason):

* ``batch_id``: non-empty text of at most 60 characters, unique; it cannot change once given.
* ``participant``: exists; a batch is registered (or moved) for a participant who is screened
  or enrolled (not screen-failed, withdrawn, dead or transplanted), and **released only for an
  enrolled participant** (``enrolled`` is the status in which the product is given; the store
  has no pre-enrolment release). The participant of a batch already given cannot change
  (chain of identity).
* ``coi_identifier``: at most 60 characters (ISBT 128 ST-028 product code).
* ``release_tests``: an object ``{test name: result}``; every name is a test of the protocol's
  release specification (``[[product.release_spec]]``) and every result is a valid result of
  that test (:meth:`hepatrial.protocol.models.ReleaseTest.assess`: a number in the test's unit
  or the qualitative text; ``{"value", "unit"}`` names the unit, never converted). A failing
  result may be recorded on an unreleased batch (a batch that fails QC is kept, not released).
* release (``released`` true): only by the release service, never undone here; needs a
  ``release_date`` (not in the future, not before the participant's screening, not after the
  first administration of the batch), a protocol with a release specification, and a result
  **meeting** every test of it. Per ISCT minimal criteria for MSC (Dominici M, et al.
  Cytotherapy 2006;8(4):315-317) the kharaziha2009 specification asks CD73/CD90/CD105 >= 95 %,
  CD45/CD34/CD14 or CD11b/CD79a or CD19/HLA-DR <= 2 %, plus viability, sterility, endotoxin
  and mycoplasma (see the protocol file for the sources).
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

__all__ = ["BATCH_STATUSES", "RELEASE_STATUSES", "BatchFacts", "release_problems",
           "validate_batch"]

#: participant statuses for which a batch may be registered
BATCH_STATUSES = ("screened", "enrolled")
#: participant statuses for which a batch may be released
RELEASE_STATUSES = ("enrolled",)


@dataclass(frozen=True)
class BatchFacts:
    """What the store knows that a batch's rules need (gathered by the service)."""

    #: study id of the participant named, and its status / screening date (None: no such
    #: participant)
    participant: str | None
    participant_status: str | None
    screening_date: _dt.date | None
    #: the protocol's product (its ``release_spec``); None when the protocol has no product
    product: Product | None
    #: another batch already has this batch id (registration)
    batch_id_taken: bool = False
    #: the stored batch before this change (None at registration)
    stored_batch_id: str | None = None
    stored_participant: str | None = None
    stored_released: bool = False
    #: administrations of this batch: how many, and the first date
    n_administrations: int = 0
    first_administration: _dt.date | None = None


def release_problems(tests: Mapping[str, Any], product: Product | None) -> list[tuple[str, str]]:
    """``(field, reason)`` for every way ``tests`` fail to meet the release specification
    (missing results and results outside a criterion). Invalid results and unknown names are
    reported by :func:`validate_batch` whether or not the batch is released."""
    if product is None or not product.release_spec:
        return [("released", "the protocol has no release specification "
                 "([[product.release_spec]]): a batch cannot be released")]
    out: list[tuple[str, str]] = []
    missing = [t.name for t in product.release_spec if t.name not in tests]
    if missing:
        out.append(("release_tests", "no result for " + ", ".join(missing)
                    + " (every test of the protocol's release specification is needed)"))
    for t in product.release_spec:
        if t.name in tests:
            outcome, reason = t.assess(tests[t.name])
            if outcome == "fail":
                out.append((f"release_tests.{t.name}", reason))
    return out


def validate_batch(
    values: Mapping[str, Any], facts: BatchFacts, *, today: _dt.date | None = None
) -> dict[str, Any]:
    """Check a batch's state; return the typed values or raise ``RuleViolation`` with all
    problems.

    ``values``: ``batch_id``, ``coi_identifier``, ``release_tests``, ``released``,
    ``release_date`` (the participant is in ``facts``).
    """
    today = today or _today()
    bid = values.get("batch_id")
    c = Checker(f"batch {bid}" if not v.missing(bid) else "batch")
    batch_id = v.text(c, "batch_id", bid, max_length=60)
    if batch_id is not None:
        if facts.stored_batch_id is not None and batch_id != facts.stored_batch_id:
            c.fail("batch_id", f"the batch id cannot change (it is {facts.stored_batch_id!r})")
        elif facts.stored_batch_id is None and facts.batch_id_taken:
            c.fail("batch_id", f"batch {batch_id!r} already exists")
    coi = v.text(c, "coi_identifier", values.get("coi_identifier", ""), max_length=60,
                 required=False)
    released = v.boolean(c, "released", values.get("released", False))
    release_date = v.date(c, "release_date", values.get("release_date"), required=False)

    # participant
    new_participant = facts.participant != facts.stored_participant
    if facts.participant is None:
        c.fail("participant", "no such participant")
    else:
        status = facts.participant_status
        if (
            facts.stored_participant is not None
            and facts.participant != facts.stored_participant
            and facts.n_administrations
        ):
            c.fail("participant", f"batch already given to {facts.stored_participant} "
                   f"({facts.n_administrations} administration(s)): it cannot move to "
                   f"{facts.participant} (chain of identity)")
        if new_participant and status not in BATCH_STATUSES:
            c.fail("participant", f"{facts.participant} is {status}: a batch is registered "
                   f"only for a participant who is {' or '.join(BATCH_STATUSES)}")

    # release tests: an object of known tests with valid results
    tests = values.get("release_tests")
    if tests is None:
        tests = {}
    if not isinstance(tests, Mapping):
        c.fail("release_tests", f"{tests!r} is not an object {{test name: result}}")
        tests = {}
    spec = facts.product.release_spec if facts.product is not None else ()
    known = {t.name: t for t in spec}
    for name, result in tests.items():
        t = known.get(str(name))
        if t is None:
            c.fail(f"release_tests.{name}", "is not a test of the protocol's release "
                   f"specification (known: {', '.join(known) or 'none'})")
            continue
        outcome, reason = t.assess(result)
        if outcome == "invalid":
            c.fail(f"release_tests.{name}", reason)

    # release
    if facts.stored_released and released is False:
        c.fail("released", "a released batch cannot be un-released")
    if released:
        if release_date is None and "release_date" not in {p.field for p in c}:
            c.fail("release_date", "a released batch needs its release date")
        v.not_future(c, "release_date", release_date, today)
        if release_date is not None:
            if facts.screening_date is not None and release_date < facts.screening_date:
                c.fail("release_date", f"{release_date} is before the participant's "
                       f"screening on {facts.screening_date}")
            if facts.first_administration is not None and (
                release_date > facts.first_administration
            ):
                c.fail("release_date", f"{release_date} is after the batch's first "
                       f"administration on {facts.first_administration}")
        if (
            facts.participant is not None
            and (not facts.stored_released or new_participant)
            and facts.participant_status not in RELEASE_STATUSES
        ):
            c.fail("participant", f"{facts.participant} is {facts.participant_status}: a "
                   "batch is released only for an enrolled participant")
        for field, reason in release_problems(tests, facts.product):
            c.fail(field, reason)
    elif release_date is not None and released is False:
        c.fail("release_date", "only a released batch has a release date (release it through "
               "the release service)")
    c.done()
    return {
        "batch_id": batch_id,
        "coi_identifier": coi,
        "release_tests": dict(tests),
        "released": bool(released),
        "release_date": release_date,
    }
