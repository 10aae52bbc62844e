"""The rules of the query workflow and of source-data verification (pure: the services pass
every fact in; nothing here reads the database).

Query workflow (ICH E6(R3) 3.16.1; the data-clarification process of REDCap's Data
Resolution Workflow and OpenClinica's discrepancy notes):

* a query is **raised** on one field of one record (or on a required item never entered) by
  a monitor or a data manager (``raise_query``), or automatically by the store's checks
  (a value outside the expected range confirmed at entry, a required item missing when the
  visit form is marked complete, a visit date outside its window). The question is required.
  A record under an active lock gets no new query: its data are final until a data manager
  unlocks it (with a reason);
* the site **answers** (``answer_query``: coordinator, investigator of the participant's
  site): the answer text is required; an open or answered query takes an answer (a further
  answer adds to the thread), a closed one must be re-opened first;
* the **raiser** closes it (an automatic query: any monitor or data manager of the site) or
  **re-opens** it with a text saying what is still wrong (a closed or answered query); a
  re-opened query is open again and addressed to the site;
* under a trial lock (the database lock before analysis) no step is taken at all;
* every step needs a named person: the system account raises the automatic queries only.

Soft range (:func:`soft_range_problem`): a lab value outside the analyte's ``expected`` range
(:mod:`hepatrial.protocol.analytes`; hard limits are refused by the lab rules) is saved only
when the person entering it confirms it was checked against the source; the confirmed value
then opens a query. Importers and the API follow the same rule through the lab services.
"""

from __future__ import annotations

from typing import Any

from hepatrial.trials.validators._common import Checker, Problem

__all__ = [
    "MAX_TEXT",
    "QUERY_STEPS",
    "check_query_step",
    "soft_range_problem",
    "validate_query_text",
]

#: longest text of one step of a thread
MAX_TEXT = 4000

#: step -> (statuses it may start from, status it leads to)
QUERY_STEPS: dict[str, tuple[frozenset[str], str]] = {
    "answer": (frozenset({"open", "answered"}), "answered"),
    "close": (frozenset({"open", "answered"}), "closed"),
    "reopen": (frozenset({"answered", "closed"}), "open"),
}


def validate_query_text(record: str, field: str, text: Any, *, required: bool = True) -> str:
    """The text of a step (question, answer, re-opening) stripped; raises
    :class:`~hepatrial.trials.validators.RuleViolation` when required and empty, or too
    long."""
    c = Checker(record)
    value = "" if text is None else str(text).strip()
    if required:
        c.check(bool(value), field, "is required (say what is to be checked, answered or "
                "still wrong)")
    c.check(len(value) <= MAX_TEXT, field, f"is longer than {MAX_TEXT} characters")
    c.done()
    return value


def check_query_step(
    *,
    record: str,
    step: str,
    status: str,
    origin: str,
    is_raiser: bool,
    may_raise: bool,
    may_answer: bool,
    named_person: bool,
    lock: str | None,
) -> str:
    """Whether ``step`` (``raise``, ``answer``, ``close``, ``reopen``) may be taken now;
    returns the status it leads to or raises :class:`RuleViolation` with every reason.

    Facts: ``status`` of the query (``""`` for a new one), its ``origin`` (``manual`` or an
    automatic one), whether the acting user ``is_raiser``, has the ``raise_query`` /
    ``answer_query`` permission on the participant (``may_raise``/``may_answer``), is a
    ``named_person`` (not the system account; automatic raising passes True), and the level
    of the active lock covering the queried record (``None``, ``visit``, ``participant``,
    ``trial``).
    """
    c = Checker(record)
    if lock == "trial":
        c.fail("", "the trial is locked (database lock): no query step can be taken")
    if step == "raise":
        if lock in ("visit", "participant"):
            c.fail("", f"the {'visit' if lock == 'visit' else 'casebook'} is locked: its data "
                       "are final; a data manager unlocks it (with a reason) before a query "
                       "is raised")
        c.done()
        return "open"
    if step not in QUERY_STEPS:
        raise KeyError(f"unknown query step {step!r}")
    start, end = QUERY_STEPS[step]
    if not named_person:
        c.fail("", f"{step}: a named person must {step} a query (not the system account)")
    if status not in start:
        hint = {"answer": "re-open it first", "close": "it is already closed",
                "reopen": "it is still open (waiting for the site)"}[step]
        c.fail("status", f"the query is {status}: cannot {step} it ({hint})")
    if step == "answer":
        c.check(may_answer, "", "only the site (a coordinator or an investigator of the "
                "participant's site) answers a query")
    else:
        if origin == "manual":
            c.check(is_raiser, "", f"only the person who raised the query may {step} it")
        else:
            c.check(may_raise, "", f"an automatic query is {step}d by a monitor or a data "
                    "manager of the participant's site")
        if step == "reopen" and lock in ("visit", "participant"):
            c.fail("", "the record is locked: a data manager unlocks it (with a reason) "
                       "before the query is re-opened")
    c.done()
    return end


def soft_range_problem(
    *,
    record: str,
    analyte: str,
    value_text: str,
    unit: str,
    canonical: float,
    canonical_unit: str,
    expected: tuple[float, float],
    confirmed: bool,
) -> Problem | None:
    """The problem of a value outside the expected range that was not confirmed (None when
    inside the range or confirmed). ``canonical`` is the value in the canonical unit."""
    lo, hi = expected
    if lo <= canonical <= hi or confirmed:
        return None
    side = "lower" if canonical < lo else "higher"
    shown = f"{value_text} {unit}" + ("" if unit == canonical_unit else
                                     f" = {canonical:g} {canonical_unit}")
    return Problem(record, "value", (
        f"{shown} is {side} than expected for {analyte} ({lo:g}-{hi:g} {canonical_unit}): "
        "check it against the source and confirm it (confirmed_out_of_range) to save it; "
        "a confirmed value opens a query"))
