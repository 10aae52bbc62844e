"""Rules of the SAE action chain and of the DSMB's decisions (pure: the service passes the
facts in; nothing here reads the database).

:func:`validate_sae_report` — one report of an SAE (ICH E2A III; EU 536/2014 Art. 41-42):

* the event is serious and its awareness time is recorded (the clocks start there);
* ``kind`` is a code of :data:`hepatrial.vocab.SAE_REPORT_KIND`; ``narrative`` is given;
* ``submitted_at`` is an aware date and time, not in the future, not before the site became
  aware;
* ``initial`` once; ``follow_up`` after the initial report and not after the final follow-up;
  ``final`` only on a follow-up of an event that is closed (recovered, recovered with
  sequelae, fatal: "follow-up until resolution", ICH E2A III.B);
* an expedited report only for a SUSAR, of the clock its seriousness sets (``susar_7_day``
  for a fatal or life-threatening one, ``susar_15_day`` otherwise), once;
  ``susar_follow_up`` after the 7-day report, once;
* the report answers the due date it is made for (:func:`hepatrial.protocol.safety.sae_due_dates`):
  its deadline and whether it met it are stored with it.

:func:`validate_sae_assessment` — a causality assessment of an SAE by the investigator or the
sponsor: both relatedness judgements (product, procedure) are codes of
:data:`~hepatrial.vocab.RELATEDNESS`, the procedure is named when its relatedness is not
``not_related``, the rationale (``comment``) is given; the sponsor states the expectedness
(:data:`~hepatrial.vocab.EXPECTEDNESS`) whenever the event is suspected of the product in
either opinion (ICH E2A II.C: expectedness is the sponsor's, against the reference safety
information); the investigator does not.

:func:`validate_dsmb_decision` — a DSMB decision on a stopping rule: the rule is one of the
protocol's, the decision a code of :data:`~hepatrial.vocab.DSMB_DECISION`, the reason given;
``resume``/``resume_modified``/``continue_pause`` only on a rule that pauses now; nothing
resumes a rule the DSMB terminated.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hepatrial import vocab
from hepatrial.trials.validators import _values as v
from hepatrial.trials.validators._common import Checker

__all__ = [
    "DsmbDecisionFacts",
    "SaeAssessmentFacts",
    "SaeReportFacts",
    "validate_dsmb_decision",
    "validate_sae_assessment",
    "validate_sae_report",
]

_CLOSED = ("recovered", "recovered_with_sequelae", "fatal")


@dataclass(frozen=True)
class SaeReportFacts:
    """What the store knows that an SAE report's rules need."""

    adverse_event: str  # e.g. "AE-12"
    serious: bool
    aware_at: _dt.datetime | None
    outcome: str
    #: reports already made: (kind, submitted_at, final)
    made: tuple[tuple[str, _dt.datetime, bool], ...]
    #: the reports owed now (hepatrial.protocol.safety.ReportDue)
    dues: tuple[Any, ...]
    susar: bool
    fatal_or_life_threatening: bool


def _aware_time(c: Checker, field: str, value: Any) -> _dt.datetime | None:
    if not isinstance(value, _dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        c.fail(field, f"{value!r} is not a time-zone-aware date and time")
        return None
    return value.astimezone(_dt.UTC)


def validate_sae_report(values: Mapping[str, Any], facts: SaeReportFacts, *,
                        now: _dt.datetime) -> dict[str, Any]:  # fmt: skip
    """Check one SAE report; return ``kind, narrative, submitted_at, final, deadline,
    on_time`` or raise ``RuleViolation`` with every problem."""
    c = Checker(f"adverse event {facts.adverse_event} SAE report")
    if not facts.serious:
        c.fail("adverse_event", "is not serious: only a serious adverse event has SAE reports "
               "(record its seriousness criteria first)")
    if facts.aware_at is None:
        c.fail("adverse_event", "has no time of awareness: the reporting clocks start there "
               "(enter it with hepatrial ae update ID --aware ...)")
    kind = v.choice(c, "kind", values.get("kind"), vocab.codes(vocab.SAE_REPORT_KIND))
    narrative = v.text(c, "narrative", values.get("narrative"), max_length=20000)
    final = values.get("final", False)
    if not isinstance(final, bool):
        c.fail("final", f"{final!r} is not true or false")
        final = False
    at = _aware_time(c, "submitted_at", values.get("submitted_at"))
    if at is not None:
        if at > now:
            c.fail("submitted_at", f"{at.isoformat()} is in the future")
        if facts.aware_at is not None and at < facts.aware_at:
            c.fail("submitted_at", f"{at.isoformat()} is before the site became aware "
                   f"({facts.aware_at.isoformat()})")
    kinds = [k for k, _t, _f in facts.made]
    first = {k: t for k, t, _f in reversed(facts.made)}
    if kind == "initial" and "initial" in kinds:
        c.fail("kind", "the initial report was already made on "
               f"{first['initial'].isoformat()}: use a follow-up")
    if kind == "follow_up":
        if "initial" not in kinds:
            c.fail("kind", "a follow-up comes after the initial report (make the initial "
                   "report first)")
        elif at is not None and at < first["initial"]:
            c.fail("submitted_at", f"{at.isoformat()} is before the initial report "
                   f"({first['initial'].isoformat()})")
        if any(f for _k, _t, f in facts.made):
            c.fail("kind", "the final follow-up was already made: the event is closed")
        if final and facts.outcome not in _CLOSED:
            c.fail("final", f"the event's outcome is {facts.outcome!r}: a final follow-up "
                   "needs it recovered, recovered with sequelae or fatal")
    elif final:
        c.fail("final", "only a follow-up report is final")
    if kind in ("susar_7_day", "susar_15_day"):
        if not facts.susar:
            c.fail("kind", "the event is not a SUSAR (serious, suspected of the product and "
                   "unexpected): no expedited report is due")
        else:
            want = "susar_7_day" if facts.fatal_or_life_threatening else "susar_15_day"
            if kind != want:
                c.fail("kind", f"the SUSAR is {'' if facts.fatal_or_life_threatening else 'not '}"
                       f"fatal or life-threatening: its expedited report is {want}")
        done = [k for k in kinds if k in ("susar_7_day", "susar_15_day")]
        if done:
            c.fail("kind", f"the expedited report ({done[0]}) was already made on "
                   f"{first[done[0]].isoformat()}")
    if kind == "susar_follow_up":
        if "susar_7_day" not in kinds:
            c.fail("kind", "the SUSAR follow-up comes after the 7-day expedited report")
        elif "susar_follow_up" in kinds:
            c.fail("kind", "the SUSAR follow-up was already made on "
                   f"{first['susar_follow_up'].isoformat()}")
    c.done()
    due = next((d for d in facts.dues if d.kind == kind), None)
    deadline = due.deadline if due is not None else None
    return {"kind": kind, "narrative": narrative, "submitted_at": at, "final": final,
            "deadline": deadline,
            "on_time": None if deadline is None or at is None else at <= deadline}


@dataclass(frozen=True)
class SaeAssessmentFacts:
    """What the store knows that a causality assessment's rules need."""

    adverse_event: str
    serious: bool
    #: the investigator's relatedness to the product as stored on the event
    investigator_product: str | None


def validate_sae_assessment(values: Mapping[str, Any], facts: SaeAssessmentFacts
                            ) -> dict[str, Any]:  # fmt: skip
    """Check one causality assessment; return its typed values or raise ``RuleViolation``."""
    assessor = values.get("assessor")
    c = Checker(f"adverse event {facts.adverse_event} "
                f"{assessor if isinstance(assessor, str) else ''} assessment".replace("  ", " "))
    if not facts.serious:
        c.fail("adverse_event", "is not serious: causality assessments are part of the SAE "
               "chain")
    who = v.choice(c, "assessor", assessor, ("investigator", "sponsor"))
    rel = vocab.codes(vocab.RELATEDNESS)
    prod = v.choice(c, "relatedness_product", values.get("relatedness_product"), rel)
    proc = v.choice(c, "relatedness_procedure", values.get("relatedness_procedure"), rel)
    procedure = None
    if not v.missing(values.get("procedure")):
        procedure = v.choice(c, "procedure", values.get("procedure"),
                             vocab.codes(vocab.SAFETY_PROCEDURE))
    elif proc not in (None, "not_related"):
        c.fail("procedure", f"relatedness to a procedure is {proc!r}: name the procedure")
    comment = v.text(c, "comment", values.get("comment"), max_length=5000)
    exp_in = values.get("expectedness")
    expected = None
    suspected = any(x in vocab.RELATED_CODES for x in (prod, facts.investigator_product))
    if who == "sponsor":
        if not v.missing(exp_in):
            expected = v.choice(c, "expectedness", exp_in, vocab.codes(vocab.EXPECTEDNESS))
        elif suspected:
            c.fail("expectedness", "the event is suspected of the product: the sponsor states "
                   "whether it is expected (against the reference safety information)")
    elif who == "investigator" and not v.missing(exp_in):
        c.fail("expectedness", "expectedness is the sponsor's assessment (against the "
               "reference safety information), not the investigator's")
    c.done()
    return {"assessor": who, "relatedness_product": prod, "relatedness_procedure": proc,
            "procedure": procedure, "expectedness": expected, "comment": comment}


@dataclass(frozen=True)
class DsmbDecisionFacts:
    """The protocol's rules and their state now."""

    rules: tuple[str, ...]
    pausing: tuple[str, ...]
    #: rule id -> id of the decision that terminated on it
    terminated: Mapping[str, str]


def validate_dsmb_decision(values: Mapping[str, Any], facts: DsmbDecisionFacts
                           ) -> dict[str, Any]:  # fmt: skip
    """Check a DSMB decision; return ``rule_id, decision, reason`` or raise ``RuleViolation``."""
    rule = values.get("rule_id")
    c = Checker(f"DSMB decision on {rule!r}" if isinstance(rule, str) else "DSMB decision")
    rule_id = v.choice(c, "rule_id", rule, facts.rules) if facts.rules else None
    if not facts.rules:
        c.fail("rule_id", "the protocol declares no stopping rules")
    decision = v.choice(c, "decision", values.get("decision"),
                        vocab.codes(vocab.DSMB_DECISION))
    reason = v.text(c, "reason", values.get("reason"), max_length=5000)
    if rule_id is not None and decision is not None:
        if rule_id in facts.terminated and decision != "terminate":
            c.fail("decision", f"the DSMB terminated on {rule_id} "
                   f"({facts.terminated[rule_id]}): nothing resumes it")
        elif decision in ("resume", "resume_modified", "continue_pause") and (
                rule_id not in facts.pausing):
            c.fail("rule_id", f"{rule_id} does not pause enrolment or dosing now: there is "
                   "nothing to resume or keep paused")
    c.done()
    return {"rule_id": rule_id, "decision": decision, "reason": reason}
