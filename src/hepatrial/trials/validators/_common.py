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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hepatrial.errors import StoreError

__all__ = [
    "Checker",
    "ColumnProblems",
    "Problem",
    "RuleViolation",
    "as_dates",
    "changes_needing_reason",
    "date_problems",
    "is_empty",
    "today",
]


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


# ---------------------------------------------------------------------- column-wise rules
@dataclass
class ColumnProblems:
    """Problems found column-wise over ``n`` rows (the importers' form of a :class:`Checker`).

    ``reasons[field]`` is an object array of length ``n``: ``None`` where the row is good, the
    reason where it breaks a rule (one reason per row and field: the first rule that fails).
    A rule written column-wise is the only implementation: the scalar validators run it on
    one-row arrays, so a record entered in a form and a row of an imported file are judged
    by the same code.
    """

    n: int
    reasons: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, field_name: str, mask: Any, reason: Any) -> None:
        """Record ``reason`` (a string, or an array of strings) for the rows where ``mask``."""
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), (self.n,))
        if not mask.any():
            return
        col = self.reasons.get(field_name)
        if col is None:
            col = np.full(self.n, None, dtype=object)
            self.reasons[field_name] = col
        free = mask & np.equal(col, None)
        if isinstance(reason, str):
            col[free] = reason
        else:
            col[free] = np.broadcast_to(np.asarray(reason, dtype=object), (self.n,))[free]

    def add_each(self, field_name: str, mask: Any, reason: Callable[[int], str]) -> None:
        """Record ``reason(i)`` for each row ``i`` where ``mask`` (messages naming the value)."""
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), (self.n,))
        if mask.any():
            msgs = np.full(self.n, None, dtype=object)
            for i in np.flatnonzero(mask):
                msgs[i] = reason(int(i))
            self.add(field_name, mask, msgs)

    def bad(self) -> np.ndarray:
        """Boolean mask of the rows with at least one problem."""
        out = np.zeros(self.n, dtype=bool)
        for col in self.reasons.values():
            out |= np.not_equal(col, None)
        return out

    def __bool__(self) -> bool:
        return bool(self.bad().any())

    def items(self) -> Iterator[tuple[int, str, str]]:
        """``(row position, field, reason)`` for every problem, by row then field order."""
        out = []
        for order, (name, col) in enumerate(self.reasons.items()):
            for i in np.flatnonzero(np.not_equal(col, None)):
                out.append((int(i), order, name, str(col[i])))
        out.sort(key=lambda t: (t[0], t[1]))
        return iter([(i, name, reason) for i, _o, name, reason in out])

    def problems(self, records: Sequence[str] | str) -> list[Problem]:
        """The problems as :class:`Problem` objects, ``records[i]`` naming row ``i``."""
        name = (lambda i: records) if isinstance(records, str) else (lambda i: records[i])
        return [Problem(name(i), f, r) for i, f, r in self.items()]

    def merge(self, other: ColumnProblems, fields: Mapping[str, str] | None = None) -> None:
        """Add ``other``'s problems (same rows), renaming fields by ``fields``."""
        for name, col in other.reasons.items():
            self.add((fields or {}).get(name, name), np.not_equal(col, None), col)


def as_dates(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Dates of a column (``date``/``datetime``, ISO ``YYYY-MM-DD`` text, ``datetime64``,
    pandas timestamps; empty/None/NaT = missing) as ``datetime64[D]``.

    Returns ``(dates, bad)``: ``dates`` holds NaT where missing or bad; ``bad`` marks values
    that are given but are not a date (a missing value is not bad; the rule that needs it says
    so).
    """
    arr = np.asarray(values, dtype=object).reshape(-1)
    out = np.full(arr.shape, np.datetime64("NaT"), dtype="datetime64[D]")
    bad = np.zeros(arr.shape, dtype=bool)
    slow = np.ones(arr.shape, dtype=bool)
    if len(arr) > 64:  # fast path for long columns of ISO text (same result as below)
        import pandas as pd

        text = arr.astype(str)
        iso = np.flatnonzero(np.char.str_len(text) == 10)
        parsed = pd.to_datetime(pd.Series(text[iso], dtype=object), format="%Y-%m-%d",
                                errors="coerce")
        good = parsed.notna().to_numpy()
        out[iso[good]] = parsed[good].to_numpy().astype("datetime64[D]")
        slow[iso[good]] = False
    for i in np.flatnonzero(slow):
        v = arr[i]
        if is_empty(v):
            continue
        d = _one_date(v)
        if d is None:
            bad[i] = True
        else:
            out[i] = np.datetime64(d, "D")
    return out, bad


def _one_date(v: Any) -> _dt.date | None:
    if isinstance(v, _dt.datetime):
        return v.date()
    if isinstance(v, _dt.date):
        return v
    if isinstance(v, np.datetime64):
        return None if np.isnat(v) else v.astype("datetime64[D]").item()
    if isinstance(v, str):
        text = v.strip()
        if len(text) == 10:
            try:
                return _dt.date.fromisoformat(text)
            except ValueError:
                return None
        return None
    to_pydatetime = getattr(v, "to_pydatetime", None)  # pandas Timestamp
    if to_pydatetime is not None:
        return to_pydatetime().date()
    return None


def is_empty(value: Any) -> bool:
    """True for a value that was never entered: None, NaN/NaT, blank text, empty container."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    if isinstance(value, Mapping | list | tuple | set):
        return len(value) == 0
    return False


def changes_needing_reason(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The fields of a change that need a reason for change (ICH E6(R2) 4.9.3: a change or
    correction to a CRF is dated, initialled and explained).

    The first entry of a value is data entry, not a change: a field whose stored value is empty
    (:func:`is_empty`) needs no reason when it is filled. Every later change of a value - a
    different value, or clearing it - needs one. A mapping (e.g. screening data) is judged key by
    key (``field.key``): adding a key is data entry, changing or removing one is a change.
    """
    out: list[str] = []
    for name, after in new.items():
        before = old.get(name)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            for key in sorted(set(before) | set(after), key=str):
                b, a = before.get(key), after.get(key)
                if not is_empty(b) and b != a:
                    out.append(f"{name}.{key}")
        elif not is_empty(before) and before != after:
            out.append(name)
    return out


def date_problems(
    problems: ColumnProblems,
    field_name: str,
    values: Any,
    *,
    required: bool = False,
    not_future: bool = True,
    today_: _dt.date | None = None,
) -> np.ndarray:
    """The rules every date shares: given when ``required``, ISO ``YYYY-MM-DD``, and (with
    ``not_future``) not after today - a date in the future cannot have happened yet.

    Adds the problems to ``problems`` under ``field_name``; returns the dates (``datetime64[D]``,
    NaT where missing or bad).
    """
    dates, bad = as_dates(values)
    problems.add(field_name, bad, "not a date (YYYY-MM-DD)")
    if required:
        problems.add(field_name, np.isnat(dates) & ~bad, "missing (a date is required)")
    if not_future:
        t = today_ or today()
        future = ~np.isnat(dates) & (dates > np.datetime64(t, "D"))
        problems.add_each(
            field_name, future, lambda i: f"{dates[i]} is in the future (today is {t})"
        )
    return dates
