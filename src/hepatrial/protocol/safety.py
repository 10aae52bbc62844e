"""Safety as code: the protocol's ``[safety]`` section, the stopping-rule evaluator, the SAE
reporting clocks, expectedness and SUSAR assessment. Pure: no Django, no store.

The store persists adverse events, administrations, labs and DSMB decisions and, after every
write that can change the answer, calls :func:`evaluate_stopping_rules` with plain records
(:class:`SafetyData`); the dosing gate refuses while :attr:`SafetyStatus.dosing_allowed` is
False, naming the pausing rules. Nothing here reads a database or a clock: ``as_of`` and
``now`` are arguments, so the same inputs give the same answer.

Sources:

* ICH E2A (1994), *Clinical Safety Data Management: Definitions and Standards for Expedited
  Reporting*: adverse event / adverse drug reaction (a reasonable possibility of a causal
  relationship), the seriousness criteria (:data:`hepatrial.vocab.SERIOUSNESS_CRITERIA`),
  expectedness against the applicable product information, and expedited reporting of fatal or
  life-threatening unexpected ADRs within 7 calendar days (a complete report within 8
  additional days) and of other serious unexpected ADRs within 15 calendar days.
* 21 CFR 312.32(c)(1) (IND safety report no later than 15 calendar days after the sponsor
  determines the information qualifies) and 312.32(c)(2) (unexpected fatal or life-threatening
  suspected adverse reaction no later than 7 calendar days after the sponsor's initial
  receipt); 21 CFR 312.64(b) (the investigator reports any SAE to the sponsor immediately).
* Regulation (EU) No 536/2014, Art. 41 (investigator to sponsor within 24 hours of obtaining
  knowledge of a serious adverse event, unless the protocol provides otherwise) and Art. 42
  (SUSARs: fatal or life-threatening not later than 7 days, others not later than 15 days
  after the sponsor became aware; a SUSAR first judged non-fatal that turns out fatal or
  life-threatening, 7 days from that knowledge); Directive 2001/20/EC Art. 17(1)(a) (follow-up
  of a fatal or life-threatening SUSAR within an additional 8 days).
* CTCAE v5.0 (NCI 2017) for terms and grades (:mod:`hepatrial.protocol.ctcae_terms`).
* Bayesian monitoring: Thall & Simon, Biometrics 1994;50:337-349; Ivanova, Qaqish & Schell,
  Biometrics 2005;61:540-545 (:mod:`hepatrial.design.monitoring`).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator

from hepatrial import vocab as _vocab
from hepatrial.design import monitoring as _mon
from hepatrial.errors import InputError
from hepatrial.protocol import ctcae_terms as _ct
from hepatrial.protocol.models import Protocol, _Model, _Sourced

__all__ = [
    "Administration",
    "AdverseEventRecord",
    "BayesianRule",
    "Death",
    "DsmbDecision",
    "EventFilter",
    "EventRule",
    "ExpectedEvent",
    "LabRiseRule",
    "LabValue",
    "Notification",
    "ReferenceSafetyInformation",
    "ReportDue",
    "ReportingClocks",
    "RuleStatus",
    "SafetyData",
    "SafetyDataError",
    "SafetyPlan",
    "SafetyStatus",
    "SentinelRule",
    "StoppingRule",
    "evaluate_stopping_rules",
    "expectedness",
    "follow_up_due",
    "initial_report_due",
    "is_susar",
    "is_suspected",
    "local_to_utc",
    "plan_monitors",
    "plan_operating_characteristics",
    "report_status",
    "sae_due_dates",
    "seriousness_issues",
    "susar_follow_up_due",
    "susar_report_due",
]

Relatedness = Literal[_vocab.codes(_vocab.RELATEDNESS)]  # type: ignore[valid-type]
Route = Literal[_vocab.codes(_vocab.ROUTE)]  # type: ignore[valid-type]
SafetyEvent = Literal[_vocab.codes(_vocab.SAFETY_EVENT)]  # type: ignore[valid-type]
Recipient = Literal[  # type: ignore[valid-type]
    _vocab.codes(_vocab.ROLES) + _vocab.codes(_vocab.SAFETY_RECIPIENT)]
Procedure = Literal[_vocab.codes(_vocab.SAFETY_PROCEDURE)]  # type: ignore[valid-type]

_RANK = {c: i for i, c in enumerate(_vocab.codes(_vocab.RELATEDNESS))}
_RESUME = ("resume", "resume_modified")
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _ctcae_name(name: str, where: str) -> str:
    try:
        return _ct.term(name).term
    except _ct.CtcaeTermError as e:
        raise ValueError(f"{where}: {e}") from None


# ============================================================== [safety] section (pydantic)
class ExpectedEvent(_Sourced):
    """One expected event of the reference safety information (RSI).

    A suspected adverse reaction with this CTCAE term, attributed to ``attributed_to``, is
    *expected* up to ``max_grade``; a more severe one is unexpected (ICH E2A §II.C: an ADR
    whose nature or severity is not consistent with the product information). Death is
    expected only where ``max_grade`` is 5.
    """

    term: str
    max_grade: int = Field(ge=1, le=5)
    attributed_to: Literal["product", "procedure"]
    procedure: Procedure | None = None

    @model_validator(mode="after")
    def _known(self) -> ExpectedEvent:
        t = _ct.term(_ctcae_name(self.term, "term"))
        if self.max_grade not in t.allowed_grades:
            raise ValueError(f"max_grade: {t.term!r} has no grade {self.max_grade} "
                             f"(grades {', '.join(map(str, t.allowed_grades))})")
        if self.procedure is not None and self.attributed_to != "procedure":
            raise ValueError("procedure is only for events attributed to a procedure")
        return self


class ReferenceSafetyInformation(_Sourced):
    """The document that decides expectedness and the events it lists (RSI; EU 536/2014
    Annex I §30-32 "reference safety information", ICH E2A §II.C)."""

    document: str
    version: str = ""
    expected: tuple[ExpectedEvent, ...] = ()


class ReportingClocks(_Sourced):
    """The SAE/SUSAR reporting clocks (sources in the module docstring) and the trial's time
    zone, in which calendar-day clocks count days (the 24-hour clock counts elapsed hours)."""

    initial_report_hours: int = Field(default=24, gt=0)
    susar_fatal_days: int = Field(default=7, gt=0)
    susar_other_days: int = Field(default=15, gt=0)
    susar_fatal_follow_up_days: int | None = Field(default=8, gt=0)
    follow_up_interval_days: int = Field(default=30, gt=0)
    time_zone: str = "UTC"

    @model_validator(mode="after")
    def _tz(self) -> ReportingClocks:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time_zone: {self.time_zone!r} is not an IANA time zone "
                             "(e.g. 'Asia/Tehran', 'Europe/London')") from None
        return self

    @property
    def tz(self) -> ZoneInfo:
        """The trial's time zone."""
        return ZoneInfo(self.time_zone)


class Notification(_Sourced):
    """Who is notified (user roles of :data:`hepatrial.vocab.ROLES` or recipients of
    :data:`hepatrial.vocab.SAFETY_RECIPIENT`) when a safety event happens."""

    event: SafetyEvent
    roles: tuple[Recipient, ...] = Field(min_length=1)


class EventFilter(_Model):
    """Which adverse events a rule counts: every condition given must hold (an empty filter
    is refused: it would count every event).

    * ``terms`` (CTCAE v5.0 terms, any of), ``socs`` (system organ classes, any of);
    * ``min_grade``; ``serious``; ``fatal`` (grade 5 or outcome fatal, and deaths);
    * ``related_to`` ``product`` / ``procedure`` / ``either`` with ``min_relatedness``
      (default ``possible``: "at least possibly related", a suspected adverse reaction);
    * ``after_route``: onset on or after the participant's administration by that route,
      ``within_days`` of it (onset - administration date <= within_days).
    """

    terms: tuple[str, ...] = ()
    socs: tuple[str, ...] = ()
    min_grade: int | None = Field(default=None, ge=1, le=5)
    serious: bool | None = None
    fatal: bool | None = None
    related_to: Literal["product", "procedure", "either"] | None = None
    min_relatedness: Relatedness = "possible"
    after_route: Route | None = None
    within_days: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> EventFilter:
        if not any((self.terms, self.socs, self.min_grade, self.serious is not None,
                    self.fatal is not None, self.related_to, self.after_route)):
            raise ValueError("a filter needs at least one condition")
        canon = tuple(_ctcae_name(t, f"terms[{i}]") for i, t in enumerate(self.terms))
        known = {s.casefold(): s for s in _ct.socs()}
        socs = []
        for i, s in enumerate(self.socs):
            if s.casefold() not in known:
                raise ValueError(f"socs[{i}]: {s!r} is not a CTCAE v5.0 system organ class")
            socs.append(known[s.casefold()])
        if self.within_days is not None and self.after_route is None:
            raise ValueError("within_days needs after_route")
        object.__setattr__(self, "terms", canon)
        object.__setattr__(self, "socs", tuple(socs))
        return self

    @property
    def death_only(self) -> bool:
        """True when the filter asks only for death (matches death records too)."""
        return self.fatal is True and not any((self.terms, self.socs, self.min_grade,
                                               self.serious is not None, self.related_to,
                                               self.after_route))


class _Rule(_Sourced):
    id: str = Field(pattern=_ID)
    text: str


class EventRule(_Rule):
    """Pause when at least ``count`` adverse events match any of the filters."""

    kind: Literal["event"]
    match_any: tuple[EventFilter, ...] = Field(min_length=1)
    count: int = Field(default=1, ge=1)


class LabRiseRule(_Rule):
    """Pause when at least ``count`` of the first ``first_treated`` treated participants
    (in order of first administration) had ``analyte`` rise by ``rise`` or more from baseline
    at any post-baseline visit up to ``by_visit`` (nominal day of that visit)."""

    kind: Literal["lab_rise"]
    analyte: str
    rise: float = Field(gt=0)
    by_visit: str
    first_treated: int = Field(ge=1)
    count: int = Field(ge=1)

    @model_validator(mode="after")
    def _count(self) -> LabRiseRule:
        if self.count > self.first_treated:
            raise ValueError(f"count {self.count} is more than first_treated "
                             f"{self.first_treated}: the rule could never trigger")
        return self


class SentinelRule(_Rule):
    """Dosing gate: the next participant's first administration only ``min_interval_days``
    calendar days after the previous participant's, and (``requires_review``) after a
    recorded review (a DSMB decision ``resume`` on this rule dated after that
    administration). Applies to the first ``applies_to_first`` participants (None: all)."""

    kind: Literal["sentinel"]
    min_interval_days: int = Field(ge=1)
    applies_to_first: int | None = Field(default=None, ge=2)
    requires_review: bool = False


class BayesianRule(_Rule):
    """Pause when P(true rate > theta | x, n) > threshold under a Beta(prior_a, prior_b)
    prior: x = participants with an event matching ``event``, n = participants treated
    (Thall & Simon 1994; :mod:`hepatrial.design.monitoring`); checked from ``min_treated``
    participants on."""

    kind: Literal["bayesian"]
    event: EventFilter
    prior_a: float = Field(gt=0)
    prior_b: float = Field(gt=0)
    theta: float = Field(gt=0, lt=1)
    threshold: float = Field(gt=0, lt=1)
    min_treated: int = Field(default=1, ge=1)

    def boundary(self, n_max: int) -> tuple[int, ...]:
        """Least x that pauses after n treated, n = 1..n_max."""
        return tuple(int(v) for v in _mon.stopping_boundary(
            self.theta, self.threshold, self.prior_a, self.prior_b, n_max,
            min_n=self.min_treated))


StoppingRule = Annotated[EventRule | LabRiseRule | SentinelRule | BayesianRule,
                         Field(discriminator="kind")]


class SafetyPlan(_Sourced):
    """The ``[safety]`` section of a protocol."""

    ctcae_version: Literal["5.0"] = "5.0"
    planned_treated: int = Field(ge=1, description="participants to be treated (for the "
                                 "operating characteristics of the stopping rules)")
    reference_safety_information: ReferenceSafetyInformation
    reporting: ReportingClocks = Field(default_factory=lambda: ReportingClocks(
        source="assumed", note="regulatory defaults"))
    notifications: tuple[Notification, ...] = ()
    stopping_rules: tuple[StoppingRule, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> SafetyPlan:
        seen: dict[str, int] = {}
        for i, r in enumerate(self.stopping_rules):
            if r.id in seen:
                raise ValueError(f"stopping_rules[{i}].id: duplicate rule id {r.id!r} "
                                 f"(first at stopping_rules[{seen[r.id]}])")
            seen[r.id] = i
        terms: dict[tuple[str, str], int] = {}
        for i, e in enumerate(self.reference_safety_information.expected):
            key = (_ct.term(e.term).term, e.attributed_to)
            if key in terms:
                raise ValueError(f"reference_safety_information.expected[{i}]: {key[0]!r} "
                                 f"({key[1]}) is listed twice")
            terms[key] = i
        events = [n.event for n in self.notifications]
        for i, ev in enumerate(events):
            if ev in events[:i]:
                raise ValueError(f"notifications[{i}].event: {ev!r} is listed twice")
        return self

    def rule(self, rule_id: str) -> StoppingRule:
        """The stopping rule with this id (KeyError naming the known ids)."""
        for r in self.stopping_rules:
            if r.id == rule_id:
                return r
        known = ", ".join(r.id for r in self.stopping_rules) or "none"
        raise KeyError(f"no stopping rule {rule_id!r} (known: {known})")

    def recipients(self, event: str) -> tuple[str, ...]:
        """The roles/recipients notified of a safety event (empty when none is named)."""
        for n in self.notifications:
            if n.event == event:
                return n.roles
        return ()


# the Protocol model names SafetyPlan in its ``safety`` field (models cannot import this module
# without an import cycle); resolve it now. hepatrial.protocol imports this module, so the model
# is complete whenever hepatrial.protocol is imported.
Protocol.model_rebuild(_types_namespace={"SafetyPlan": SafetyPlan})


# ============================================================== plain data for the evaluator
class SafetyDataError(InputError):
    """A safety record cannot be evaluated (names the record, the field and the reason)."""


def _aware(name: str, v: Any, what: str) -> _dt.datetime:
    if not isinstance(v, _dt.datetime) or v.tzinfo is None or v.utcoffset() is None:
        raise SafetyDataError(f"{what}: {name} {v!r} is not a time-zone-aware datetime "
                              "(store times in UTC)")
    return v.astimezone(_dt.UTC)


def _date(name: str, v: Any, what: str) -> _dt.date:
    if isinstance(v, _dt.datetime) or not isinstance(v, _dt.date):
        raise SafetyDataError(f"{what}: {name} {v!r} is not a date")
    return v


@dataclass(frozen=True)
class AdverseEventRecord:
    """One adverse event as the evaluator reads it (the store's AE model, flattened).

    ``term`` should be a CTCAE v5.0 term (then ``meddra_code`` and ``soc`` are filled from
    it when not given); an uncoded term is kept and reported, and matches no term filter.
    ``recorded_at`` (aware) is when the store learnt of the event; without it the event is
    taken as known from the start of its onset day (trial time zone).
    """

    id: str
    participant_id: str
    term: str
    grade: int
    serious: bool
    related_product: str
    related_procedure: str
    onset: _dt.date
    outcome: str | None = None
    meddra_code: int | None = None
    soc: str | None = None
    procedure: str | None = None
    recorded_at: _dt.datetime | None = None

    def __post_init__(self) -> None:
        what = f"adverse event {self.id!r} (participant {self.participant_id})"
        if isinstance(self.grade, bool) or not isinstance(self.grade, int) or not (
                1 <= self.grade <= 5):
            raise SafetyDataError(f"{what}: grade {self.grade!r} is not 1-5")
        if not isinstance(self.serious, bool):
            raise SafetyDataError(f"{what}: serious {self.serious!r} is not true/false")
        for f in ("related_product", "related_procedure"):
            if getattr(self, f) not in _RANK:
                raise SafetyDataError(f"{what}: {f} {getattr(self, f)!r} is not one of "
                                      f"{', '.join(_RANK)}")
        if self.outcome is not None and self.outcome not in _vocab.codes(_vocab.AE_OUTCOME):
            raise SafetyDataError(f"{what}: outcome {self.outcome!r} is not one of "
                                  f"{', '.join(_vocab.codes(_vocab.AE_OUTCOME))}")
        _date("onset", self.onset, what)
        if self.recorded_at is not None:
            object.__setattr__(self, "recorded_at", _aware("recorded_at", self.recorded_at,
                                                           what))
        try:
            t = _ct.term(self.term)
        except _ct.CtcaeTermError:
            return
        if self.meddra_code is not None and int(self.meddra_code) != t.meddra_code:
            raise SafetyDataError(f"{what}: meddra_code {self.meddra_code} is not the code of "
                                  f"{t.term!r} ({t.meddra_code})")
        object.__setattr__(self, "term", t.term)
        object.__setattr__(self, "meddra_code", t.meddra_code)
        object.__setattr__(self, "soc", t.soc)

    @property
    def coded(self) -> bool:
        """True when the term is a CTCAE v5.0 term."""
        return self.meddra_code is not None and self.soc is not None

    @property
    def fatal(self) -> bool:
        """Grade 5 or outcome fatal."""
        return self.grade == 5 or self.outcome == "fatal"


@dataclass(frozen=True)
class Death:
    """A participant's death (status died) — matched by death-only filters."""

    participant_id: str
    date: _dt.date
    recorded_at: _dt.datetime | None = None


@dataclass(frozen=True)
class Administration:
    """One administration of the cell product."""

    id: str
    participant_id: str
    date: _dt.date
    route: str

    def __post_init__(self) -> None:
        what = f"administration {self.id!r} (participant {self.participant_id})"
        _date("date", self.date, what)
        if self.route not in _vocab.codes(_vocab.ROUTE):
            raise SafetyDataError(f"{what}: route {self.route!r} is not one of "
                                  f"{', '.join(_vocab.codes(_vocab.ROUTE))}")


@dataclass(frozen=True)
class LabValue:
    """One lab or score value at a visit (analysis-dataset row: docs/contracts.md §1)."""

    participant_id: str
    visit: str
    nominal_day: int
    analyte: str
    value: float
    date: _dt.date | None = None

    def __post_init__(self) -> None:
        what = f"lab value {self.analyte} of participant {self.participant_id} at {self.visit}"
        if isinstance(self.value, bool) or not isinstance(self.value, int | float) or not (
                math.isfinite(self.value)):
            raise SafetyDataError(f"{what}: value {self.value!r} is not a finite number")
        if self.date is not None:
            _date("date", self.date, what)


@dataclass(frozen=True)
class DsmbDecision:
    """A recorded, signed DSMB decision on one stopping rule (the store signs it)."""

    id: str
    rule_id: str
    decided_at: _dt.datetime
    decision: str
    reason: str

    def __post_init__(self) -> None:
        what = f"DSMB decision {self.id!r} on rule {self.rule_id!r}"
        object.__setattr__(self, "decided_at", _aware("decided_at", self.decided_at, what))
        if self.decision not in _vocab.codes(_vocab.DSMB_DECISION):
            raise SafetyDataError(f"{what}: decision {self.decision!r} is not one of "
                                  f"{', '.join(_vocab.codes(_vocab.DSMB_DECISION))}")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise SafetyDataError(f"{what}: a decision needs its reason")


@dataclass(frozen=True)
class SafetyData:
    """Everything the stopping rules read, as plain records."""

    adverse_events: tuple[AdverseEventRecord, ...] = ()
    administrations: tuple[Administration, ...] = ()
    labs: tuple[LabValue, ...] = ()
    decisions: tuple[DsmbDecision, ...] = ()
    deaths: tuple[Death, ...] = ()

    def __post_init__(self) -> None:
        for name in ("adverse_events", "administrations", "labs", "decisions", "deaths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("adverse_events", "administrations", "decisions"):
            ids = [r.id for r in getattr(self, name)]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise SafetyDataError(f"{name}: duplicate id(s) {', '.join(map(repr, dup))}")

    @classmethod
    def from_frames(cls, adverse_events: Any = None, administrations: Any = None,
                    labs: Any = None, decisions: Any = None,
                    deaths: Any = None) -> SafetyData:
        """Build from tidy DataFrames (or lists of dicts) whose columns are the record fields;
        missing optional columns are None, NA cells are None. A bad cell raises
        SafetyDataError naming the row and the field."""
        def rows(obj: Any, kind: type, label: str) -> tuple[Any, ...]:
            if obj is None:
                return ()
            recs = obj.to_dict("records") if hasattr(obj, "to_dict") else list(obj)
            out = []
            for i, r in enumerate(recs):
                clean = {k: (None if _is_na(v) else _py(v)) for k, v in r.items()}
                try:
                    out.append(kind(**clean))
                except TypeError as e:
                    raise SafetyDataError(f"{label} row {i}: {e}") from None
                except SafetyDataError as e:
                    raise SafetyDataError(f"{label} row {i}: {e}") from None
            return tuple(out)
        return cls(rows(adverse_events, AdverseEventRecord, "adverse events"),
                   rows(administrations, Administration, "administrations"),
                   rows(labs, LabValue, "labs"), rows(decisions, DsmbDecision, "decisions"),
                   rows(deaths, Death, "deaths"))


def _is_na(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, pd.NA raises TypeError on bool()
    except (TypeError, ValueError):
        return True


def _py(v: Any) -> Any:
    """numpy/pandas scalars to Python (Timestamp -> datetime/date kept by the caller)."""
    if hasattr(v, "to_pydatetime"):
        d = v.to_pydatetime()
        return d if d.tzinfo is not None or d.time() != _dt.time() else d.date()
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        return v.item()
    return v


# ============================================================== evaluation results
@dataclass(frozen=True)
class RuleStatus:
    """The state of one stopping rule as of a moment.

    ``triggered``: the rule's condition holds on the data known by ``as_of``; ``paused``: it
    pauses enrolment and dosing (triggered and not lifted by a DSMB resume that covers all the
    evidence); ``since``: when the current pause (or, if resumed, the condition) began;
    ``events``/``participants``: the evidence; ``resume``: the DSMB decision that lifts the
    pause (None if none applies); ``resume_superseded``: a resume exists but newer evidence
    re-triggered the rule; ``undetermined``: records that could not be assessed (never
    dropped silently); ``details``: rule-specific numbers.
    """

    rule_id: str
    kind: str
    text: str
    triggered: bool
    paused: bool
    since: _dt.datetime | None
    reasons: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    participants: tuple[str, ...] = ()
    resume: DsmbDecision | None = None
    resume_superseded: bool = False
    undetermined: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times in ISO 8601 UTC)."""
        return {
            "rule_id": self.rule_id, "kind": self.kind, "text": self.text,
            "triggered": self.triggered, "paused": self.paused,
            "since": None if self.since is None else self.since.isoformat(),
            "reasons": list(self.reasons), "events": list(self.events),
            "participants": list(self.participants),
            "resume": None if self.resume is None else {
                "id": self.resume.id, "decided_at": self.resume.decided_at.isoformat(),
                "decision": self.resume.decision, "reason": self.resume.reason},
            "resume_superseded": self.resume_superseded,
            "undetermined": list(self.undetermined),
            "details": _jsonable(dict(self.details)),
        }


@dataclass(frozen=True)
class SafetyStatus:
    """All stopping rules as of ``as_of``; ``dosing_allowed``/``enrolment_allowed`` are False
    while any rule pauses (the dosing gate names :attr:`pausing_rules`)."""

    as_of: _dt.datetime
    rules: tuple[RuleStatus, ...]
    uncoded_events: tuple[str, ...] = ()

    @property
    def pausing_rules(self) -> tuple[str, ...]:
        """Ids of the rules that pause now, in protocol order."""
        return tuple(r.rule_id for r in self.rules if r.paused)

    @property
    def paused(self) -> bool:
        """True while any rule pauses."""
        return bool(self.pausing_rules)

    @property
    def dosing_allowed(self) -> bool:
        """False while any rule (stopping rule or sentinel gate) pauses."""
        return not self.paused

    @property
    def enrolment_allowed(self) -> bool:
        """False while a stopping rule pauses (the sentinel gate restricts dosing only)."""
        return not any(r.paused and r.kind != "sentinel" for r in self.rules)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict for ``hepatrial safety status --json``."""
        return {"as_of": self.as_of.isoformat(), "paused": self.paused,
                "dosing_allowed": self.dosing_allowed,
                "enrolment_allowed": self.enrolment_allowed,
                "pausing_rules": list(self.pausing_rules),
                "uncoded_events": list(self.uncoded_events),
                "rules": [r.as_dict() for r in self.rules]}


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, _dt.datetime | _dt.date):
        return v.isoformat()
    return v


# ============================================================== evaluator
def _day_start(d: _dt.date, tz: ZoneInfo) -> _dt.datetime:
    return _dt.datetime.combine(d, _dt.time(), tzinfo=tz).astimezone(_dt.UTC)


def _as_of(as_of: _dt.datetime | _dt.date, tz: ZoneInfo) -> _dt.datetime:
    if isinstance(as_of, _dt.datetime):
        return _aware("as_of", as_of, "evaluation")
    if isinstance(as_of, _dt.date):  # the whole day, trial time zone
        nxt = _day_start(as_of + _dt.timedelta(days=1), tz)
        return nxt - _dt.timedelta(microseconds=1)
    raise SafetyDataError(f"as_of {as_of!r} is not a datetime or a date")


def _related(level: str, minimum: str) -> bool:
    return _RANK[level] >= _RANK[minimum]


def _matches(f: EventFilter, ae: AdverseEventRecord,
             admins: Sequence[Administration]) -> bool:
    if f.terms and (not ae.coded or ae.term not in f.terms):
        return False
    if f.socs and (not ae.coded or ae.soc not in f.socs):
        return False
    if f.min_grade is not None and ae.grade < f.min_grade:
        return False
    if f.serious is not None and ae.serious != f.serious:
        return False
    if f.fatal is not None and ae.fatal != f.fatal:
        return False
    if f.related_to is not None:
        prod = _related(ae.related_product, f.min_relatedness)
        proc = _related(ae.related_procedure, f.min_relatedness)
        ok = {"product": prod, "procedure": proc, "either": prod or proc}[f.related_to]
        if not ok:
            return False
    if f.after_route is not None:
        days = [(ae.onset - a.date).days for a in admins
                if a.participant_id == ae.participant_id and a.route == f.after_route
                and a.date <= ae.onset]
        if not days:
            return False
        if f.within_days is not None and min(days) > f.within_days:
            return False
    return True


@dataclass(frozen=True)
class _Evidence:
    time: _dt.datetime
    ref: str  # AE id, or "death:<participant>"
    participant: str
    text: str


def _resume_state(rule_id: str, decisions: Sequence[DsmbDecision], as_of: _dt.datetime,
                  evidence_times: Sequence[_dt.datetime]
                  ) -> tuple[DsmbDecision | None, bool]:
    """(resume that lifts the pause or None, True if a resume was superseded by evidence)."""
    mine = sorted((d for d in decisions if d.rule_id == rule_id and d.decided_at <= as_of),
                  key=lambda d: (d.decided_at, d.id))
    if not mine:
        return None, False
    last = mine[-1]
    if last.decision not in _RESUME:
        return None, False
    newest = max(evidence_times) if evidence_times else None
    if newest is not None and newest > last.decided_at:
        return None, True
    return last, False


def _status(rule: Any, holds: bool, since: _dt.datetime | None, evidence: list[_Evidence],
            decisions: Sequence[DsmbDecision], as_of: _dt.datetime, reasons: list[str],
            details: dict[str, Any], undetermined: Iterable[str] = ()) -> RuleStatus:
    resume, superseded = (None, False)
    paused = holds
    if holds:
        resume, superseded = _resume_state(rule.id, decisions, as_of,
                                           [e.time for e in evidence])
        if resume is not None:
            paused = False
            reasons.append(f"resumed by DSMB decision {resume.id} on "
                           f"{resume.decided_at.isoformat()}: {resume.reason}")
        elif superseded:
            last_resume = max(d.decided_at for d in decisions if d.rule_id == rule.id
                              and d.decision in _RESUME and d.decided_at <= as_of)
            newer = [e for e in evidence if e.time > last_resume]
            since = max(since, min(e.time for e in newer)) if since else min(
                e.time for e in newer)
            reasons.append(f"new evidence after the DSMB resume of "
                           f"{last_resume.isoformat()}: "
                           + "; ".join(e.text for e in newer))
    return RuleStatus(
        rule_id=rule.id, kind=rule.kind, text=rule.text, triggered=holds, paused=paused,
        since=since if holds else None, reasons=tuple(reasons),
        events=tuple(dict.fromkeys(e.ref for e in evidence if not e.ref.startswith("death:"))),
        participants=tuple(sorted({e.participant for e in evidence})),
        resume=resume, resume_superseded=superseded,
        undetermined=tuple(undetermined), details=details)


def _ae_time(ae: AdverseEventRecord, tz: ZoneInfo) -> _dt.datetime:
    return ae.recorded_at if ae.recorded_at is not None else _day_start(ae.onset, tz)


def _eval_event(rule: EventRule, aes: Sequence[AdverseEventRecord], deaths: Sequence[Death],
                admins: Sequence[Administration], decisions: Sequence[DsmbDecision],
                as_of: _dt.datetime, tz: ZoneInfo) -> RuleStatus:
    ev: list[_Evidence] = []
    for ae in aes:
        for i, f in enumerate(rule.match_any):
            if _matches(f, ae, admins):
                ev.append(_Evidence(_ae_time(ae, tz), ae.id, ae.participant_id,
                                    f"adverse event {ae.id} ({ae.participant_id}: {ae.term}, "
                                    f"grade {ae.grade}{', serious' if ae.serious else ''}, "
                                    f"onset {ae.onset}) matches criterion {i + 1}"))
                break
    if any(f.death_only for f in rule.match_any):
        fatal_participants = {e.participant for e in ev}
        for d in deaths:
            if d.participant_id not in fatal_participants:
                t = d.recorded_at or _day_start(d.date, tz)
                ev.append(_Evidence(t, f"death:{d.participant_id}", d.participant_id,
                                    f"death of {d.participant_id} on {d.date}"))
    ev.sort(key=lambda e: (e.time, e.ref))
    holds = len(ev) >= rule.count
    since = ev[rule.count - 1].time if holds else None
    reasons = [e.text for e in ev] if holds else []
    if not holds and ev:
        reasons = [f"{len(ev)} matching event(s), {rule.count} needed"]
    return _status(rule, holds, since, ev if holds else [], decisions, as_of, reasons,
                   {"matching_events": len(ev), "count": rule.count})


def _first_doses(admins: Sequence[Administration]) -> list[tuple[_dt.date, str]]:
    first: dict[str, _dt.date] = {}
    for a in admins:
        if a.participant_id not in first or a.date < first[a.participant_id]:
            first[a.participant_id] = a.date
    return sorted((d, p) for p, d in first.items())


def _eval_lab(rule: LabRiseRule, labs: Sequence[LabValue], admins: Sequence[Administration],
              decisions: Sequence[DsmbDecision], as_of: _dt.datetime, tz: ZoneInfo,
              visit_days: Mapping[str, int] | None) -> RuleStatus:
    if visit_days is None or rule.by_visit not in visit_days:
        raise SafetyDataError(f"rule {rule.id}: the nominal day of visit {rule.by_visit!r} is "
                              "needed (pass the Protocol, or visit_days)")
    by_day = visit_days[rule.by_visit]
    first = _first_doses(admins)[: rule.first_treated]
    cohort = {p: d for d, p in first}
    ev: list[_Evidence] = []
    undetermined: list[str] = []
    rises: dict[str, float] = {}
    for d0, pid in first:
        rows = [r for r in labs if r.participant_id == pid and r.analyte == rule.analyte]
        base = {r.value for r in rows if r.nominal_day == 0}
        post = sorted((r for r in rows if 0 < r.nominal_day <= by_day
                       and (r.date is None or r.date <= as_of.astimezone(tz).date())),
                      key=lambda r: (r.nominal_day, r.date or _dt.date.min, r.visit))
        if not base:
            if post:
                undetermined.append(f"{pid}: no baseline {rule.analyte}")
            continue
        if len(base) > 1:
            undetermined.append(f"{pid}: {len(base)} different baseline {rule.analyte} values")
            continue
        b = base.pop()
        for r in post:
            rise = round(r.value - b, 9)  # float noise off (22.9 - 17.9 is +5.0)
            rises[pid] = max(rises.get(pid, -math.inf), rise)
            if rise >= rule.rise:
                when = r.date or (d0 + _dt.timedelta(days=r.nominal_day))
                ev.append(_Evidence(_day_start(when, tz), f"lab:{pid}:{r.visit}", pid,
                                    f"{pid}: {rule.analyte} {b:g} -> {r.value:g} "
                                    f"(+{rise:g}) at {r.visit}"))
                break
    ev.sort(key=lambda e: (e.time, e.ref))
    holds = len(ev) >= rule.count
    since = ev[rule.count - 1].time if holds else None
    reasons = [e.text for e in ev] if holds else [
        f"{len(ev)} of the first {len(cohort)} treated with a rise >= {rule.rise:g} "
        f"by {rule.by_visit}, {rule.count} needed"]
    status = _status(rule, holds, since, ev if holds else [], decisions, as_of, reasons,
                     {"cohort": list(cohort), "qualifying": [e.participant for e in ev],
                      "max_rise": rises, "by_day": by_day}, undetermined)
    # the evidence refs are lab rows, not adverse events
    return RuleStatus(**{**status.__dict__, "events": ()})


def _eval_sentinel(rule: SentinelRule, admins: Sequence[Administration],
                   decisions: Sequence[DsmbDecision], as_of: _dt.datetime,
                   tz: ZoneInfo) -> RuleStatus:
    first = _first_doses(admins)
    today = as_of.astimezone(tz).date()
    gaps = [(p2, (d2 - d1).days) for (d1, _p1), (d2, p2) in itertools.pairwise(first)]
    short = [f"{p}: dosed {g} day(s) after the previous participant" for p, g in gaps
             if g < rule.min_interval_days]
    details: dict[str, Any] = {"min_interval_days": rule.min_interval_days,
                               "participants_dosed": len(first),
                               "interval_deviations": short}
    if not first:
        details["next_dosing_from"] = None
        return RuleStatus(rule.id, rule.kind, rule.text, False, False, None,
                          ("no participant dosed yet",), details=details)
    if rule.applies_to_first is not None and len(first) >= rule.applies_to_first:
        details["next_dosing_from"] = None
        return RuleStatus(rule.id, rule.kind, rule.text, False, False, None,
                          (f"all {rule.applies_to_first} staggered participants are dosed",),
                          details=details)
    last_date, last_p = first[-1]
    next_from = last_date + _dt.timedelta(days=rule.min_interval_days)
    details["next_dosing_from"] = next_from
    details["previous"] = {"participant": last_p, "date": last_date}
    reasons: list[str] = []
    closed = False
    if today < next_from:
        closed = True
        reasons.append(f"{last_p} was dosed on {last_date}: the next participant may be dosed "
                       f"from {next_from} ({rule.min_interval_days} days; "
                       f"{(today - last_date).days} elapsed)")
    review = None
    if rule.requires_review:
        start = _day_start(last_date, tz)
        reviews = sorted((d for d in decisions if d.rule_id == rule.id and d.decision in _RESUME
                          and start <= d.decided_at <= as_of), key=lambda d: d.decided_at)
        if reviews:
            review = reviews[-1]
            reasons.append(f"review {review.id} of {review.decided_at.isoformat()} recorded")
        else:
            closed = True
            reasons.append(f"no review recorded since {last_p}'s dose on {last_date}")
    return RuleStatus(rule.id, rule.kind, rule.text, closed, closed,
                      _day_start(last_date, tz) if closed else None, tuple(reasons),
                      participants=(last_p,), resume=review, details=details)


def _eval_bayes(rule: BayesianRule, aes: Sequence[AdverseEventRecord],
                admins: Sequence[Administration], decisions: Sequence[DsmbDecision],
                as_of: _dt.datetime, tz: ZoneInfo) -> RuleStatus:
    firsts: dict[str, _Evidence] = {}
    for ae in sorted(aes, key=lambda a: (_ae_time(a, tz), a.id)):
        if ae.participant_id not in firsts and _matches(rule.event, ae, admins):
            firsts[ae.participant_id] = _Evidence(
                _ae_time(ae, tz), ae.id, ae.participant_id,
                f"adverse event {ae.id} ({ae.participant_id}: {ae.term}, grade {ae.grade})")
    dosed = {p: _day_start(d, tz) for d, p in _first_doses(admins)}
    # n: participants exposed (dosed, or with a counted event before any dose)
    exposure = {p: min(t, firsts[p].time) if p in firsts else t for p, t in dosed.items()}
    for p, e in firsts.items():
        exposure.setdefault(p, e.time)
    times = sorted(set(exposure.values()) | {e.time for e in firsts.values()})

    def state(t: _dt.datetime) -> tuple[int, int, float | None, bool]:
        n = sum(1 for v in exposure.values() if v <= t)
        x = sum(1 for e in firsts.values() if e.time <= t)
        if n == 0:
            return x, n, None, False
        post = float(_mon.posterior_exceeds(x, n, rule.theta, rule.prior_a, rule.prior_b))
        return x, n, post, n >= rule.min_treated and post > rule.threshold

    since = None
    for t in times:
        if state(t)[3]:
            since = since or t
        else:
            since = None
    x, n, post, holds = state(as_of)
    ev = sorted(firsts.values(), key=lambda e: (e.time, e.ref))
    bd = rule.boundary(max(n, 1))
    details = {"x": x, "n": n, "posterior": post, "theta": rule.theta,
               "threshold": rule.threshold, "prior": [rule.prior_a, rule.prior_b],
               "boundary_at_n": bd[n - 1] if n else None}
    msg = (f"{x} of {n} treated with a counted event: P(rate > {rule.theta:g}) = "
           f"{post:.4f}" if post is not None else "no participant treated")
    msg += (f" > {rule.threshold:g}" if holds else
            (f" <= {rule.threshold:g}" if post is not None else ""))
    return _status(rule, holds, since if holds else None, ev if holds else [], decisions,
                   as_of, [msg] + ([e.text for e in ev] if holds else []), details)


def evaluate_stopping_rules(
    spec: Any, data: SafetyData, as_of: _dt.datetime | _dt.date, *,
    visit_days: Mapping[str, int] | None = None,
) -> SafetyStatus:
    """Evaluate every stopping rule of a protocol on the data known by ``as_of``.

    ``spec``: a :class:`~hepatrial.protocol.models.Protocol` with a ``[safety]`` section (its
    visit schedule gives the nominal days for lab rules) or a :class:`SafetyPlan` (then give
    ``visit_days``: visit code -> nominal day). ``as_of``: an aware datetime, or a date (the
    whole day in the trial's time zone). Records known only after ``as_of`` (adverse events
    recorded later, administrations and labs dated later, later decisions) are ignored, so a
    data cut is evaluated as it stood.

    Rule kinds: ``event`` (count of matching adverse events and deaths), ``lab_rise``
    (participants among the first treated whose value rose from baseline by a visit),
    ``sentinel`` (the dosing interval between participants, and its review), ``bayesian``
    (beta-binomial posterior, Thall & Simon 1994). A rule whose condition holds pauses until
    a DSMB decision ``resume`` (or ``resume_modified``) dated after all its evidence; newer
    evidence while the condition holds pauses again; the latest decision on a rule wins.
    Deterministic: results are in protocol order, evidence in time order.
    """
    plan: SafetyPlan | None = getattr(spec, "safety", spec)
    if not isinstance(plan, SafetyPlan):
        raise SafetyDataError("the protocol has no [safety] section")
    if visit_days is None and hasattr(spec, "visits"):
        visit_days = {v.code: v.target_day for v in spec.visits}
    tz = plan.reporting.tz
    cut = _as_of(as_of, tz)
    cut_date = cut.astimezone(tz).date()
    aes = tuple(a for a in data.adverse_events if a.onset <= cut_date and _ae_time(a, tz) <= cut)
    deaths = tuple(d for d in data.deaths if d.date <= cut_date
                   and (d.recorded_at or _day_start(d.date, tz)) <= cut)
    admins = tuple(a for a in data.administrations if a.date <= cut_date)
    labs = tuple(r for r in data.labs if r.date is None or r.date <= cut_date)
    decisions = tuple(d for d in data.decisions if d.decided_at <= cut)
    known = {r.id for r in plan.stopping_rules}
    for d in decisions:
        if d.rule_id not in known:
            raise SafetyDataError(f"DSMB decision {d.id!r}: rule {d.rule_id!r} is not a "
                                  f"stopping rule of the protocol ({', '.join(sorted(known))})")
    out: list[RuleStatus] = []
    for rule in plan.stopping_rules:
        if isinstance(rule, EventRule):
            out.append(_eval_event(rule, aes, deaths, admins, decisions, cut, tz))
        elif isinstance(rule, LabRiseRule):
            out.append(_eval_lab(rule, labs, admins, decisions, cut, tz, visit_days))
        elif isinstance(rule, SentinelRule):
            out.append(_eval_sentinel(rule, admins, decisions, cut, tz))
        else:
            out.append(_eval_bayes(rule, aes, admins, decisions, cut, tz))
    uncoded = tuple(f"{a.id} ({a.participant_id}: {a.term!r})" for a in aes if not a.coded)
    return SafetyStatus(as_of=cut, rules=tuple(out), uncoded_events=uncoded)


# ============================================================== expectedness, SUSAR, seriousness
def is_suspected(relatedness: str) -> bool:
    """True when a relatedness code is "at least possibly related" (a suspected adverse
    reaction: a reasonable possibility of a causal relationship; ICH E2A §II.A.2)."""
    if relatedness not in _RANK:
        raise InputError(f"relatedness {relatedness!r} is not one of {', '.join(_RANK)}")
    return relatedness in _vocab.RELATED_CODES


def expectedness(plan: SafetyPlan, term: str, grade: int,
                 attributed_to: Literal["product", "procedure"] = "product") -> str:
    """``"expected"`` if the reference safety information lists the CTCAE term for this
    attribution at ``grade`` or a higher ``max_grade``, else ``"unexpected"`` (ICH E2A §II.C:
    nature or severity not consistent with the product information; a fatal outcome is
    unexpected unless the RSI lists death for the event)."""
    t = _ct.term(term)
    _ct.CtcaeTerm.grade_definition(t, grade)  # the grade must exist for the term
    for e in plan.reference_safety_information.expected:
        if e.attributed_to == attributed_to and _ct.term(e.term) is t:
            return "expected" if grade <= e.max_grade else "unexpected"
    return "unexpected"


def is_susar(serious: bool, related_product: str, expected: str) -> bool:
    """Suspected unexpected serious adverse reaction: serious, at least possibly related to
    the investigational product, and unexpected (ICH E2A §III.A; EU 536/2014 Art. 2(2);
    21 CFR 312.32(a) "serious and unexpected suspected adverse reaction"). Relatedness to a
    trial procedure alone does not make a SUSAR (it is reported as an SAE)."""
    if expected not in _vocab.codes(_vocab.EXPECTEDNESS):
        raise InputError(f"expectedness {expected!r} is not one of "
                         f"{', '.join(_vocab.codes(_vocab.EXPECTEDNESS))}")
    return bool(serious) and is_suspected(related_product) and expected == "unexpected"


def seriousness_issues(grade: int, serious: bool, criteria: Iterable[str],
                       outcome: str | None) -> list[tuple[str, str]]:
    """The (field, reason) problems of an event's seriousness, for the store's validators.

    ICH E2A §II.B: an event is serious when it meets at least one criterion
    (:data:`hepatrial.vocab.SERIOUSNESS_CRITERIA`), so ``serious`` is true exactly when
    criteria are given; grade 5 (death, CTCAE v5.0) and outcome ``fatal`` need the criterion
    ``death``, and ``death`` needs outcome fatal. Severity (grade) is not seriousness: grade 3
    or 4 does not by itself make an event serious.
    """
    crit = list(criteria)
    allowed = _vocab.codes(_vocab.SERIOUSNESS_CRITERIA)
    out: list[tuple[str, str]] = []
    for c in crit:
        if c not in allowed:
            out.append(("seriousness_criteria", f"{c!r} is not a seriousness criterion "
                        f"({', '.join(allowed)})"))
    dup = sorted({c for c in crit if crit.count(c) > 1})
    if dup:
        out.append(("seriousness_criteria", f"listed twice: {', '.join(dup)}"))
    if serious and not crit:
        out.append(("seriousness_criteria", "a serious event needs at least one criterion "
                    "(ICH E2A)"))
    if not serious and crit:
        out.append(("serious", f"criteria {', '.join(crit)} make the event serious"))
    if (grade == 5 or outcome == "fatal") and "death" not in crit:
        out.append(("seriousness_criteria", "a fatal event (grade 5 / outcome fatal) meets "
                    "the criterion 'death'"))
    if "death" in crit and outcome != "fatal":
        out.append(("outcome", f"criterion 'death' needs outcome 'fatal', got {outcome!r}"))
    return out


# ============================================================== SAE reporting clocks
@dataclass(frozen=True)
class ReportDue:
    """One report the SAE workflow owes: what, by when, from which start, on what basis.

    ``deadline`` (aware, UTC) is inclusive: a report submitted at or before it is on time.
    ``due_date`` is the deadline's calendar date in the trial's time zone (for worklists).
    """

    kind: str
    clock_start: _dt.datetime
    deadline: _dt.datetime
    due_date: _dt.date
    basis: str
    source: str

    def status(self, submitted_at: _dt.datetime | None, now: _dt.datetime) -> str:
        """See :func:`report_status`."""
        return report_status(self, submitted_at, now)


def report_status(due: ReportDue, submitted_at: _dt.datetime | None, now: _dt.datetime) -> str:
    """``"submitted"`` (on time), ``"late"`` (submitted after the deadline), ``"overdue"``
    (not submitted, deadline passed) or ``"pending"``."""
    now = _aware("now", now, "report status")
    if submitted_at is not None:
        sub = _aware("submitted_at", submitted_at, "report status")
        return "submitted" if sub <= due.deadline else "late"
    return "overdue" if now > due.deadline else "pending"


def local_to_utc(local: _dt.datetime, time_zone: str, *, fold: int | None = None
                 ) -> _dt.datetime:
    """A wall-clock time entered in ``time_zone`` as an aware UTC datetime.

    Refuses a time that does not exist (skipped by a daylight-saving change, e.g. 01:30 in
    Europe/London on the last Sunday of March) and an ambiguous one (repeated when clocks go
    back, e.g. 01:30 on the last Sunday of October) unless ``fold`` says which (0: the first,
    summer time; 1: the second), so no awareness time is silently shifted by an hour.
    """
    if local.tzinfo is not None:
        raise InputError(f"{local!r} already has a time zone; give the wall-clock time")
    tz = ZoneInfo(time_zone)
    a = local.replace(tzinfo=tz, fold=0)
    b = local.replace(tzinfo=tz, fold=1)
    if a.utcoffset() != b.utcoffset():
        ua, ub = a.astimezone(_dt.UTC), b.astimezone(_dt.UTC)
        if ua > ub:  # the wall time was skipped (spring forward): it does not exist
            raise InputError(f"{local.isoformat(sep=' ')} does not exist in {time_zone} "
                             "(clocks were put forward); check the time")
        if fold is None:
            raise InputError(f"{local.isoformat(sep=' ')} happened twice in {time_zone} "
                             "(clocks went back): say which (fold=0 first, fold=1 second)")
        return ua if fold == 0 else ub
    return a.astimezone(_dt.UTC)


def _calendar_deadline(start: _dt.datetime, days: int, tz: ZoneInfo) -> tuple[_dt.datetime,
                                                                               _dt.date]:
    day0 = start.astimezone(tz).date()
    due = day0 + _dt.timedelta(days=days)
    end = _dt.datetime.combine(due + _dt.timedelta(days=1), _dt.time(), tzinfo=tz)
    return end.astimezone(_dt.UTC) - _dt.timedelta(microseconds=1), due


def initial_report_due(site_aware_at: _dt.datetime, clocks: ReportingClocks) -> ReportDue:
    """The investigator's initial SAE report: ``initial_report_hours`` (24) elapsed hours
    after the site became aware (EU 536/2014 Art. 41(2); ICH E6 / 21 CFR 312.64(b)
    "immediately"). Elapsed time: a daylight-saving change does not move it."""
    start = _aware("site_aware_at", site_aware_at, "initial SAE report")
    deadline = start + _dt.timedelta(hours=clocks.initial_report_hours)
    return ReportDue("initial", start, deadline, deadline.astimezone(clocks.tz).date(),
                     f"{clocks.initial_report_hours} h after the site became aware",
                     "EU 536/2014 Art. 41(2); 21 CFR 312.64(b)")


def susar_report_due(sponsor_aware_at: _dt.datetime, fatal_or_life_threatening: bool,
                     clocks: ReportingClocks) -> ReportDue:
    """The expedited SUSAR report: day 0 is the calendar day (trial time zone) the sponsor
    became aware; due by the end of day 7 (fatal or life-threatening) or day 15 (others)
    (ICH E2A §III.A; 21 CFR 312.32(c)(1)-(2); EU 536/2014 Art. 42(2)(a)-(b)). For a SUSAR
    that turned fatal or life-threatening later, pass the time the sponsor learnt that
    (Art. 42(2)(c))."""
    start = _aware("sponsor_aware_at", sponsor_aware_at, "SUSAR report")
    days = clocks.susar_fatal_days if fatal_or_life_threatening else clocks.susar_other_days
    deadline, due = _calendar_deadline(start, days, clocks.tz)
    kind = "susar_7_day" if fatal_or_life_threatening else "susar_15_day"
    return ReportDue(kind, start, deadline, due,
                     f"{days} calendar days after the sponsor became aware "
                     f"({'fatal or life-threatening' if fatal_or_life_threatening else 'other'})",
                     "ICH E2A III.A; 21 CFR 312.32(c); EU 536/2014 Art. 42(2)")


def susar_follow_up_due(initial_submitted_at: _dt.datetime, clocks: ReportingClocks
                        ) -> ReportDue | None:
    """The complete follow-up of a fatal or life-threatening SUSAR: 8 further calendar days
    after the initial expedited report (ICH E2A §III.A; Directive 2001/20/EC Art. 17(1)(a));
    None when the protocol sets no such clock."""
    if clocks.susar_fatal_follow_up_days is None:
        return None
    start = _aware("initial_submitted_at", initial_submitted_at, "SUSAR follow-up")
    deadline, due = _calendar_deadline(start, clocks.susar_fatal_follow_up_days, clocks.tz)
    return ReportDue("susar_follow_up", start, deadline, due,
                     f"{clocks.susar_fatal_follow_up_days} calendar days after the initial "
                     "expedited report", "ICH E2A III.A; Directive 2001/20/EC Art. 17(1)(a)")


def follow_up_due(last_report_at: _dt.datetime, clocks: ReportingClocks) -> ReportDue:
    """The next follow-up SAE report while the event is unresolved: the end of the calendar
    day ``follow_up_interval_days`` after the last report (the protocol's interval; ICH E2A
    §III.B asks for follow-up information as it becomes available)."""
    start = _aware("last_report_at", last_report_at, "follow-up report")
    deadline, due = _calendar_deadline(start, clocks.follow_up_interval_days, clocks.tz)
    return ReportDue("follow_up", start, deadline, due,
                     f"{clocks.follow_up_interval_days} calendar days after the last report "
                     "until resolution", "ICH E2A III.B; protocol")


def sae_due_dates(
    clocks: ReportingClocks, *, site_aware_at: _dt.datetime,
    sponsor_aware_at: _dt.datetime | None = None, susar: bool = False,
    fatal_or_life_threatening: bool = False, reports: Mapping[str, _dt.datetime] | None = None,
    resolved: bool = False,
) -> tuple[ReportDue, ...]:
    """Every report one SAE owes now, in order: the initial report; for a SUSAR the expedited
    report (clock from ``sponsor_aware_at``, default the site's awareness, as for an
    investigator-sponsor) and, if fatal or life-threatening and already submitted, its 8-day
    follow-up; while unresolved, the next follow-up after the latest report submitted.
    ``reports``: kind -> submission time of the reports already made (latest follow-up under
    ``follow_up``)."""
    reports = dict(reports or {})
    out = [initial_report_due(site_aware_at, clocks)]
    if susar:
        sp = sponsor_aware_at or site_aware_at
        s = susar_report_due(sp, fatal_or_life_threatening, clocks)
        out.append(s)
        if fatal_or_life_threatening and s.kind in reports:
            fu = susar_follow_up_due(reports[s.kind], clocks)
            if fu is not None:
                out.append(fu)
    if not resolved:
        made = [t for k, t in reports.items() if k in ("initial", "follow_up")]
        if made:
            out.append(follow_up_due(max(_aware("report", t, "SAE") for t in made), clocks))
    return tuple(out)


# ============================================================== operating characteristics
_RELATED_SAE = "related_sae"


def _is_related_sae(f: EventFilter) -> bool:
    return f.serious is True and f.related_to is not None and not (f.terms or f.socs
                                                                  or f.after_route)


def plan_monitors(plan: SafetyPlan, n_max: int | None = None) -> list[_mon.Monitor]:
    """The plan's stopping rules as monitors for :mod:`hepatrial.design.monitoring`.

    Event types: ``related_sae`` (a participant with an SAE at least possibly related: the
    Bayesian rule's event, and event rules with such a filter); every other event rule and
    each lab-rise rule watches its own event type named by its rule id. The sentinel rule
    spaces participants and stops nothing: it has no monitor.
    """
    n = n_max or plan.planned_treated
    out = []
    for r in plan.stopping_rules:
        if isinstance(r, BayesianRule):
            ev = _RELATED_SAE if _is_related_sae(r.event) else r.id
            out.append(_mon.Monitor(r.id, ev, r.boundary(n)))
        elif isinstance(r, EventRule):
            ev = _RELATED_SAE if any(_is_related_sae(f) for f in r.match_any) else r.id
            out.append(_mon.count_monitor(r.id, ev, r.count, n))
        elif isinstance(r, LabRiseRule):
            out.append(_mon.count_monitor(r.id, r.id, r.count, n, count_first=r.first_treated))
    return out


def plan_operating_characteristics(
    plan: SafetyPlan, grid: Iterable[float], *, other_rates: Mapping[str, float] | None = None,
    n_max: int | None = None,
) -> dict[str, list[_mon.OperatingCharacteristics]]:
    """Operating characteristics of the plan for true related-SAE rates in ``grid``, for
    ``planned_treated`` participants: ``"bayesian:<id>"`` for each Bayesian rule alone (what
    decides if the DSMB resumes after single events), ``"rule:<id>"`` for each other rule
    alone at the rates in ``grid`` of *its own* event (a related SAE, or the event type the
    rule watches: a portal-vein thrombosis, a MELD rise), and ``"all"`` for the whole rule
    set (other event types at ``other_rates``, keyed by rule id, default 0). Exact
    (:func:`hepatrial.design.monitoring.operating_characteristics`)."""
    n = n_max or plan.planned_treated
    grid = list(grid)
    mons = plan_monitors(plan, n)
    out: dict[str, list[_mon.OperatingCharacteristics]] = {}
    for r in plan.stopping_rules:
        mon = next((m for m in mons if m.name == r.id), None)
        if mon is not None:  # the sentinel rule has none
            kind = "bayesian" if isinstance(r, BayesianRule) else "rule"
            out[f"{kind}:{r.id}"] = _mon.oc_table([mon], mon.event, grid, n)
    if mons:
        out["all"] = _mon.oc_table(mons, _RELATED_SAE, grid, n, other_rates)
    return out
