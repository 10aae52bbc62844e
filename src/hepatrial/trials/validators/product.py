"""Rules of the cell-product records: harvest, batch registration, manufacturing steps, QC
results and post-infusion observations.

Each function judges the values about to be written from the facts the service passes in
(plain dataclasses; nothing here reads the database) and raises one
:class:`~hepatrial.trials.validators.RuleViolation` naming every problem (record, field,
reason), or returns the typed values. The lifecycle steps themselves (receipt, release,
dispatch, ...) are judged by the pure state machine
(:func:`hepatrial.protocol.product_lifecycle.check_transition`), administrations by
:mod:`hepatrial.trials.validators.administration` (the dosing gate).

Times are timezone-aware datetimes (or ISO 8601 text with an offset, ``2008-01-06T08:30Z``):
a time without a zone is refused, never assumed. Nothing entered is converted: a result is
kept as entered beside its typed value, a unit must be the specification's unit.

Rules (field: reason):

* harvest — ``participant`` screened or enrolled; ``site`` a code usable in a
  chain-of-identity id (1-8 of A-Z 0-9); ``collected_at`` given, not in the future, not before
  the participant's screening day; ``operator`` given; ``volume_ml`` a positive number with at
  most 2 decimals (its acceptance range is checked at receipt, where a volume outside it is
  refused); ``anticoagulant_lot``, ``container``, ``transport``, ``collection_site`` text.
* batch — ``batch_id`` 1-60 characters, unique; ``coi`` a harvest of this participant that
  has no batch yet; ``facility`` text.
* manufacturing step — ``step`` a step of the protocol's process, not recorded twice for a
  batch; ``started_at`` <= ``completed_at``, neither in the future nor before the batch's
  receipt; ``operator`` given; ``reagents`` a list of ``{name, lot}`` (both given); ``controls``
  only the step's in-process controls, each a valid result (a failing result is kept: the
  step that completes manufacture refuses it).
* QC result — ``test`` a test of the protocol's release specification; ``result`` a valid
  result of it (a number for a quantitative test, a text for a qualitative one); ``unit``
  the specification's unit (empty: the specification's unit); ``analyst`` given;
  ``tested_on`` not in the future nor before the harvest; ``method``, ``source`` text.
* post-infusion observation — ``minute`` one of 0, 15, 30, 60; ``observed_at`` not before the
  infusion nor in the future; vital signs whole numbers in physiological ranges (temperature
  30.0-44.0 °C with one decimal); ``observer`` given; a ``reaction`` needs its description,
  CTCAE term and grade (1-5).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hepatrial.protocol.models import AcceptanceTest, Product
from hepatrial.trials.validators import _values as v
from hepatrial.trials.validators._common import Checker

__all__ = [
    "BATCH_STATUSES",
    "OBSERVATION_MINUTES",
    "VITAL_RANGES",
    "BatchFacts",
    "HarvestFacts",
    "ObservationFacts",
    "QcFacts",
    "StepFacts",
    "aware_datetime",
    "typed_result",
    "validate_batch",
    "validate_harvest",
    "validate_observation",
    "validate_qc",
    "validate_step",
]

#: participant statuses for which a harvest or a batch may be recorded
BATCH_STATUSES = ("screened", "enrolled")
#: minutes after the start of an infusion at which vital signs are taken
OBSERVATION_MINUTES = (0, 15, 30, 60)
#: physiological ranges of the vital signs (inclusive): beyond them a value is a typing error
VITAL_RANGES: dict[str, tuple[int, int]] = {
    "heart_rate": (20, 250),
    "systolic_bp": (40, 300),
    "diastolic_bp": (20, 200),
    "respiratory_rate": (4, 80),
    "spo2": (50, 100),
}
_SITE = re.compile(r"^[A-Z0-9]{1,8}$")


def aware_datetime(
    c: Checker, name: str, value: Any, *, required: bool = True, now: _dt.datetime | None = None
) -> _dt.datetime | None:
    """A timezone-aware datetime (or ISO 8601 text with an offset), not after ``now``."""
    if v.missing(value):
        if required:
            c.fail(name, "is required (a date and time with its time zone, e.g. "
                   "2008-01-06T08:30:00+03:30)")
        return None
    t: Any = value
    if isinstance(value, str):
        text = value.strip()
        try:
            t = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            c.fail(name, f"{value!r} is not a date and time (ISO 8601, e.g. "
                   "2008-01-06T08:30:00+03:30)")
            return None
    if not isinstance(t, _dt.datetime):
        c.fail(name, f"{value!r} is not a date and time")
        return None
    if t.tzinfo is None or t.utcoffset() is None:
        c.fail(name, f"{value!r} has no time zone (give the offset, e.g. +03:30 or Z)")
        return None
    t = t.astimezone(_dt.UTC)
    if now is not None and t > now:
        c.fail(name, f"{t.isoformat()} is in the future (now is {now.isoformat()})")
        return None
    return t


def _now(now: _dt.datetime | None) -> _dt.datetime:
    return now or _dt.datetime.now(_dt.UTC)


# ---------------------------------------------------------------------- harvest
@dataclass(frozen=True)
class HarvestFacts:
    """What a harvest's rules need: the participant (study id, status, screening date) and
    the site code the chain-of-identity id will carry."""

    participant: str
    participant_status: str
    screening_date: _dt.date | None
    site: str
    product: Product | None


def validate_harvest(
    values: Mapping[str, Any], facts: HarvestFacts, *, now: _dt.datetime | None = None
) -> dict[str, Any]:
    """Check a harvest; return the typed values (``collected_at`` in UTC, ``volume_ml`` a
    Decimal) or raise ``RuleViolation`` with every problem."""
    now = _now(now)
    c = Checker(f"participant {facts.participant} harvest")
    if facts.product is None:
        c.fail("product", "the protocol declares no product")
    if facts.participant_status not in BATCH_STATUSES:
        c.fail("participant", f"{facts.participant} is {facts.participant_status}: a harvest is "
               f"recorded only for a participant who is {' or '.join(BATCH_STATUSES)}")
    if not _SITE.match(facts.site or ""):
        c.fail("site", f"site code {facts.site!r} cannot be used in a chain-of-identity id (1-8 "
               "upper-case letters or digits)")
    at = aware_datetime(c, "collected_at", values.get("collected_at"), now=now)
    if at is not None and facts.screening_date is not None and at.date() < facts.screening_date:
        c.fail("collected_at", f"{at.date()} is before the participant's screening on "
               f"{facts.screening_date}")
    operator = v.text(c, "operator", values.get("operator"), max_length=100)
    volume = v.decimal(c, "volume_ml", values.get("volume_ml"), max_digits=7, places=2,
                       positive=True)
    out = {"collected_at": at, "operator": operator, "volume_ml": volume}
    for name, n in (("anticoagulant_lot", 60), ("container", 100), ("transport", 200),
                    ("collection_site", 100)):
        out[name] = v.text(c, name, values.get(name, ""), max_length=n, required=False)
    c.done()
    return out


# ---------------------------------------------------------------------- batch
@dataclass(frozen=True)
class BatchFacts:
    """What a new batch's rules need (gathered by the service)."""

    participant: str
    participant_status: str
    #: the harvest named by its chain-of-identity id: its participant (None: no such harvest)
    #: and whether a batch was already made from it
    harvest_participant: str | None
    harvest_has_batch: bool = False
    batch_id_taken: bool = False


def validate_batch(values: Mapping[str, Any], facts: BatchFacts) -> dict[str, Any]:
    """Check a new batch (``batch_id``, ``coi``, ``facility``); typed values or
    ``RuleViolation``."""
    bid = values.get("batch_id")
    c = Checker(f"batch {bid}" if not v.missing(bid) else f"participant {facts.participant} batch")
    batch_id = v.text(c, "batch_id", bid, max_length=60)
    if batch_id is not None and facts.batch_id_taken:
        c.fail("batch_id", f"batch {batch_id!r} already exists")
    coi = v.text(c, "coi", values.get("coi"), max_length=40)
    if coi is not None:
        if facts.harvest_participant is None:
            c.fail("coi", f"no harvest has the chain-of-identity id {coi!r} (record the harvest "
                   "first: it makes the id)")
        elif facts.harvest_participant != facts.participant:
            c.fail("coi", f"harvest {coi} is participant {facts.harvest_participant}'s, not "
                   f"{facts.participant}'s (autologous product: chain of identity)")
        elif facts.harvest_has_batch:
            c.fail("coi", f"a batch was already made from harvest {coi}")
    if facts.participant_status not in BATCH_STATUSES:
        c.fail("participant", f"{facts.participant} is {facts.participant_status}: a batch is "
               f"registered only for a participant who is {' or '.join(BATCH_STATUSES)}")
    facility = v.text(c, "facility", values.get("facility", ""), max_length=200, required=False)
    c.done()
    return {"batch_id": batch_id, "coi": coi, "facility": facility}


# ---------------------------------------------------------------------- results
def typed_result(
    c: Checker, name: str, test: AcceptanceTest, result: Any, unit: Any,
    unit_field: str | None = None,
) -> tuple[Any, str, str] | None:
    """``(typed value, value as entered, unit)`` of a result of ``test``, or None with the
    problem recorded. A quantitative result is a number (or its text: kept as entered), in the
    test's unit; a qualitative one a non-empty text. Never converted."""
    if v.missing(result):
        c.fail(name, "no result given")
        return None
    entered = result.strip() if isinstance(result, str) else result
    as_text = entered if isinstance(entered, str) else repr(entered) if isinstance(
        entered, float) else str(entered)
    u = "" if v.missing(unit) else str(unit).strip()
    if u and u != test.unit:
        c.fail(unit_field or name, f"unit {u!r} is not the specification's unit "
               f"{test.unit or '(none)'!r} (results are never converted)")
        return None
    u = test.unit
    if test.qualitative:
        if not isinstance(entered, str):
            c.fail(name, f"{result!r} is not a qualitative result (expected a text such as "
                   f"{test.expected!r})")
            return None
        value: Any = entered
    else:
        if isinstance(entered, bool):
            c.fail(name, f"{result!r} is not a number in {test.unit or 'the test unit'}")
            return None
        try:
            value = float(entered)
        except (TypeError, ValueError):
            c.fail(name, f"{result!r} is not a number in {test.unit or 'the test unit'}")
            return None
        if value.is_integer() and isinstance(entered, int):
            value = int(entered)
    outcome, reason = test.assess(value)
    if outcome == "invalid":
        c.fail(name, reason)
        return None
    if len(as_text) > 100:
        c.fail(name, f"the result is {len(as_text)} characters long (at most 100)")
        return None
    return value, as_text, u


@dataclass(frozen=True)
class StepFacts:
    """What a manufacturing step's rules need."""

    batch_id: str
    product: Product | None
    received_at: _dt.datetime | None
    recorded_steps: frozenset[str] = frozenset()


def validate_step(
    values: Mapping[str, Any], facts: StepFacts, *, now: _dt.datetime | None = None,
    changing: bool = False,
) -> dict[str, Any]:
    """Check a manufacturing step (``step``, ``started_at``, ``completed_at``, ``operator``,
    ``reagents``, ``controls``, ``notes``); typed values (``controls``: name -> (value, as
    entered, unit)) or ``RuleViolation``."""
    now = _now(now)
    code = values.get("step")
    c = Checker(f"batch {facts.batch_id} step {code}")
    step = facts.product.step(str(code)) if facts.product is not None else None
    if step is None:
        known = ", ".join(s.code for s in facts.product.manufacturing) if facts.product else ""
        c.fail("step", f"{code!r} is not a manufacturing step of the protocol (known: "
               f"{known or 'none'})")
    elif not changing and step.code in facts.recorded_steps:
        c.fail("step", f"step {step.code} is already recorded for this batch (correct it with "
               "a reason instead)")
    start = aware_datetime(c, "started_at", values.get("started_at"), now=now)
    end = aware_datetime(c, "completed_at", values.get("completed_at"), now=now)
    if start is not None and end is not None and end < start:
        c.fail("completed_at", f"{end.isoformat()} is before the start {start.isoformat()}")
    if start is not None and facts.received_at is not None and start < facts.received_at:
        c.fail("started_at", f"{start.isoformat()} is before the receipt of the starting "
               f"material at {facts.received_at.isoformat()}")
    operator = v.text(c, "operator", values.get("operator"), max_length=100)
    reagents = values.get("reagents") or []
    typed_reagents: list[dict[str, str]] = []
    if not isinstance(reagents, Sequence) or isinstance(reagents, str):
        c.fail("reagents", f"{reagents!r} is not a list of {{name, lot}}")
    else:
        for i, r in enumerate(reagents, 1):
            if not isinstance(r, Mapping):
                c.fail(f"reagents[{i}]", f"{r!r} is not {{name, lot}}")
                continue
            extra = sorted(set(r) - {"name", "lot", "expiry"})
            if extra:
                c.fail(f"reagents[{i}]", f"unknown key(s) {', '.join(extra)} (name, lot, expiry)")
            name = v.text(c, f"reagents[{i}].name", r.get("name"), max_length=100)
            lot = v.text(c, f"reagents[{i}].lot", r.get("lot"), max_length=60)
            item = {"name": name or "", "lot": lot or ""}
            if not v.missing(r.get("expiry")):
                exp = v.date(c, f"reagents[{i}].expiry", r.get("expiry"))
                if exp is not None:
                    item["expiry"] = exp.isoformat()
            typed_reagents.append(item)
    controls = values.get("controls") or {}
    typed_controls: dict[str, tuple[Any, str, str]] = {}
    if not isinstance(controls, Mapping):
        c.fail("controls", f"{controls!r} is not an object {{control: result}}")
    elif step is not None:
        for name, result in controls.items():
            ctl = step.control(str(name))
            if ctl is None:
                c.fail(f"controls.{name}", f"is not an in-process control of step {step.code} "
                       f"(known: {', '.join(x.name for x in step.controls) or 'none'})")
                continue
            value, unit = result, None
            if isinstance(result, Mapping):
                value, unit = result.get("value"), result.get("unit")
            got = typed_result(c, f"controls.{name}", ctl, value, unit)
            if got is not None:
                typed_controls[ctl.name] = got
    notes = v.text(c, "notes", values.get("notes", ""), max_length=2000, required=False)
    c.done()
    return {"step": step.code if step else code, "started_at": start, "completed_at": end,
            "operator": operator, "reagents": typed_reagents, "controls": typed_controls,
            "notes": notes}


@dataclass(frozen=True)
class QcFacts:
    """What a QC result's rules need."""

    batch_id: str
    product: Product | None
    harvest_date: _dt.date | None = None
    batch_state: str | None = None


#: states in which no QC result is entered (before manufacture starts; destroyed)
NO_QC_STATES = ("harvested", "received", "destroyed")


def validate_qc(
    values: Mapping[str, Any], facts: QcFacts, *, today: _dt.date | None = None
) -> dict[str, Any]:
    """Check a QC result (``test``, ``result``, ``unit``, ``analyst``, ``tested_on``,
    ``method``, ``source``); typed values (``value``, ``value_as_entered``, ``unit``, ...) or
    ``RuleViolation``."""
    today = today or _dt.datetime.now(_dt.UTC).date()
    name = values.get("test")
    c = Checker(f"batch {facts.batch_id} QC {name}")
    t = facts.product.release_test(str(name)) if facts.product is not None else None
    if t is None:
        known = ", ".join(x.name for x in facts.product.release_spec) if facts.product else ""
        c.fail("test", f"{name!r} is not a test of the protocol's release specification "
               f"(known: {known or 'none'})")
    if facts.batch_state in NO_QC_STATES:
        c.fail("batch", f"batch {facts.batch_id} is {facts.batch_state}: QC results are "
               "recorded from the start of manufacture")
    got = typed_result(c, "result", t, values.get("result"), values.get("unit"),
                       unit_field="unit") if t else None
    analyst = v.text(c, "analyst", values.get("analyst"), max_length=100)
    tested = v.date(c, "tested_on", values.get("tested_on"))
    v.not_future(c, "tested_on", tested, today)
    if tested is not None and facts.harvest_date is not None and tested < facts.harvest_date:
        c.fail("tested_on", f"{tested} is before the harvest on {facts.harvest_date}")
    method = v.text(c, "method", values.get("method", ""), max_length=200, required=False)
    source = v.text(c, "source", values.get("source") or "entry", max_length=200)
    c.done()
    assert got is not None and t is not None
    return {"test": t.name, "value": got[0], "value_as_entered": got[1], "unit": got[2],
            "analyst": analyst, "tested_on": tested, "method": method, "source": source}


# ---------------------------------------------------------------------- observations
@dataclass(frozen=True)
class ObservationFacts:
    """What a post-infusion observation's rules need."""

    participant: str
    administered_at: _dt.datetime | None
    minutes_recorded: frozenset[int] = field(default_factory=frozenset)


def validate_observation(
    values: Mapping[str, Any], facts: ObservationFacts, *, now: _dt.datetime | None = None
) -> dict[str, Any]:
    """Check a post-infusion observation; typed values or ``RuleViolation``."""
    now = _now(now)
    minute = values.get("minute")
    c = Checker(f"participant {facts.participant} observation +{minute} min")
    m: int | None = None
    if isinstance(minute, bool) or not isinstance(minute, int | str) or str(minute).strip() not in {
        str(x) for x in OBSERVATION_MINUTES
    }:
        c.fail("minute", f"{minute!r} is not one of {', '.join(map(str, OBSERVATION_MINUTES))}")
    else:
        m = int(str(minute).strip())
        if m in facts.minutes_recorded:
            c.fail("minute", f"the observation at {m} min is already recorded")
    at = aware_datetime(c, "observed_at", values.get("observed_at"), now=now)
    if at is not None and facts.administered_at is not None and at < facts.administered_at:
        c.fail("observed_at", f"{at.isoformat()} is before the start of the infusion at "
               f"{facts.administered_at.isoformat()}")
    out: dict[str, Any] = {"minute": m, "observed_at": at}
    for name, (lo, hi) in VITAL_RANGES.items():
        raw = values.get(name)
        if v.missing(raw):
            out[name] = None
            continue
        x = v.number(c, name, raw)
        if x is None:
            continue
        if not x.is_integer():
            c.fail(name, f"{raw!r} is not a whole number")
        elif not lo <= x <= hi:
            c.fail(name, f"{raw!r} is outside {lo}-{hi} (a typing error?)")
        else:
            out[name] = int(x)
    temp = values.get("temperature_c")
    out["temperature_c"] = None
    if not v.missing(temp):
        d = v.decimal(c, "temperature_c", temp, max_digits=4, places=1)
        if d is not None and not Decimal("30.0") <= d <= Decimal("44.0"):
            c.fail("temperature_c", f"{temp!r} °C is outside 30.0-44.0 (a typing error?)")
        else:
            out["temperature_c"] = d
    reaction = values.get("reaction", False)
    r = v.boolean(c, "reaction", reaction)
    out["reaction"] = bool(r)
    out["reaction_description"] = v.text(c, "reaction_description",
                                         values.get("reaction_description", ""),
                                         max_length=2000, required=bool(r))
    if r:
        out["reaction_term"] = v.text(c, "reaction_term", values.get("reaction_term"),
                                      max_length=200)
        g = values.get("reaction_grade")
        if isinstance(g, bool) or str(g).strip() not in {"1", "2", "3", "4", "5"}:
            c.fail("reaction_grade", f"{g!r} is not a CTCAE grade 1-5")
        else:
            out["reaction_grade"] = int(str(g).strip())
    out["observer"] = v.text(c, "observer", values.get("observer"), max_length=100)
    c.done()
    return out
