"""Rules of an adverse event.

:func:`validate_adverse_event` judges the state an adverse event is about to be written in,
on creation and on every change (follow-up, correction), from the values and the facts the
service passes in (:class:`AdverseEventFacts`; nothing here reads the database). Every write
path (services, admin, CLI, importers, eCRF) calls it.

Rules (field: reason):

* ``term``/``specify``/``meddra_code``/``grade``: the event is coded to CTCAE v5.0 by
  :func:`hepatrial.protocol.ctcae_terms.code_event`: a CTCAE term (case-insensitive; stored in
  NCI's spelling with its MedDRA code, system organ class and the definition of the grade for
  that term), a grade that exists for the term (1-5; e.g. "Death NOS" is grade 5 only), a
  specify text for and only for an "Other, specify" term, a MedDRA code given beside the term
  that agrees with it. An event stored before coding (migration 0005) keeps its free-text term
  while the term is not changed; a new or changed term is coded.
* **Grade 5 is death related to the adverse event** (CTCAE v5.0): it requires outcome
  ``fatal``, ``serious`` true and the seriousness criterion ``death`` (ICH E2A); outcome
  ``fatal`` is grade 5. The date of death is ``resolution_date`` (required for outcome
  fatal; SDTM AEENDTC of a fatal event); a participant recorded as died on another date is
  refused (one date of death).
* ``serious``/``seriousness_criteria``: :func:`hepatrial.protocol.safety.seriousness_issues`
  (ICH E2A §II.B: serious exactly when at least one criterion is given; fatal needs
  ``death``, ``death`` needs fatal). A serious event needs the time the site became aware.
* ``relatedness_product``, ``relatedness_procedure``: each a code of
  :data:`hepatrial.vocab.RELATEDNESS`, judged separately; ``procedure`` (a code of
  :data:`~hepatrial.vocab.SAFETY_PROCEDURE`) names the procedure when the procedure
  relatedness is not ``not_related``. Causality needs the cause first: an event at least
  possibly related to the cell product needs an administration on or before its onset; one
  at least possibly related to an injection or infusion procedure needs an administration by
  that route on or before its onset (ICH E2A §II.A.2: a reasonable possibility of a causal
  relationship; nothing can be caused by what has not happened yet).
* ``outcome``, ``action_taken``: codes of :data:`~hepatrial.vocab.AE_OUTCOME` (CDISC SDTM AEOUT)
  and :data:`~hepatrial.vocab.AE_ACTION` (SDTM AEACN); the action taken is required.
* A fatal event makes the participant's status ``died`` on the date of death (the service does
  it in the same transaction): refused for a screen failure, and a date of death before the
  enrolment is refused.
* ``onset_date``: not in the future, not before the participant's screening nor before their
  informed consent (a consent must be on record: the collection period starts at consent;
  ICH E2A defines an adverse event in a clinical investigation subject), not after the
  participant's death.
* ``resolution_date``: not in the future, not before the onset, not after the participant's
  death. An outcome ``recovered``/``recovered_with_sequelae``/``fatal`` has a resolution date
  and a resolution date goes with one of them (SDTM AEENDTC/AEOUT consistency).
* ``aware_at``: when the site became aware, as a wall-clock time in a time zone (the site's;
  default the trial's, ``[safety.reporting].time_zone``) converted to UTC by
  :func:`hepatrial.protocol.safety.local_to_utc` — a time skipped by a daylight-saving change
  is refused, a repeated one needs ``aware_fold`` —, or an aware datetime. Not in the future,
  not before the onset day nor before the informed consent (in the trial's time zone).
* Expectedness (``expectedness_product``/``expectedness_procedure``, computed, never entered):
  for each cause the event is suspected of, :func:`hepatrial.protocol.safety.expectedness`
  against the protocol's reference safety information (ICH E2A §II.C); NULL when the event
  is not suspected of that cause, or is not coded.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hepatrial import vocab
from hepatrial.trials.validators import _values as v
from hepatrial.trials.validators._common import Checker
from hepatrial.trials.validators._common import today as _today
from hepatrial.vocab import AE_ACTION, AE_OUTCOME, RELATEDNESS, SAFETY_PROCEDURE, codes

__all__ = [
    "FIELDS",
    "LAB_REFERENCE",
    "RESOLVED",
    "AdverseEventFacts",
    "higher_relatedness",
    "lab_grade",
    "lab_grade_rises",
    "parse_wall_time",
    "validate_adverse_event",
]

#: outcomes that close the event (with a resolution date; fatal: the date of death)
RESOLVED = ("recovered", "recovered_with_sequelae")
_CLOSED = (*RESOLVED, "fatal")
_RANK = {c: i for i, c in enumerate(codes(RELATEDNESS))}
#: the procedures that are an administration of the product, by the route they use
_ROUTE_OF_PROCEDURE = {
    "portal_vein_injection": "portal_vein",
    "peripheral_infusion": "peripheral_vein",
    "hepatic_artery_injection": "hepatic_artery",
}

#: what a caller may give (``aware_local`` + ``aware_time_zone`` [+ ``aware_fold``] or
#: ``aware_at``)
FIELDS = (
    "term", "specify", "meddra_code", "grade", "serious", "seriousness_criteria",
    "relatedness_product", "relatedness_procedure", "procedure", "onset_date",
    "resolution_date", "outcome", "action_taken", "aware_at", "aware_local", "aware_time_zone",
    "aware_fold",
)  # fmt: skip


@dataclass(frozen=True)
class AdverseEventFacts:
    """What the store knows that an adverse event's rules need (gathered by the service)."""

    participant: str
    screening_date: _dt.date | None
    #: date of the participant's first informed consent (None: no consent on record)
    consent_date: _dt.date | None
    #: the participant's administrations: (date, route), any order
    administrations: tuple[tuple[_dt.date, str], ...] = ()
    #: the participant's date of death when the status is died by another record (None
    #: otherwise: e.g. alive, or died by this very event)
    death_date: _dt.date | None = None
    #: the protocol's [safety] plan (reference safety information, trial time zone)
    plan: Any = None
    #: the stored event when the state is a change of it: its term and whether it was stored
    #: before coding (migration 0005: no CTCAE version)
    stored_term: str | None = None
    stored_uncoded: bool = False
    #: fields the stored (pre-coding) event has empty and may keep empty
    legacy_empty: frozenset[str] = field(default_factory=frozenset)
    participant_status: str | None = None
    enrolment_date: _dt.date | None = None


def higher_relatedness(*levels: str | None) -> str | None:
    """The highest of relatedness codes (None ignored; None if all are None)."""
    given = [x for x in levels if x in _RANK]
    return max(given, key=_RANK.__getitem__) if given else None


def parse_wall_time(value: Any) -> _dt.datetime | None:
    """A naive wall-clock datetime from ``YYYY-MM-DD HH:MM[:SS]`` text (``T`` allowed) or a
    naive datetime; None when it is neither."""
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo is None else None
    if isinstance(value, str):
        s = value.strip()
        if len(s) < 16 or s[10] not in " T":
            return None
        try:
            d = _dt.datetime.fromisoformat(s)
        except ValueError:
            return None
        return d if d.tzinfo is None else None
    return None


def _choice(c: Checker, field_name: str, value: Any, allowed: tuple[str, ...]) -> str | None:
    if v.missing(value):
        c.fail(field_name, f"is required (one of {', '.join(allowed)})")
        return None
    return v.choice(c, field_name, value, allowed)


def _grade(c: Checker, value: Any) -> int | None:
    g: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        g = value
    elif isinstance(value, float) and value.is_integer():
        g = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        g = int(value.strip())
    if g is None or not 1 <= g <= 5:
        c.fail("grade", f"{value!r} is not 1-5 (CTCAE grade)")
        return None
    return g


def _criteria(c: Checker, value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return [x.strip() for x in value.replace(";", ",").split(",") if x.strip()]
    if isinstance(value, Iterable) and not isinstance(value, Mapping | bytes):
        out = list(value)
        if all(isinstance(x, str) for x in out):
            return [x.strip() for x in out]
    c.fail("seriousness_criteria", f"{value!r} is not a list of criteria")
    return None


def _code(c: Checker, values: Mapping[str, Any], grade: int | None,
          facts: AdverseEventFacts) -> dict[str, Any]:  # fmt: skip
    """The CTCAE coding of the term (or the kept legacy term)."""
    from hepatrial.protocol import ctcae_terms as ct

    term_in = values.get("term")
    specify = values.get("specify")
    code = values.get("meddra_code")
    out: dict[str, Any] = {"term": None, "specify": None, "meddra_code": None, "soc": None,
                           "ctcae_version": None, "grade_definition": None}  # fmt: skip
    term = v.text(c, "term", term_in, max_length=200)
    if specify is not None and not isinstance(specify, str):
        c.fail("specify", f"{specify!r} is not text")
        return out
    if isinstance(specify, str) and len(specify.strip()) > 200:
        c.fail("specify", f"is {len(specify.strip())} characters long (at most 200)")
        return out
    if term is None:
        return out
    legacy = (facts.stored_uncoded and facts.stored_term is not None and term == facts.stored_term
              and not (specify or "").strip() and code in (None, ""))  # fmt: skip
    if legacy:
        try:
            ct.term(term)
        except ct.CtcaeTermError:
            out["term"] = term  # a free-text term stored before coding, unchanged
            return out
    if grade is None:
        try:
            ct.term(term)
        except ct.CtcaeTermError as e:
            c.fail("term", str(e))
        return out
    try:
        ev = ct.code_event(term, grade, specify=specify or None,
                           meddra_code=None if code in (None, "") else code)
    except ct.CtcaeTermError as e:
        for part in re.split(r"; (?=(?:term|grade|specify|meddra_code): )", str(e)):
            name, _, reason = part.partition(": ")
            c.fail(name if name in ("term", "grade", "specify", "meddra_code") else "term",
                   reason or part)
        return out
    out.update(term=ev.term, specify=ev.specify, meddra_code=ev.meddra_code, soc=ev.soc,
               ctcae_version=ct.CTCAE_VERSION, grade_definition=ev.grade_definition)
    return out


def _aware(c: Checker, values: Mapping[str, Any], facts: AdverseEventFacts
           ) -> tuple[_dt.datetime | None, str | None, str | None]:  # fmt: skip
    """(aware_at UTC, wall-clock text as entered, time zone) or Nones."""
    from hepatrial.errors import InputError
    from hepatrial.protocol.safety import local_to_utc

    at = values.get("aware_at")
    local = values.get("aware_local")
    zone = values.get("aware_time_zone")
    if v.missing(local) and at in (None, ""):
        return None, None, None
    if not v.missing(local):
        wall = parse_wall_time(local)
        if wall is None:
            c.fail("aware_at", f"{local!r} is not a date and time (YYYY-MM-DD HH:MM)")
            return None, None, None
        tz = zone if not v.missing(zone) else (
            facts.plan.reporting.time_zone if facts.plan is not None else None)
        if tz is None:
            c.fail("aware_time_zone", "is required (the time zone the awareness time was "
                   "entered in, e.g. Asia/Tehran)")
            return None, None, None
        fold = values.get("aware_fold")
        if fold not in (None, "", 0, 1, "0", "1"):
            c.fail("aware_fold", f"{fold!r} is not 0 (the first) or 1 (the second)")
            return None, None, None
        try:
            utc = local_to_utc(wall, str(tz).strip(),
                               fold=None if fold in (None, "") else int(fold))
        except InputError as e:
            c.fail("aware_at", str(e))
            return None, None, None
        except (KeyError, ValueError):
            c.fail("aware_time_zone", f"{tz!r} is not an IANA time zone (e.g. Asia/Tehran)")
            return None, None, None
        text = wall.isoformat(sep=" ", timespec="minutes" if wall.second == 0 else "seconds")
        return utc, text, str(tz).strip()
    if not isinstance(at, _dt.datetime) or at.tzinfo is None or at.utcoffset() is None:
        c.fail("aware_at", f"{at!r} is not a time-zone-aware date and time (give the wall-clock "
               "time and its time zone)")
        return None, None, None
    utc = at.astimezone(_dt.UTC)
    tzname = None if v.missing(zone) else str(zone).strip()
    shown = utc if tzname is None else utc.astimezone(_zone(tzname) or _dt.UTC)
    return utc, shown.replace(tzinfo=None).isoformat(sep=" ", timespec="minutes"), (
        tzname or "UTC")


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def validate_adverse_event(
    values: Mapping[str, Any], facts: AdverseEventFacts, *, today: _dt.date | None = None,
    now: _dt.datetime | None = None,
) -> dict[str, Any]:
    """Check an adverse event's state; return the values to store or raise ``RuleViolation``
    with every problem.

    ``values``: the keys of :data:`FIELDS` (missing ones are empty). Returns the typed values
    of the model's columns, the derived ones included (``relatedness`` = the higher of the
    two judgements, MedDRA code, SOC, grade definition, expectedness, UTC awareness time).
    """
    from hepatrial.protocol import safety as ps

    today = today or _today()
    now = now or _dt.datetime.now(_dt.UTC)
    term_in = values.get("term")
    label = f" {term_in.strip()!r}" if isinstance(term_in, str) and term_in.strip() else ""
    c = Checker(f"participant {facts.participant} adverse event{label}")
    legacy = facts.legacy_empty
    grade = _grade(c, values.get("grade"))
    coded = _code(c, values, grade, facts)
    serious = v.boolean(c, "serious", values.get("serious"))
    crit = _criteria(c, values.get("seriousness_criteria"))
    rel_prod = _choice(c, "relatedness_product", values.get("relatedness_product"),
                       codes(RELATEDNESS))
    rel_proc_in = values.get("relatedness_procedure")
    rel_proc = None
    if not (v.missing(rel_proc_in) and "relatedness_procedure" in legacy):
        rel_proc = _choice(c, "relatedness_procedure", rel_proc_in, codes(RELATEDNESS))
    proc_in = values.get("procedure")
    procedure = None
    if not v.missing(proc_in):
        procedure = v.choice(c, "procedure", proc_in, codes(SAFETY_PROCEDURE))
    elif rel_proc not in (None, "not_related"):
        c.fail("procedure", f"relatedness to a procedure is {rel_proc!r}: name the procedure "
               f"({', '.join(codes(SAFETY_PROCEDURE))})")
    outcome = _choice(c, "outcome", values.get("outcome"), codes(AE_OUTCOME))
    action_in = values.get("action_taken")
    action = None
    if not (v.missing(action_in) and "action_taken" in legacy):
        action = _choice(c, "action_taken", action_in, codes(AE_ACTION))
    onset = v.date(c, "onset_date", values.get("onset_date"))
    resolved = v.date(c, "resolution_date", values.get("resolution_date"), required=False)
    v.not_future(c, "onset_date", onset, today)
    v.not_future(c, "resolution_date", resolved, today)
    aware_at, aware_local, aware_tz = _aware(c, values, facts)

    # grade 5 = death related to the AE (CTCAE v5.0); seriousness (ICH E2A)
    if grade == 5:
        if outcome is not None and outcome != "fatal":
            c.fail("outcome", f"grade 5 (death related to the adverse event, CTCAE v5.0) "
                   f"requires outcome 'fatal', got {outcome!r}")
        if serious is False:
            c.fail("serious", "grade 5 (death) is a serious adverse event (ICH E2A): serious "
                   "must be true")
    elif grade is not None and outcome == "fatal":
        c.fail("grade", f"outcome 'fatal' is grade 5 (death related to the adverse event, "
               f"CTCAE v5.0), got grade {grade}")
    if grade is not None and serious is not None and crit is not None and (
            not (serious and not crit and "seriousness_criteria" in legacy)):
        known = {p.field for p in c}
        for fld, reason in ps.seriousness_issues(grade, serious, crit, outcome):
            if fld == "outcome" and "outcome" in known:
                continue
            if fld == "serious" and "serious" in known:
                continue
            c.fail(fld, reason)
    if (serious and aware_at is None and "aware_at" not in {p.field for p in c}
            and "aware_at" not in legacy):
        c.fail("aware_at", "a serious adverse event needs the date and time the site became "
               "aware (the 24-hour reporting clock starts then)")

    tz = facts.plan.reporting.tz if facts.plan is not None else _dt.UTC
    if onset is not None:
        if facts.screening_date is not None and onset < facts.screening_date:
            c.fail("onset_date", f"{onset} is before the participant's screening on "
                   f"{facts.screening_date}")
        if facts.consent_date is None:
            c.fail("participant", f"{facts.participant} has no informed consent on record "
                   "(adverse events are collected from consent on)")
        elif onset < facts.consent_date:
            c.fail("onset_date", f"{onset} is before the participant's informed consent on "
                   f"{facts.consent_date}")
        if facts.death_date is not None and onset > facts.death_date:
            c.fail("onset_date", f"{onset} is after the participant's death on "
                   f"{facts.death_date}")
        if resolved is not None and resolved < onset:
            c.fail("resolution_date", f"{resolved} is before the onset on {onset}")
        doses = sorted(facts.administrations)
        if rel_prod in vocab.RELATED_CODES and not any(d <= onset for d, _r in doses):
            first = f"the first administration is on {doses[0][0]}" if doses else (
                "no administration is recorded")
            c.fail("relatedness_product", f"{rel_prod!r} related to the cell product, but the "
                   f"onset {onset} is before any administration ({first})")
        route = _ROUTE_OF_PROCEDURE.get(procedure or "")
        if rel_proc in vocab.RELATED_CODES and route is not None and not any(
                d <= onset and r == route for d, r in doses):
            c.fail("relatedness_procedure", f"{rel_proc!r} related to the {procedure}, but no "
                   f"administration by {route} is recorded on or before the onset {onset}")
        if aware_at is not None:
            aware_day = aware_at.astimezone(tz).date()
            if aware_day < onset:
                c.fail("aware_at", f"the site became aware on {aware_day} (trial time zone), "
                       f"before the onset on {onset}")
            elif facts.consent_date is not None and aware_day < facts.consent_date:
                c.fail("aware_at", f"{aware_day} is before the informed consent on "
                       f"{facts.consent_date}")  # pragma: no cover - onset rule first
    if aware_at is not None and aware_at > now:
        c.fail("aware_at", f"{aware_at.isoformat()} is in the future")
    if resolved is not None and facts.death_date is not None and resolved > facts.death_date:
        c.fail("resolution_date", f"{resolved} is after the participant's death on "
               f"{facts.death_date}")
    if outcome == "fatal" and resolved is None and "resolution_date" not in {p.field for p in c}:
        c.fail("resolution_date", "outcome 'fatal' needs the date of death (resolution date)")
    elif outcome in RESOLVED and resolved is None and "resolution_date" not in {
            p.field for p in c}:
        c.fail("resolution_date", f"outcome {outcome!r} needs the resolution date")
    if resolved is not None and outcome is not None and outcome not in _CLOSED:
        c.fail("outcome", f"{outcome!r} does not go with a resolution date ({resolved}): use "
               "recovered, recovered_with_sequelae or fatal, or clear the date")
    if outcome == "fatal" and facts.participant_status == "screen_failed":
        c.fail("outcome", f"participant {facts.participant} is a screen failure: the status "
               "screen_failed cannot become died (correct the status first)")
    if outcome == "fatal" and resolved is not None and facts.enrolment_date is not None and (
            resolved < facts.enrolment_date):
        c.fail("resolution_date", f"the date of death {resolved} is before the participant's "
               f"enrolment on {facts.enrolment_date}")
    if outcome == "fatal" and resolved is not None and facts.death_date is not None and (
            resolved != facts.death_date):
        c.fail("resolution_date", f"the participant died on {facts.death_date}: a fatal "
               f"event's date of death is that date, not {resolved}")
    c.done()

    exp_prod = exp_proc = None
    plan = facts.plan
    if plan is not None and coded["ctcae_version"] is not None and grade is not None:
        if rel_prod in vocab.RELATED_CODES:
            exp_prod = ps.expectedness(plan, coded["term"], grade, "product")
        if rel_proc in vocab.RELATED_CODES:
            exp_proc = ps.expectedness(plan, coded["term"], grade, "procedure")
    rsi = None
    if plan is not None and (exp_prod or exp_proc):
        r = plan.reference_safety_information
        rsi = f"{r.document} {r.version}".strip()[:100]
    return {
        **coded,
        "grade": grade,
        "serious": serious,
        "seriousness_criteria": None if (not crit and "seriousness_criteria" in legacy) else (
            crit or []),
        "relatedness": higher_relatedness(rel_prod, rel_proc),
        "relatedness_product": rel_prod,
        "relatedness_procedure": rel_proc,
        "procedure": procedure,
        "onset_date": onset,
        "resolution_date": resolved,
        "outcome": outcome,
        "action_taken": action,
        "aware_at": aware_at,
        "aware_local": aware_local,
        "aware_time_zone": aware_tz,
        "expectedness_product": exp_prod,
        "expectedness_procedure": exp_proc,
        "rsi_version": rsi,
    }


# ---------------------------------------------------------------------- lab-derived proposals
#: Reference ranges of the CTCAE lab grades that propose adverse events (the store holds no
#: laboratory reference ranges): assumed adult values in the canonical SI units, the same as
#: the report's for bilirubin, creatinine, INR and albumin (hepatrial.report.analyze
#: REFERENCE_RANGES); ALT/AST ULN 40 U/L and platelets LLN 150 x 10^9/L (assumed).
LAB_REFERENCE: dict[str, dict[str, Any]] = {
    "bilirubin": {"uln": 21.0, "unit": "umol/L"},
    "creatinine": {"uln": 106.0, "unit": "umol/L"},
    "inr": {"uln": 1.2, "unit": "1"},
    "albumin": {"lln": 35.0, "unit": "g/L"},
    "alt": {"uln": 40.0, "unit": "U/L"},
    "ast": {"uln": 40.0, "unit": "U/L"},
    "platelets": {"lln": 150.0, "unit": "10^9/L"},
}
#: analytes whose CTCAE v5.0 criteria have a "x baseline" arm (CTCAE v5.0; hepatrial.scores.ctcae)
_BASELINE_ARM = frozenset({"bilirubin", "creatinine", "alt", "ast"})


def lab_grade(analyte: str, value: float, baseline: float | None = None) -> int | None:
    """CTCAE v5.0 grade (0-4) of a lab value in its canonical unit with :data:`LAB_REFERENCE`
    (:func:`hepatrial.scores.ctcae.ctcae_grade`; the baseline is used by the criteria that
    have a baseline arm); None when it cannot be graded."""
    import math

    from hepatrial.protocol.ctcae_terms import LAB_TERMS
    from hepatrial.scores.ctcae import ctcae_grade

    ref = LAB_REFERENCE[analyte]
    kw: dict[str, Any] = {k: ref[k] for k in ("uln", "lln") if k in ref}
    if analyte in ("albumin", "platelets"):
        kw["unit"] = ref["unit"]
    if baseline is not None and analyte in _BASELINE_ARM:
        kw["baseline"] = baseline
    g = float(ctcae_grade(LAB_TERMS[analyte], value, errors="coerce", **kw))
    return None if math.isnan(g) else int(g)


def lab_grade_rises(analyte: str, baseline: float,
                    series: Iterable[tuple[Any, float]]) -> list[tuple[Any, int, int]]:
    """The lab values that propose an adverse event: ``(key, grade, baseline grade)``.

    The baseline grade is the grade of the baseline value itself (no earlier value: the
    "baseline normal" criteria, i.e. x ULN / absolute thresholds); each later value (``series``
    in visit order) is graded by CTCAE v5.0 with the baseline (x baseline arms where the
    criteria have them). A value proposes an event when its grade is above the baseline grade
    and above the grade of the value before it (a new rise or a worsening; a value at the same
    grade as the one before continues the same event). Example: bilirubin ULN 21, baseline 40
    (grade 2: > 1.5 x ULN), then 45 (grade 1: > 1.0 x an abnormal baseline) proposes nothing;
    130 (grade 3: > 3.0 x baseline) proposes a grade 3 "Blood bilirubin increased".
    """
    b = lab_grade(analyte, baseline)
    if b is None:
        return []
    out: list[tuple[Any, int, int]] = []
    prev = b
    for key, value in series:
        g = lab_grade(analyte, value, baseline)
        if g is None:
            continue
        if g > b and g > prev:
            out.append((key, g, b))
        prev = g
    return out
