"""Rules of an adverse event.

:func:`validate_adverse_event` judges the state an adverse event is about to be written in,
on creation and on every change (follow-up, correction), from the values and the facts the
service passes in (:class:`AdverseEventFacts`; nothing here reads the database).

Rules (field: reason):

* ``term``: non-empty (a CTCAE term), at most 200 characters.
* ``grade``: an integer 1-5 (CTCAE v5.0). **Grade 5 is death related to the adverse event**
  (CTCAE v5.0, "Grade 5 Death related to AE"): it requires ``outcome`` ``fatal`` and
  ``serious`` true (ICH E2A: an event that results in death is serious); conversely outcome
  ``fatal`` is grade 5.
* ``serious``: true or false (a boolean; nothing is coerced).
* ``relatedness``, ``outcome``: codes of :data:`hepatrial.vocab.RELATEDNESS` /
  :data:`~hepatrial.vocab.AE_OUTCOME` (CDISC SDTM AEOUT).
* ``onset_date``: not in the future, not before the participant's screening nor before their
  informed consent, and a consent must be on record: the store's collection period starts at
  informed consent (a usual protocol choice; ICH E2A defines an adverse event as an untoward
  occurrence in a clinical investigation subject, and nobody is a subject before consent).
* ``resolution_date``: not in the future, not before the onset. An outcome
  ``recovered``/``recovered_with_sequelae`` has a resolution date, and a resolution date
  goes with one of those outcomes or ``fatal`` (SDTM AEENDTC/AEOUT consistency).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hepatrial.trials.validators import _values as v
from hepatrial.trials.validators._common import Checker
from hepatrial.trials.validators._common import today as _today
from hepatrial.vocab import AE_OUTCOME, RELATEDNESS, codes

__all__ = ["AdverseEventFacts", "validate_adverse_event"]

_RESOLVED = ("recovered", "recovered_with_sequelae")


@dataclass(frozen=True)
class AdverseEventFacts:
    """What the store knows that an adverse event's rules need (gathered by the service)."""

    participant: str
    screening_date: _dt.date | None
    #: date of the participant's first informed consent (None: no consent on record)
    consent_date: _dt.date | None


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


def validate_adverse_event(
    values: Mapping[str, Any], facts: AdverseEventFacts, *, today: _dt.date | None = None
) -> dict[str, Any]:
    """Check an adverse event's state; return the typed values or raise ``RuleViolation``
    with every problem.

    ``values``: ``term``, ``grade``, ``serious``, ``relatedness``, ``onset_date``,
    ``resolution_date``, ``outcome``.
    """
    today = today or _today()
    term_in = values.get("term")
    label = f" {term_in.strip()!r}" if isinstance(term_in, str) and term_in.strip() else ""
    c = Checker(f"participant {facts.participant} adverse event{label}")
    term = v.text(c, "term", term_in, max_length=200)
    grade = _grade(c, values.get("grade"))
    serious = v.boolean(c, "serious", values.get("serious"))
    related = v.choice(c, "relatedness", values.get("relatedness"), codes(RELATEDNESS))
    outcome = v.choice(c, "outcome", values.get("outcome"), codes(AE_OUTCOME))
    onset = v.date(c, "onset_date", values.get("onset_date"))
    resolved = v.date(c, "resolution_date", values.get("resolution_date"), required=False)
    v.not_future(c, "onset_date", onset, today)
    v.not_future(c, "resolution_date", resolved, today)

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
        if resolved is not None and resolved < onset:
            c.fail("resolution_date", f"{resolved} is before the onset on {onset}")
    if outcome in _RESOLVED and resolved is None and "resolution_date" not in {
        p.field for p in c
    }:
        c.fail("resolution_date", f"outcome {outcome!r} needs the resolution date")
    if resolved is not None and outcome is not None and outcome not in (*_RESOLVED, "fatal"):
        c.fail("outcome", f"{outcome!r} does not go with a resolution date ({resolved}): use "
               "recovered, recovered_with_sequelae or fatal, or clear the date")
    c.done()
    return {
        "term": term,
        "grade": grade,
        "serious": serious,
        "relatedness": related,
        "onset_date": onset,
        "resolution_date": resolved,
        "outcome": outcome,
    }
