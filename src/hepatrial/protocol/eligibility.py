"""Declarative eligibility checks and their evaluation against screening data.

A check is a tiny expression over one screening field, written in the protocol TOML as an inline
table, e.g.::

    check = { field = "meld", variant = "optn2002", op = ">=", value = 10 }
    check = { field = "age", op = "between", value = [18, 65] }
    check = { field = "portal_vein_patent", op = "==", value = true }
    check = { field = "etiology", op = "in", value = ["HBV", "HCV", "alcohol", "cryptogenic"] }
    check = { field = "bilirubin", op = "<=", value = 5, unit = "mg/dL" }

Screening data is typed by the protocol: every field a check reads is an **eligibility input**
(``[[eligibility_inputs]]`` in the TOML, :class:`hepatrial.protocol.models.EligibilityInput`)
declaring its kind - ``boolean`` (true/false only), ``number`` (a lab value with its
``analyte`` and canonical ``unit``, or a plain number with its ``unit`` such as ``years``),
``choice`` (one of its ``choices`` codes) or ``date`` (ISO). The store parses what users enter
into these kinds (``hepatrial.trials.validators.eligibility``: a lab value carries its unit and
is converted by the analyte registry); :meth:`Protocol.screen` then evaluates the checks on the
typed mapping, in which lab values are in the canonical (SI) unit of the analyte registry
(bilirubin µmol/L, creatinine µmol/L, INR 1, ...). A value of the wrong kind (``"yes"`` for a
boolean) is never compared: the criterion is undecided, naming the field and the reason
(:func:`kind_problem`). A check may state its threshold in another accepted unit
(``unit = "mg/dL"``); the threshold is converted, never the data.

Score fields (``meld``) need a ``variant``. The value is taken from the screening key named like
the dataset score (``meld_optn2002``) when present, otherwise computed with
:func:`hepatrial.scores.meld` from ``bilirubin``, ``creatinine``, ``inr`` (SI units) and optional
``dialysis`` (bool). A bare ``meld`` key is ignored because it does not say which variant it is.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from hepatrial.protocol import analytes as _an

Op = Literal["==", "!=", ">=", ">", "<=", "<", "in", "not_in", "between"]
#: the kinds of eligibility input (see :class:`hepatrial.protocol.models.EligibilityInput`)
InputKind = Literal["boolean", "number", "choice", "date"]
INPUT_KINDS: tuple[str, ...] = InputKind.__args__  # type: ignore[attr-defined]
#: operators each kind of input may be compared with
KIND_OPS: dict[str, frozenset[str]] = {
    "boolean": frozenset({"==", "!="}),
    "choice": frozenset({"==", "!=", "in", "not_in"}),
    "number": frozenset({"==", "!=", ">=", ">", "<=", "<", "between"}),
    "date": frozenset({"==", "!=", ">=", ">", "<=", "<", "between"}),
}


def kind_problem(kind: str, value: Any, choices: Sequence[str] = ()) -> str | None:
    """Why a typed screening value is not of its declared kind (None when it is).

    ``boolean``: ``True``/``False`` only (not ``"yes"``, ``1`` or ``"true"`` text - the store
    parses text before evaluation); ``number``: a finite int/float, not a boolean; ``choice``:
    one of ``choices``; ``date``: a :class:`datetime.date`.
    """
    if kind == "boolean":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean (true or false)"
    if kind == "number":
        if _is_number(value) and math.isfinite(float(value)):
            return None
        return f"{value!r} is not a number"
    if kind == "choice":
        if isinstance(value, str) and value in choices:
            return None
        return f"{value!r} is not one of {', '.join(choices)}"
    if kind == "date":
        if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
            return None
        return f"{value!r} is not a date"
    raise ValueError(f"unknown input kind {kind!r}")


@dataclass(frozen=True)
class ScoreField:
    """A score a check can compute with :mod:`hepatrial.scores` from screening data."""

    function: str
    inputs: tuple[str, ...]
    variants: tuple[str, ...]
    prefix: str

    def code(self, variant: str) -> str:
        """Dataset column of the score (``meld`` + ``optn2002`` → ``meld_optn2002``)."""
        return f"{self.prefix}_{variant}"


#: Score fields a check can compute, the screening inputs they need (labs in SI units; ``sex``
#: F/M and ``age`` for MELD 3.0) and their variants (the ``variant=`` of the scores function).
SCORE_FIELDS: dict[str, ScoreField] = {
    "meld": ScoreField(
        "meld", ("bilirubin", "creatinine", "inr"), ("kamath2001", "continuous", "optn2002"),
        "meld",
    ),
    "meld_na": ScoreField(
        "meld_na", ("bilirubin", "creatinine", "inr", "sodium"), ("kim2008", "optn2016"),
        "meld_na",
    ),
    "meld3": ScoreField(
        "meld3", ("bilirubin", "creatinine", "inr", "sodium", "albumin", "sex", "age"),
        ("optn2023",), "meld3",
    ),
}

_MISSING = object()


@dataclass(frozen=True)
class CriterionResult:
    """Outcome of evaluating one criterion.

    ``met`` is whether the criterion's condition holds (for an exclusion criterion ``True`` means
    the participant is excluded); ``None`` when it cannot be decided (data missing).
    """

    criterion_id: str
    kind: str
    met: bool | None
    value_used: Any
    reason: str

    @property
    def passes(self) -> bool | None:
        """Whether the participant passes this criterion (inclusion met / exclusion not met)."""
        if self.met is None:
            return None
        return self.met if self.kind == "inclusion" else not self.met


@dataclass(frozen=True)
class EligibilityResult:
    """All criteria for one participant. ``eligible`` is None when undecided (missing data)."""

    eligible: bool | None
    results: tuple[CriterionResult, ...]

    @property
    def failed(self) -> tuple[CriterionResult, ...]:
        """Criteria the participant definitely fails."""
        return tuple(r for r in self.results if r.passes is False)

    @property
    def undecided(self) -> tuple[CriterionResult, ...]:
        """Criteria that could not be evaluated."""
        return tuple(r for r in self.results if r.passes is None)


def _is_missing(v: Any) -> bool:
    if v is None or v is _MISSING:
        return True
    try:
        return isinstance(v, float) and math.isnan(v)
    except TypeError:  # pragma: no cover
        return False


class Check(BaseModel):
    """A machine-checkable condition on one screening field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str
    op: Op
    value: Any
    variant: str | None = None
    unit: str | None = None

    @field_validator("value")
    @classmethod
    def _freeze(cls, v: Any) -> Any:
        if isinstance(v, list):
            return tuple(v)
        if isinstance(v, dict):
            raise ValueError("value must be a number, string, boolean or list")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Check:
        v = self.value
        if self.op in ("in", "not_in"):
            if not isinstance(v, tuple) or not v:
                raise ValueError(f"op {self.op!r} needs a non-empty list value")
        elif self.op == "between":
            if not (isinstance(v, tuple) and len(v) == 2 and all(_is_ordered(x) for x in v)):
                raise ValueError("op 'between' needs value = [low, high] (numbers or dates)")
            if v[0] > v[1]:
                raise ValueError("op 'between' needs low <= high")
        elif self.op in (">=", ">", "<=", "<"):
            if not _is_ordered(v):
                raise ValueError(f"op {self.op!r} needs a numeric value (or a date)")
        elif isinstance(v, tuple):
            raise ValueError(f"op {self.op!r} needs a single value, not a list")
        if self.field in SCORE_FIELDS:
            sf = SCORE_FIELDS[self.field]
            if self.variant not in sf.variants:
                known = ", ".join(sf.variants)
                raise ValueError(
                    f"score field {self.field!r} needs a variant, one of: {known} "
                    f"(got {self.variant!r})"
                )
        elif self.variant is not None:
            raise ValueError(f"variant is only allowed for score fields {sorted(SCORE_FIELDS)}")
        if self.unit is not None:
            if self.field not in _an.ANALYTES:
                raise ValueError(f"unit needs an analyte field, not {self.field!r}")
            a = _an.analyte(self.field)
            if not a.accepts(self.unit):
                raise ValueError(f"unit {self.unit!r} is not accepted for {self.field}")
            if not _is_number(v) and not (isinstance(v, tuple) and all(map(_is_number, v))):
                raise ValueError("unit needs a numeric value")
        return self

    # ------------------------------------------------------------------ evaluation
    def threshold(self) -> Any:
        """The comparison value in the canonical unit of the field (unit-converted if needed)."""
        if self.unit is None:
            return self.value
        f = _an.analyte(self.field).factor(self.unit)
        if isinstance(self.value, tuple):
            return tuple(x * f for x in self.value)
        return self.value * f

    def resolve(self, screening: Mapping[str, Any]) -> tuple[Any, str]:
        """The value of the field for this screening record and a note on where it came from.

        Returns ``(_MISSING sentinel or None, reason)`` when the value is unavailable.
        """
        if self.field not in SCORE_FIELDS:
            v = screening.get(self.field, _MISSING)
            if _is_missing(v):
                return None, f"{self.field} missing from screening data"
            return v, f"{self.field} from screening data"
        sf = SCORE_FIELDS[self.field]
        assert self.variant is not None  # enforced by the model validator
        code = sf.code(self.variant)
        pre = screening.get(code, _MISSING)
        if not _is_missing(pre):
            return pre, f"{code} from screening data"
        missing = [k for k in sf.inputs if _is_missing(screening.get(k, _MISSING))]
        if missing:
            return None, f"{code} not given and cannot be computed: missing {', '.join(missing)}"
        try:  # lazy: hepatrial.scores is a sibling package
            from hepatrial import scores
        except ImportError as exc:
            return None, f"{code} cannot be computed: hepatrial.scores not importable ({exc})"
        func = getattr(scores, sf.function, None)
        if func is None:
            return None, f"{code} cannot be computed: hepatrial.scores.{sf.function} missing"
        dialysis = bool(screening.get("dialysis", False) or False)
        args = [screening[k] for k in sf.inputs if k != "age"]
        kwargs: dict[str, Any] = {"dialysis": dialysis, "variant": self.variant, "units": "si"}
        if "age" in sf.inputs:
            kwargs["age_at_registration"] = screening["age"]
        try:
            val = float(func(*args, **kwargs))
        except (TypeError, ValueError) as exc:  # ScoreInputError is a ValueError
            return None, f"{code} could not be computed: {exc}"
        if math.isnan(val):
            return None, f"{code} could not be computed from the screening data (NaN)"
        shown = ", ".join(f"{k}={show_value(screening[k])}" for k in sf.inputs)
        return val, (
            f"{code} computed by hepatrial.scores.{sf.function}(variant={self.variant!r}, "
            f"units='si') from {shown}, dialysis={dialysis}"
        )

    def compare(self, v: Any) -> bool:
        """Apply the operator to a resolved value (raises TypeError/ValueError if incomparable)."""
        t = self.threshold()
        op = self.op
        if op == "in":
            return v in t
        if op == "not_in":
            return v not in t
        if op == "==":
            return bool(v == t)
        if op == "!=":
            return bool(v != t)
        if isinstance(v, _dt.date):
            if not all(isinstance(x, _dt.date) for x in (t if isinstance(t, tuple) else (t,))):
                raise TypeError(f"cannot compare the date {v} with {t!r}")
        elif isinstance(v, bool) or not _is_number(v):
            v = float(v)  # strings such as "10" are accepted; others raise
        if op == "between":
            return bool(t[0] <= v <= t[1])
        return bool(
            {">=": v >= t, ">": v > t, "<=": v <= t, "<": v < t}[op]
        )

    def describe(self) -> str:
        """Short text form, e.g. ``meld[optn2002] >= 10``."""
        f = self.field + (f"[{self.variant}]" if self.variant else "")
        if self.op == "between" and isinstance(self.value, tuple | list):
            val = f"{show_value(self.value[0])} and {show_value(self.value[1])}"
        elif isinstance(self.value, tuple | list):
            val = f"[{show_value(self.value)}]"
        else:
            val = show_value(self.value)
        unit = f" {self.unit}" if self.unit else ""
        return f"{f} {self.op} {val}{unit}"


def show_value(v: Any) -> str:
    """A value as a coordinator reads it in a criterion's explanation: yes/no for booleans,
    numbers without binary noise (``97.24000000000001`` → ``97.24``; 10 significant digits,
    which no clinical measurement exceeds), ISO dates, lists comma-separated."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.10g}"
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return ", ".join(show_value(x) for x in v)
    return str(v)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_ordered(x: Any) -> bool:
    return _is_number(x) or (isinstance(x, _dt.date) and not isinstance(x, _dt.datetime))


def evaluate_check(
    criterion_id: str,
    kind: str,
    check: Check,
    screening: Mapping[str, Any],
    inputs: Mapping[str, tuple[str, Sequence[str]]] | None = None,
) -> CriterionResult:
    """Evaluate ``check`` on ``screening``; never raises for bad data (returns met=None).

    ``inputs`` maps input name → ``(kind, choices)`` (the protocol's eligibility inputs): a
    value of the wrong kind - the field itself, or an input of a score - is not compared and
    the criterion is undecided with the reason (e.g. ``hcc: 'yes' is not a boolean``).
    """
    if inputs:
        names = SCORE_FIELDS[check.field].inputs if check.field in SCORE_FIELDS else (
            check.field,)
        for name in names:
            v = screening.get(name, _MISSING)
            if name in inputs and not _is_missing(v):
                k, choices = inputs[name]
                why = kind_problem(k, v, choices)
                if why is not None:
                    return CriterionResult(criterion_id, kind, None, v, f"{name}: {why}")
    value, where = check.resolve(screening)
    if value is None:
        return CriterionResult(criterion_id, kind, None, None, where)
    try:
        met = check.compare(value)
    except (TypeError, ValueError) as exc:
        return CriterionResult(
            criterion_id, kind, None, value, f"cannot compare {value!r}: {exc} ({where})"
        )
    verdict = "holds" if met else "does not hold"
    return CriterionResult(
        criterion_id, kind, met, value,
        f"{check.describe()} {verdict}: value {show_value(value)} ({where})",
    )


def combine(results: Sequence[CriterionResult]) -> EligibilityResult:
    """Overall eligibility: False if any criterion fails, None if any is undecided, else True."""
    passes = [r.passes for r in results]
    if any(p is False for p in passes):
        eligible: bool | None = False
    elif any(p is None for p in passes):
        eligible = None
    else:
        eligible = True
    return EligibilityResult(eligible, tuple(results))
