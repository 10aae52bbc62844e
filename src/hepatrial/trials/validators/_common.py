"""What every validator shares: the problem list, the refusal, and the rules on dates.

A validator is a pure function of the values to be written and the facts it needs from the
store (passed in by the service as plain values or unsaved/saved model instances; a validator
never queries the database itself). It collects every problem with :class:`Checker` and raises
one :class:`RuleViolation` naming each record, field and reason, so a user sees every unmet
condition at once. Services (create and update), the admin, the eCRF, the API, the importers
and the CLI all call the same validator: a rule is written once, here.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from hepatrial.errors import StoreError

__all__ = ["Checker", "Problem", "RuleViolation", "today"]


@dataclass(frozen=True)
class Problem:
    """One unmet rule: ``record`` (e.g. ``participant K02 visit W1``), ``field``, ``reason``."""

    record: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.record} {self.field}: {self.reason}" if self.field else (
            f"{self.record}: {self.reason}"
        )


class RuleViolation(StoreError):
    """A write refused by one or more rules; ``problems`` lists each (record, field, reason)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    def by_field(self) -> dict[str, list[str]]:
        """``field -> [reason, ...]`` (for forms and the API's problem details)."""
        out: dict[str, list[str]] = {}
        for p in self.problems:
            out.setdefault(p.field, []).append(p.reason)
        return out


@dataclass
class Checker:
    """Collects the problems of one record; :meth:`done` raises them all at once."""

    record: str
    problems: list[Problem] = field(default_factory=list)

    def fail(self, field_name: str, reason: str) -> None:
        """Record that ``field_name`` breaks a rule, with the reason."""
        self.problems.append(Problem(self.record, field_name, reason))

    def check(self, ok: bool, field_name: str, reason: str) -> bool:
        """``fail(field_name, reason)`` unless ``ok``; returns ``ok``."""
        if not ok:
            self.fail(field_name, reason)
        return ok

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def done(self) -> None:
        """Raise :class:`RuleViolation` with every problem collected (nothing if none)."""
        if self.problems:
            raise RuleViolation(self.problems)


def today() -> _dt.date:
    """Today's date (UTC), the reference for "not in the future" rules."""
    return _dt.datetime.now(_dt.UTC).date()
