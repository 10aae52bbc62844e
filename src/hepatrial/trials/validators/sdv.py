"""The rules of a source-data verification mark (pure: the service passes every fact in).

A monitor (``verify_source``: monitor, data manager; a named person, not the system account)
marks an item of a visit's form (a lab analyte, a clinical item) or the whole form (``labs``,
``clinical``) as verified against the source documents (ICH E6(R3) 3.11.4):

* the form is one of :data:`hepatrial.vocab.SDV_FORM`; an item is an analyte of the lab form
  or an item of the clinical form;
* the visit took place (in window, early or late): a visit not done has no source to verify;
* there is something to verify: the item (or, for a whole form, at least one item) is
  entered;
* a mark still valid for the same form and item is not repeated (nothing changed since).
"""

from __future__ import annotations

from collections.abc import Collection

from hepatrial import vocab
from hepatrial.trials.validators._common import Checker

__all__ = ["DONE_STATUSES", "FORMS", "validate_sdv"]

FORMS: tuple[str, ...] = vocab.codes(vocab.SDV_FORM)
#: visit statuses of a visit that took place
DONE_STATUSES = frozenset({"in_window", "early", "late"})


def validate_sdv(
    *,
    record: str,
    form: str,
    item: str,
    known_items: Collection[str],
    entered_items: Collection[str],
    visit_status: str,
    named_person: bool,
    already: str | None,
) -> None:
    """Raise :class:`~hepatrial.trials.validators.RuleViolation` with every unmet rule.

    ``known_items``: the items the form has; ``entered_items``: those with a value now;
    ``already``: a description of a still-valid mark of the same form and item (None)."""
    c = Checker(record)
    c.check(named_person, "", "source data are verified by a named person (not the system "
            "account)")
    if form not in FORMS:
        c.fail("form", f"{form!r} is not one of {', '.join(FORMS)}")
        c.done()
    if item and item not in known_items:
        c.fail("item", f"{item!r} is not an item of the {form} form (items: "
               f"{', '.join(sorted(known_items))})")
    c.check(visit_status in DONE_STATUSES, "visit", f"the visit is {visit_status}: only a "
            "visit that took place has source data to verify")
    if not c.problems:
        if item:
            c.check(item in entered_items, "item", f"{item} is not entered: nothing to verify")
        else:
            c.check(bool(entered_items), "form", f"no item of the {form} form is entered: "
                    "nothing to verify")
    if already is not None:
        c.fail("item" if item else "form", f"already verified ({already}) and unchanged "
               "since")
    c.done()
