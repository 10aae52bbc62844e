"""Pydantic (v2) models of a trial protocol ("protocol as code").

A protocol is a TOML file validated by :class:`Protocol`. The design follows clinicedc's visit
schedule (``edc_visit_schedule``: visits with a target day and a lower/upper window, exactly one
baseline, non-overlapping windows) and its declarative style: eligibility, outcomes and the
analysis plan are data, not code.

Every block carries provenance: ``source`` (``published`` = taken from the paper/registration,
``assumed`` = our choice where the source is silent, ``derived`` = computed from published
facts) and a free-text ``note``. A block mixing both may override single settings with
``sources = { setting = { source = "assumed", note = "..." } }``.
:meth:`Protocol.provenance` lists them all with their key paths.

All models are frozen and reject unknown keys (``extra="forbid"``). Cross-field rules (unique
codes, one baseline, increasing target days, known analytes, ...) are in
:func:`protocol_rule_issues`, which returns every violation with its TOML key path; the
:class:`Protocol` model validator raises them all at once.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from hepatrial import vocab as _vocab
from hepatrial.protocol import analytes as _an
from hepatrial.protocol.eligibility import (
    INPUT_KINDS,
    KIND_OPS,
    SCORE_FIELDS,
    Check,
    CriterionResult,
    EligibilityResult,
    InputKind,
    combine,
    evaluate_check,
)

Source = Literal["published", "assumed", "derived"]
# code lists from hepatrial.vocab (the store's Django choices derive from the same tuples)
Etiology = Literal[_vocab.codes(_vocab.ETIOLOGY)]  # type: ignore[valid-type]
Route = Literal[_vocab.codes(_vocab.ROUTE)]  # type: ignore[valid-type]
WindowStatus = Literal["in_window", "early", "late"]

#: Etiology codes (docs/contracts.md §2).
ETIOLOGIES: tuple[str, ...] = Etiology.__args__  # type: ignore[attr-defined]
#: Visit code given to visits outside every window and to extra visits within a window.
UNSCHEDULED = "UNS"

_CODE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_NAME = r"^[a-z0-9][a-z0-9_-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __hash__(self) -> int:  # frozen models with dict fields: hash the canonical JSON
        return hash(self.model_dump_json())



class SettingSource(_Model):
    """Provenance of one setting inside a block (overrides the block's own)."""

    source: Source
    note: str = ""


class _Sourced(_Model):
    source: Source
    note: str = ""
    sources: dict[str, SettingSource] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sources_name_fields(self) -> _Sourced:
        bad = [k for k in self.sources if k not in type(self).model_fields or k in _PROV_KEYS]
        if bad:
            raise ValueError(f"sources names unknown setting(s): {', '.join(sorted(bad))}")
        return self


_PROV_KEYS = {"source", "note", "sources"}


class Arm(_Sourced):
    """A treatment arm. Single-arm protocols have one arm, code ``single``."""

    code: str = Field(pattern=_CODE)
    label: str
    ratio: int = Field(default=1, ge=1)
    description: str = ""


class Randomisation(_Sourced):
    """Permuted-block randomisation settings (seeded, hence reproducible)."""

    method: Literal["permuted_block"] = "permuted_block"
    block_sizes: tuple[int, ...] = Field(min_length=1)
    strata: tuple[str, ...] = ()
    seed: int


class Site(_Sourced):
    """A recruiting site."""

    code: str = Field(pattern=_CODE)
    name: str
    country: str | None = None


class Visit(_Sourced):
    """A scheduled visit: target day from day 0 and a window [target+lower, target+upper]."""

    code: str = Field(pattern=_CODE)
    label: str
    target_day: int
    window_lower: int = Field(le=0, description="days before target still in window (<= 0)")
    window_upper: int = Field(ge=0, description="days after target still in window (>= 0)")
    measurements: tuple[str, ...] = ()
    procedures: tuple[str, ...] = ()
    baseline: bool = False

    @property
    def earliest_day(self) -> int:
        """First study day inside the window."""
        return self.target_day + self.window_lower

    @property
    def latest_day(self) -> int:
        """Last study day inside the window."""
        return self.target_day + self.window_upper

    def window_closed(self, as_of_day: int) -> bool:
        """True once ``as_of_day`` is past the window: a visit not done by then is missed
        (the store decides and records missed visits)."""
        return as_of_day > self.latest_day

    def contains(self, actual_day: int) -> bool:
        """True when ``actual_day`` is inside the window (bounds inclusive)."""
        return self.earliest_day <= actual_day <= self.latest_day

    def classify(self, actual_day: int) -> WindowStatus:
        """``in_window`` if earliest ≤ day ≤ latest (inclusive), else ``early``/``late``."""
        if actual_day < self.earliest_day:
            return "early"
        if actual_day > self.latest_day:
            return "late"
        return "in_window"


class Criterion(_Sourced):
    """An inclusion or exclusion criterion with its machine check."""

    id: str = Field(pattern=_CODE)
    text: str
    kind: Literal["inclusion", "exclusion"]
    check: Check

    def evaluate(
        self,
        screening: Mapping[str, Any],
        inputs: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    ) -> CriterionResult:
        """Evaluate the check on screening data (see :mod:`hepatrial.protocol.eligibility`).

        ``met`` is whether the condition holds; for exclusions ``met=True`` means excluded.
        ``met`` is None (with the reason) when data are missing, a value is not of its declared
        kind (``inputs``: name → (kind, choices)) or a score cannot be computed.
        """
        return evaluate_check(self.id, self.kind, self.check, screening, inputs)


#: eligibility inputs the store computes from its own records, never entered as screening data:
#: name -> (derived_from, kind)
DERIVED_INPUTS: dict[str, tuple[str, str]] = {
    "age": ("participant", "number"),
    "sex": ("participant", "choice"),
    "etiology": ("participant", "choice"),
    "informed_consent": ("consent", "boolean"),
}


class EligibilityInput(_Sourced):
    """One screening value the eligibility criteria read, typed by its ``kind``.

    * ``boolean`` - true or false only (``"yes"``, ``1`` are refused);
    * ``number`` - a lab value: ``analyte`` (a code of :mod:`hepatrial.protocol.analytes`,
      also the input's name) and ``unit``, the analyte's canonical unit the criteria compare
      in; it is entered with its unit (any unit the registry accepts, e.g. mg/dL, converted by
      the registry, values outside the registry's hard limits refused). Or a plain number with
      its ``unit`` (``years``) and optional hard ``minimum``/``maximum``;
    * ``choice`` - one of the codes in ``choices``;
    * ``date`` - an ISO date (YYYY-MM-DD).

    ``derived_from`` marks the inputs the store computes from its own records instead of
    screening data (:data:`DERIVED_INPUTS`): ``age`` (whole years at screening from the year of
    birth), ``sex``, ``etiology`` (the participant) and ``informed_consent`` (a consent is
    recorded).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: InputKind
    label: str = ""
    analyte: str | None = None
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    derived_from: Literal["participant", "consent"] | None = None

    @property
    def entered(self) -> bool:
        """True for an input entered as screening data (not derived by the store)."""
        return self.derived_from is None


class Outcome(_Sourced):
    """An outcome measure: analyte or score code, canonical unit, analysis transform."""

    analyte: str
    label: str
    unit: str
    transform: Literal["none", "log"] = "none"
    reported_unit: str


class PrimaryEndpoint(_Sourced):
    """The primary endpoint: which outcome, at which visit, compared how."""

    analyte: str
    visit: str | None = None
    comparison: Literal["change_from_baseline", "between_arms_at_visit", "arm_by_time"]


class SequenceItem(_Model):
    """One hypothesis of a fixed-sequence (hierarchical) testing procedure."""

    analyte: str
    visit: str


class MixedModel(_Sourced):
    """Linear mixed model for the repeated measurements."""

    time: Literal["visit", "day", "years"] = "visit"
    transform: Literal["outcome", "none", "log"] = Field(
        default="outcome", description="'outcome' = use each outcome's own transform"
    )
    random_effects: Literal["intercept", "intercept_slope"] = "intercept"
    fixed_effects: tuple[str, ...] = ("time",)
    method: Literal["reml", "ml"] = "reml"
    include_baseline: bool = True


class AnalysisPlan(_Sourced):
    """Statistical analysis plan settings.

    ``primary_test`` names the one pre-specified test of every hypothesis (ICH E9 §5.1: one
    primary analysis per hypothesis); the other ``paired_tests`` are sensitivity analyses,
    reported as such and never part of the confirmatory (multiplicity) family. It must be one
    of ``paired_tests``, and must be given when they list more than one test.
    """

    meld_variant: str = "optn2002"
    paired_tests: tuple[Literal["t", "wilcoxon"], ...] = ()
    primary_test: Literal["t", "wilcoxon"] | None = None
    wilcoxon_method: Literal["exact", "asymptotic"] = "exact"
    multiplicity: Literal["fixed_sequence", "holm", "none"] = "none"
    sequence: tuple[SequenceItem, ...] = ()
    alpha: float = Field(default=0.05, gt=0, lt=1)
    sided: Literal["two-sided", "one-sided"] = "two-sided"
    mixed_model: MixedModel | None = None

    @property
    def resolved_primary_test(self) -> str | None:
        """``primary_test``, or the only paired test when just one is listed."""
        if self.primary_test is not None:
            return self.primary_test
        return self.paired_tests[0] if len(self.paired_tests) == 1 else None


ReleaseOutcome = Literal["pass", "fail", "invalid"]
#: outcome of one test of a batch's release assessment (:meth:`Product.release_assessment`):
#: ``missing`` = no result; ``pending`` = no result yet, allowed at release because its rapid
#: substitute passed (``pending_with``)
AssessmentOutcome = Literal["pass", "fail", "invalid", "missing", "pending"]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class AcceptanceTest(_Sourced):
    """A test with its acceptance criterion: a release test or an in-process control.

    Quantitative (``min`` and/or ``max`` in ``unit``, bounds inclusive) or qualitative
    (``expected``, e.g. ``"negative"``, ``"no growth"``; compared ignoring case and surrounding
    spaces). A result is the measured value — a number in ``unit`` for a quantitative test, a
    text for a qualitative one — or ``{"value": ..., "unit": ...}`` naming its unit, which must
    then be the test's unit (results are never converted). See :meth:`assess`. ``method`` and
    ``sample_point`` say how and where it is tested (printed on the certificate of analysis).
    """

    name: str = Field(pattern=_NAME, description="result key, e.g. cd73, viability, sterility")
    unit: str = Field(default="", description="unit of a quantitative result ('%', 'EU/mL')")
    min: float | None = Field(default=None, description="lowest acceptable value (inclusive)")
    max: float | None = Field(default=None, description="highest acceptable value (inclusive)")
    expected: str | None = Field(default=None, description="required qualitative result")
    method: str = Field(default="", description="test method and its reference")
    sample_point: str = Field(default="", description="where and when the sample is taken")

    @property
    def qualitative(self) -> bool:
        """True for a test with an ``expected`` text result."""
        return self.expected is not None

    @property
    def criterion(self) -> str:
        """The acceptance criterion as text (``>= 95 %``, ``70-100 %``, ``'no growth'``)."""
        if self.expected is not None:
            return repr(self.expected)
        u = f" {self.unit}" if self.unit else ""
        if self.min is not None and self.max is not None:
            return f"{self.min:g}-{self.max:g}{u}"
        if self.min is not None:
            return f">= {self.min:g}{u}"
        if self.max is not None:
            return f"<= {self.max:g}{u}"
        return f"a number in {self.unit}" if self.unit else "a number"

    def assess(self, result: Any) -> tuple[ReleaseOutcome, str]:
        """``("pass" | "fail" | "invalid", reason)`` of one recorded result (reason "" on pass).

        ``invalid``: not a result of this test (a text for a quantitative test, a number for a
        qualitative one, another unit, a percentage outside 0-100); ``fail``: a valid result
        outside the acceptance criterion.
        """
        value, problem = self._value(result)
        if problem:
            return "invalid", problem
        if self.expected is not None:
            if value.strip().casefold() != self.expected.strip().casefold():
                return "fail", f"{value!r} does not meet the specification {self.criterion}"
            return "pass", ""
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            u = f" {self.unit}" if self.unit else ""
            return "fail", f"{value:g}{u} does not meet the specification {self.criterion}"
        return "pass", ""

    def _value(self, result: Any) -> tuple[Any, str]:
        """The value of a result and "" — or (None, why it is not a result of this test)."""
        value = result
        if isinstance(result, Mapping):
            extra = sorted(set(result) - {"value", "unit"})
            if "value" not in result or extra:
                return None, 'give the result as a value or as {"value": ..., "unit": ...}'
            value = result["value"]
            unit = result.get("unit")
            if unit is not None and str(unit) != self.unit:
                return None, f"unit {unit!r} is not the specification's unit {self.unit!r}"
        if self.expected is not None:
            if not isinstance(value, str) or not value.strip():
                return None, f"{value!r} is not a qualitative result (expected {self.expected!r})"
            return value, ""
        if not _is_number(value):
            return None, f"{value!r} is not a number in {self.unit or 'the test unit'}"
        if self.unit == "%" and not 0 <= value <= 100:
            return None, f"{value!r} % is not a percentage (0-100)"
        return value, ""


class InProcessControl(AcceptanceTest):
    """An in-process control of a manufacturing step: passage number, cumulative population
    doublings, confluence at passage, cell count and viability at harvest (FACT-JACIE
    International Standards, process controls; EU GMP Part IV for ATMPs §10)."""


class ReleaseTest(AcceptanceTest):
    """One release test of the cell product and its acceptance criterion.

    Besides the fixed criterion of :class:`AcceptanceTest`:

    * ``max_per_kg_dose``: a limit per kg of body weight per dose for a concentration result
      (unit ``X/mL``): ``result × dose volume (mL) / weight (kg) <= max_per_kg_dose`` in
      ``X/kg``. Endotoxin limits are set this way: K/M with K the threshold pyrogenic dose,
      5 EU/kg for parenteral routes other than intrathecal (Ph. Eur. 5.1.10; USP <85>).
    * ``dose_range``: the result (a cell count in ``cells``) must lie in the protocol's dose
      range: ``cells_min``-``cells_max`` cells, or per kg of the participant's weight when the
      dose rule is per kg.
    * ``pending_with``: the result may still be pending at release when the rapid test named
      here has passed (sterility culture takes up to 14 days, Ph. Eur. 2.6.1/2.6.27; a Gram
      stain is the rapid release test of a fresh product, FACT-JACIE; a later positive culture
      is investigated and the investigator informed).

    These need the batch's context (weight, dose volume): judge them with
    :meth:`Product.assess_release`; :meth:`assess` judges the fixed criterion only.
    """

    max_per_kg_dose: float | None = Field(
        default=None, gt=0, description="limit per kg body weight per dose (unit X/kg)"
    )
    dose_range: bool = Field(default=False, description="result must be in the dose range")
    pending_with: str | None = Field(
        default=None, description="rapid test whose pass allows release before this result"
    )

    @property
    def per_kg_unit(self) -> str:
        """Unit of ``max_per_kg_dose`` (``EU/mL`` → ``EU/kg``)."""
        return self.unit[: -len("/mL")] + "/kg" if self.unit.endswith("/mL") else ""

    @property
    def full_criterion(self) -> str:
        """Every part of the criterion as text, for certificates and listings."""
        if self.dose_range and self.min is None and self.max is None:
            parts = ["in the protocol's dose range"]
        else:
            parts = [self.criterion] + (["in the protocol's dose range"] if self.dose_range
                                        else [])
        if self.max_per_kg_dose is not None:
            parts.append(f"<= {self.max_per_kg_dose:g} {self.per_kg_unit} per dose")
        return "; ".join(parts)


@dataclass(frozen=True)
class TestAssessment:
    """The verdict on one release test of a batch (:meth:`Product.release_assessment`)."""

    name: str
    outcome: AssessmentOutcome
    reason: str
    criterion: str
    result: Any = None

    @property
    def met(self) -> bool:
        """True when this test does not stop a release (passed, or pending as allowed)."""
        return self.outcome in ("pass", "pending")


class TemperatureRange(_Sourced):
    """An allowed temperature range in °C (bounds inclusive)."""

    min_c: float
    max_c: float

    def contains(self, celsius: float) -> bool:
        """True when ``celsius`` is within the range."""
        return self.min_c <= celsius <= self.max_c

    @property
    def text(self) -> str:
        """``2 to 8 °C``."""
        return f"{self.min_c:g} to {self.max_c:g} °C"


class StartingMaterial(_Sourced):
    """The starting material collected from the patient (autologous), as received by the
    manufacturing facility: what it is, where it is collected, the acceptable volume, the
    anticoagulant, the transport temperature and the longest time from collection to the start
    of processing (acceptance at receipt: FACT-JACIE; 21 CFR 1271.265 receipt)."""

    kind: Literal[
        "bone_marrow_aspirate", "peripheral_blood_apheresis", "adipose_tissue",
        "umbilical_cord", "other"
    ]  # fmt: skip
    collection_site: str = ""
    volume_ml_min: float = Field(gt=0)
    volume_ml_max: float = Field(gt=0)
    anticoagulant: str = ""
    transport_temp_c: TemperatureRange | None = None
    max_hours_to_processing: float | None = Field(default=None, gt=0)

    def volume_ok(self, volume_ml: float) -> bool:
        """True when a collected volume is in the acceptable range (inclusive)."""
        return self.volume_ml_min <= volume_ml <= self.volume_ml_max


class ManufacturingStep(_Sourced):
    """One step of the manufacturing process and its in-process controls."""

    code: str = Field(pattern=_NAME)
    label: str
    description: str = ""
    controls: tuple[InProcessControl, ...] = ()

    def control(self, name: str) -> InProcessControl | None:
        """The in-process control called ``name`` (None when the step has none)."""
        return next((c for c in self.controls if c.name == name), None)


class Product(_Sourced):
    """The investigational cell product, how it is made, released, kept and given.

    * the **dose rule**: ``cells_min``-``cells_max`` cells in total (``dose_basis = "total"``)
      or per kg of body weight (``"per_kg"``), in ``volume_ml`` of ``vehicle``, by one of
      ``routes`` (:meth:`dose_problem`);
    * ``starting_material`` and the ``manufacturing`` steps with their in-process controls;
    * ``release_spec``: the release tests a batch must pass before it may be given (the store
      refuses to release a batch without a result meeting every test, and refuses to release
      at all when the protocol has no specification; :meth:`release_assessment`);
    * ``shelf_life_hours`` from formulation to the start of infusion, and the storage and
      transport temperature ranges.
    """

    name: str
    cells_min: float = Field(gt=0, description="minimum dose, cells (or cells/kg)")
    cells_max: float = Field(gt=0, description="maximum dose, cells (or cells/kg)")
    dose_basis: Literal["total", "per_kg"] = "total"
    volume_ml: float = Field(gt=0)
    vehicle: str = ""
    routes: tuple[Route, ...] = Field(min_length=1)
    starting_material: StartingMaterial | None = None
    manufacturing: tuple[ManufacturingStep, ...] = ()
    release_spec: tuple[ReleaseTest, ...] = ()
    shelf_life_hours: float | None = Field(
        default=None, gt=0, description="from formulation to the start of infusion"
    )
    storage_temp_c: TemperatureRange | None = None
    transport_temp_c: TemperatureRange | None = None

    def release_test(self, name: str) -> ReleaseTest | None:
        """The release test called ``name`` (None when the specification has none)."""
        return next((t for t in self.release_spec if t.name == name), None)

    def step(self, code: str) -> ManufacturingStep | None:
        """The manufacturing step with this code (None when there is none)."""
        return next((s for s in self.manufacturing if s.code == code), None)

    # ------------------------------------------------------------------ dose rule
    @property
    def dose_unit(self) -> str:
        """``cells`` or ``cells/kg``."""
        return "cells" if self.dose_basis == "total" else "cells/kg"

    def dose_range_cells(self, weight_kg: float | None = None) -> tuple[float, float] | None:
        """The dose range in total cells: ``(cells_min, cells_max)``, or times the weight when
        the dose is per kg (None when it is per kg and no weight is known)."""
        if self.dose_basis == "total":
            return (self.cells_min, self.cells_max)
        if weight_kg is None or not _is_number(weight_kg) or weight_kg <= 0:
            return None
        return (self.cells_min * weight_kg, self.cells_max * weight_kg)

    def dose_problem(self, cells_total: float, weight_kg: float | None = None) -> str | None:
        """Why ``cells_total`` is outside the dose rule, or None when it is inside.

        Total: ``cells_min <= cells_total <= cells_max``; per kg: ``cells_total / weight_kg``
        against the range (a missing weight is a problem: the dose cannot be judged).
        """
        if self.dose_basis == "per_kg":
            if weight_kg is None or not _is_number(weight_kg) or weight_kg <= 0:
                return ("the dose is per kg of body weight and no weight is recorded: "
                        "the dose cannot be checked")
            dose = cells_total / weight_kg
        else:
            dose = cells_total
        if self.cells_min <= dose <= self.cells_max:
            return None
        per = ""
        if self.dose_basis == "per_kg":
            per = f" ({cells_total:.4g} cells / {weight_kg:g} kg)"
        return (f"dose {dose:.4g} {self.dose_unit}{per} is outside the protocol's range "
                f"{self.cells_min:.4g}-{self.cells_max:.4g} {self.dose_unit}")

    # ------------------------------------------------------------------ release
    def assess_release(
        self,
        test: ReleaseTest | str,
        result: Any,
        *,
        weight_kg: float | None = None,
        volume_ml: float | None = None,
    ) -> tuple[ReleaseOutcome, str]:
        """``("pass" | "fail" | "invalid", reason)`` of one result against every part of its
        test's criterion: the fixed one (:meth:`ReleaseTest.assess`), the per-kg-per-dose
        limit (``result × volume_ml / weight_kg``; ``volume_ml`` defaults to the protocol's
        dose volume) and the dose range (per kg from ``weight_kg`` when the dose is per kg).
        A criterion that needs a weight nobody recorded is ``invalid`` (never assumed met)."""
        t = self.release_test(test) if isinstance(test, str) else test
        if t is None:
            return "invalid", f"{test!r} is not a test of the protocol's release specification"
        outcome, reason = t.assess(result)
        if outcome != "pass":
            return outcome, reason
        value, _ = t._value(result)
        fails: list[str] = []
        if t.dose_range:
            rng = self.dose_range_cells(weight_kg)
            if rng is None:
                return "invalid", ("the dose range is per kg: the participant's weight is "
                                   "needed to judge the cell count")
            if not rng[0] <= value <= rng[1]:
                fails.append(f"{value:.4g} {t.unit} is outside the dose range "
                             f"{rng[0]:.4g}-{rng[1]:.4g} cells")
        if t.max_per_kg_dose is not None:
            if weight_kg is None or not _is_number(weight_kg) or weight_kg <= 0:
                return "invalid", (f"the limit {t.max_per_kg_dose:g} {t.per_kg_unit} per dose "
                                   "needs the participant's weight")
            vol = self.volume_ml if volume_ml is None else volume_ml
            per_kg = value * vol / weight_kg
            if per_kg > t.max_per_kg_dose:
                fails.append(
                    f"{value:g} {t.unit} x {vol:g} mL / {weight_kg:g} kg = {per_kg:.3g} "
                    f"{t.per_kg_unit} per dose exceeds {t.max_per_kg_dose:g} {t.per_kg_unit}"
                )
        if fails:
            return "fail", "; ".join(fails)
        return "pass", ""

    def release_assessment(
        self,
        results: Mapping[str, Any],
        *,
        weight_kg: float | None = None,
        volume_ml: float | None = None,
    ) -> tuple[TestAssessment, ...]:
        """The verdict on every test of the release specification, in its order.

        ``results``: test name → result (a test with no entry, or ``None``, has no result).
        A test without a result is ``missing`` — or ``pending`` when its ``pending_with`` rapid
        test passed (release before the final sterility result). Results for names that are
        not in the specification are not judged here (the store refuses them on entry).
        """
        first: dict[str, tuple[ReleaseOutcome, str]] = {}
        for t in self.release_spec:
            r = results.get(t.name)
            if r is not None:
                first[t.name] = self.assess_release(t, r, weight_kg=weight_kg,
                                                    volume_ml=volume_ml)
        out = []
        for t in self.release_spec:
            r = results.get(t.name)
            crit = t.full_criterion
            if r is not None:
                outcome, reason = first[t.name]
                out.append(TestAssessment(t.name, outcome, reason, crit, r))
            elif t.pending_with is not None and first.get(t.pending_with, ("", ""))[0] == "pass":
                out.append(TestAssessment(t.name, "pending", f"result pending; released on "
                                          f"{t.pending_with} (rapid release)", crit))
            else:
                why = "no result"
                if t.pending_with is not None:
                    why += f" (and the rapid test {t.pending_with} has not passed)"
                out.append(TestAssessment(t.name, "missing", why, crit))
        return tuple(out)

    def spec_rows(self) -> list[dict[str, Any]]:
        """The release specification as plain rows ``{test, unit, min, max, expected}`` (null
        where not applicable): the JSON of ``hepatrial product spec --json``."""
        return [
            {"test": t.name, "unit": t.unit or None, "min": t.min, "max": t.max,
             "expected": t.expected}
            for t in self.release_spec
        ]

    def summary(self) -> dict[str, Any]:
        """The product as a plain dict without provenance (``Protocol.summary_dict``): every
        setting, the release specification as ``{name, unit, min, max, expected}`` rows."""

        def strip(obj: Any) -> Any:
            if isinstance(obj, dict):
                return {k: strip(v) for k, v in obj.items() if k not in _PROV_KEYS}
            if isinstance(obj, list):
                return [strip(x) for x in obj]
            return obj

        out = strip(self.model_dump(mode="json"))
        out["release_spec"] = [
            {"name": t.name, "unit": t.unit, "min": t.min, "max": t.max, "expected": t.expected}
            for t in self.release_spec
        ]
        return out

    # ------------------------------------------------------------------ shelf life
    def expiry(self, formulated_at: _dt.datetime) -> _dt.datetime | None:
        """End of shelf life: ``formulated_at + shelf_life_hours`` (None without a shelf life)."""
        if self.shelf_life_hours is None:
            return None
        return formulated_at + _dt.timedelta(hours=self.shelf_life_hours)


@dataclass(frozen=True)
class ScheduledVisit:
    """A visit's calendar dates for one participant."""

    code: str
    label: str
    target_date: _dt.date
    earliest_date: _dt.date
    latest_date: _dt.date


@dataclass(frozen=True)
class VisitAssignment:
    """Visit code given to one actual visit day (see :meth:`Protocol.assign_visits`)."""

    actual_day: int
    visit: str
    nominal_day: int
    scheduled: bool


@dataclass(frozen=True)
class ProvenanceItem:
    """One provenance statement with the key path of the setting it covers."""

    path: str
    source: str
    note: str


@dataclass(frozen=True)
class Issue:
    """A validation problem: TOML key path (``visits[2].window_lower``) and reason."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class Protocol(_Model):
    """A complete trial protocol. Build with :func:`hepatrial.protocol.load_protocol`."""

    name: str = Field(pattern=_NAME)
    title: str
    version: str
    registration: str | None = None
    reference: str = ""
    description: str = ""
    design: Literal["single_arm", "randomised"]
    arms: tuple[Arm, ...] = Field(min_length=1)
    randomisation: Randomisation | None = None
    sites: tuple[Site, ...] = Field(min_length=1)
    etiologies: tuple[Etiology, ...] = Field(min_length=1)
    visits: tuple[Visit, ...] = Field(min_length=1)
    eligibility: tuple[Criterion, ...] = ()
    eligibility_inputs: tuple[EligibilityInput, ...] = ()
    outcomes: tuple[Outcome, ...] = Field(min_length=1)
    primary_endpoint: PrimaryEndpoint
    analysis: AnalysisPlan
    product: Product | None = None
    # [safety]: hepatrial.protocol.safety.SafetyPlan (that module imports this one, so the name
    # is resolved there by Protocol.model_rebuild; rules in _safety_issues)
    safety: SafetyPlan | None = None  # noqa: F821
    sources: dict[str, SettingSource] = Field(
        default_factory=dict, description="provenance of top-level settings (etiologies, ...)"
    )

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Protocol:
        if info.context and info.context.get("skip_rules"):
            return self
        issues = protocol_rule_issues(self)
        if issues:
            raise ValueError("; ".join(str(i) for i in issues))
        return self

    # ------------------------------------------------------------------ lookups
    @property
    def baseline_visit(self) -> Visit:
        """The visit marked ``baseline = true``."""
        return next(v for v in self.visits if v.baseline)

    def visit(self, code: str) -> Visit:
        """The visit with this code (KeyError naming the known codes otherwise)."""
        for v in self.visits:
            if v.code == code:
                return v
        raise KeyError(f"no visit {code!r} in protocol {self.name} ({', '.join(self.visit_codes)})")

    @property
    def visit_codes(self) -> tuple[str, ...]:
        """Visit codes in schedule order."""
        return tuple(v.code for v in self.visits)

    @property
    def arm_codes(self) -> tuple[str, ...]:
        """Arm codes in protocol order."""
        return tuple(a.code for a in self.arms)

    def outcome(self, analyte: str) -> Outcome:
        """The outcome for this analyte/score code."""
        for o in self.outcomes:
            if o.analyte == analyte:
                return o
        raise KeyError(f"no outcome {analyte!r} in protocol {self.name}")

    # ------------------------------------------------------------------ eligibility
    def screen(self, screening: Mapping[str, Any]) -> EligibilityResult:
        """Evaluate every criterion on typed screening data (labs in canonical units); eligible
        is False/None/True (see ``eligibility.combine``). A value not of its input's declared
        kind leaves its criterion undecided (never compared)."""
        kinds = {i.name: (i.kind, i.choices) for i in self.eligibility_inputs}
        return combine([c.evaluate(screening, kinds) for c in self.eligibility])

    def eligibility_input(self, name: str) -> EligibilityInput:
        """The eligibility input called ``name`` (KeyError naming the known inputs otherwise)."""
        for i in self.eligibility_inputs:
            if i.name == name:
                return i
        known = ", ".join(i.name for i in self.eligibility_inputs) or "none"
        raise KeyError(f"no eligibility input {name!r} in protocol {self.name} ({known})")

    @property
    def entered_inputs(self) -> tuple[EligibilityInput, ...]:
        """The eligibility inputs entered as screening data (not derived by the store)."""
        return tuple(i for i in self.eligibility_inputs if i.entered)

    # ------------------------------------------------------------------ schedule
    def schedule(self, day0: _dt.date) -> list[ScheduledVisit]:
        """Calendar dates (target, earliest, latest) of every visit given the day-0 date."""
        d = _dt.timedelta
        return [
            ScheduledVisit(
                v.code,
                v.label,
                day0 + d(days=v.target_day),
                day0 + d(days=v.earliest_day),
                day0 + d(days=v.latest_day),
            )
            for v in self.visits
        ]

    def window_visit(self, actual_day: int) -> Visit | None:
        """The scheduled visit whose window contains ``actual_day`` (nearest target if several;
        ties go to the earlier visit), or None when the day is in no window."""
        hits = [v for v in self.visits if v.contains(actual_day)]
        if not hits:
            return None
        return min(hits, key=lambda v: (abs(actual_day - v.target_day), v.target_day))

    def assign_visits(self, actual_days: Sequence[int]) -> list[VisitAssignment]:
        """Assign visit codes to one participant's actual visit days (in input order).

        Rule (used by the importers):

        1. A day inside a visit window is a candidate for that visit (the nearest target if
           windows overlapped; built-in protocols have no overlaps).
        2. Each scheduled visit is given to at most one day: the candidate closest to the target
           day (ties: the earlier day, then input order).
        3. Every other day - outside every window, or a second visit in the same window - is an
           **unscheduled** visit with code :data:`UNSCHEDULED` (``UNS``) and ``nominal_day`` equal
           to its actual day. Nothing is dropped.
        """
        days = [int(d) for d in actual_days]
        best: dict[str, int] = {}
        for i, day in enumerate(days):
            v = self.window_visit(day)
            if v is None:
                continue
            j = best.get(v.code)
            if j is None or (abs(day - v.target_day), day, i) < (
                abs(days[j] - v.target_day),
                days[j],
                j,
            ):
                best[v.code] = i
        by_index = {i: code for code, i in best.items()}
        out = []
        for i, day in enumerate(days):
            code = by_index.get(i)
            if code is None:
                out.append(VisitAssignment(day, UNSCHEDULED, day, False))
            else:
                out.append(VisitAssignment(day, code, self.visit(code).target_day, True))
        return out

    # ------------------------------------------------------------------ provenance / output
    def provenance(self) -> list[ProvenanceItem]:
        """Every ``source``/``note`` in the protocol with its key path, in document order."""
        items: list[ProvenanceItem] = []

        def walk(obj: Any, path: str) -> None:
            if isinstance(obj, _Sourced):
                items.append(ProvenanceItem(path, obj.source, obj.note))
                for k, s in obj.sources.items():
                    items.append(ProvenanceItem(f"{path}.{k}", s.source, s.note))
            if isinstance(obj, BaseModel):
                for name in type(obj).model_fields:
                    if name in _PROV_KEYS:
                        continue
                    walk(getattr(obj, name), f"{path}.{name}" if path else name)
            elif isinstance(obj, tuple):
                for i, x in enumerate(obj):
                    walk(x, f"{path}[{i}]")

        for k, s in self.sources.items():
            items.append(ProvenanceItem(k, s.source, s.note))
        walk(self, "")
        return items

    def assumptions(self) -> list[ProvenanceItem]:
        """The provenance items whose source is ``assumed``."""
        return [p for p in self.provenance() if p.source == "assumed"]

    def canonical_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace, UTF-8) of the whole protocol."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

    def content_hash(self) -> str:
        """sha256 hex digest of :meth:`canonical_json`: stable across TOML layout, key order and
        comments, changes with any setting or note. Use it for report provenance."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def summary_dict(self) -> dict[str, Any]:
        """Plain-dict protocol summary (docs/contracts.md §4), JSON-serialisable.

        Keys: name, title, version, registration, reference, content_hash, design, arms,
        sites, visits (code, label, nominal_day, window_lower, window_upper, baseline,
        measurements), baseline_visit, outcomes (analyte, label, unit, transform,
        reported_unit), primary_endpoint, analysis (meld_variant, tests, primary_test,
        sensitivity_tests, wilcoxon_method, multiplicity, sequence, alpha, sided, mixed_model), the three contract settings
        mirrored at top level (meld_variant, tests, multiplicity), etiologies, product.
        """
        a = self.analysis
        analysis = {
            "meld_variant": a.meld_variant,
            "meld_score": _an.MELD_VARIANTS.get(a.meld_variant),
            "tests": list(a.paired_tests),
            "primary_test": a.resolved_primary_test,
            "sensitivity_tests": [t for t in a.paired_tests if t != a.resolved_primary_test],
            "wilcoxon_method": a.wilcoxon_method,
            "multiplicity": a.multiplicity,
            "sequence": [{"analyte": s.analyte, "visit": s.visit} for s in a.sequence],
            "alpha": a.alpha,
            "sided": a.sided,
            "mixed_model": None
            if a.mixed_model is None
            else a.mixed_model.model_dump(mode="json", exclude=_PROV_KEYS),
        }
        pe = self.primary_endpoint
        return {
            "name": self.name,
            "title": self.title,
            "version": self.version,
            "registration": self.registration,
            "reference": self.reference,
            "content_hash": self.content_hash(),
            "design": self.design,
            "arms": [{"code": x.code, "label": x.label, "ratio": x.ratio} for x in self.arms],
            "sites": [{"code": s.code, "name": s.name} for s in self.sites],
            "visits": [
                {
                    "code": v.code,
                    "label": v.label,
                    "nominal_day": v.target_day,
                    "window_lower": v.window_lower,
                    "window_upper": v.window_upper,
                    "baseline": v.baseline,
                    "measurements": list(v.measurements),
                }
                for v in self.visits
            ],
            "baseline_visit": self.baseline_visit.code,
            "outcomes": [
                {
                    "analyte": o.analyte,
                    "label": o.label,
                    "unit": o.unit,
                    "transform": o.transform,
                    "reported_unit": o.reported_unit,
                }
                for o in self.outcomes
            ],
            "primary_endpoint": {
                "analyte": pe.analyte,
                "visit": pe.visit,
                "comparison": pe.comparison,
                "transform": self.outcome(pe.analyte).transform,
            },
            "analysis": analysis,
            "meld_variant": a.meld_variant,
            "tests": list(a.paired_tests),
            "multiplicity": a.multiplicity,
            "etiologies": list(self.etiologies),
            "product": None if self.product is None else self.product.summary(),
        }


# ---------------------------------------------------------------------- cross-field rules
def _dupes(codes: Sequence[str]) -> dict[str, list[int]]:
    pos: dict[str, list[int]] = {}
    for i, c in enumerate(codes):
        pos.setdefault(c, []).append(i)
    return {c: p for c, p in pos.items() if len(p) > 1}


def _eligibility_input_issues(p: Protocol) -> list[Issue]:
    """Rules of the eligibility inputs and of the criteria that read them."""
    from hepatrial import vocab

    issues: list[Issue] = []
    add = lambda path, msg: issues.append(Issue(path, msg))  # noqa: E731
    inputs = {i.name: i for i in p.eligibility_inputs}
    for name, pos in _dupes([i.name for i in p.eligibility_inputs]).items():
        for i in pos[1:]:
            add(f"eligibility_inputs[{i}].name", f"duplicate eligibility input {name!r}")
    vocab_codes = {"sex": vocab.codes(vocab.SEX), "etiology": ETIOLOGIES}
    for i, inp in enumerate(p.eligibility_inputs):
        at = f"eligibility_inputs[{i}]"
        if inp.kind == "number":
            if inp.unit is None:
                add(f"{at}.unit", "a number input needs its unit (the analyte's canonical unit, "
                    "or e.g. 'years')")
            if inp.analyte is not None:
                if inp.analyte not in _an.ANALYTES:
                    add(f"{at}.analyte", f"unknown analyte {inp.analyte!r} "
                        f"(known: {', '.join(sorted(_an.ANALYTES))})")
                else:
                    canon = _an.analyte(inp.analyte).unit
                    if inp.unit is not None and (
                        _an.normalise_unit(inp.unit) != _an.normalise_unit(canon)
                    ):
                        add(f"{at}.unit", f"a lab input is compared in the canonical unit of "
                            f"{inp.analyte}, {canon!r} (other units are converted on entry)")
                if inp.name != inp.analyte:
                    add(f"{at}.name", f"a lab input is named as its analyte ({inp.analyte!r})")
                for k in ("minimum", "maximum"):
                    if getattr(inp, k) is not None:
                        add(f"{at}.{k}", "a lab input has the analyte registry's hard limits; "
                            f"{k} is for plain numbers")
            elif inp.name in _an.ANALYTES:
                add(f"{at}.analyte", f"{inp.name!r} is a lab analyte: set analyte = "
                    f"{inp.name!r} so that its value carries its unit")
            if inp.minimum is not None and inp.maximum is not None and inp.minimum > inp.maximum:
                add(f"{at}.minimum", "minimum is larger than maximum")
        else:
            for k in ("analyte", "unit", "minimum", "maximum"):
                if getattr(inp, k) is not None:
                    add(f"{at}.{k}", f"{k} is only for number inputs (this one is {inp.kind})")
        if inp.kind == "choice":
            if not inp.choices:
                add(f"{at}.choices", "a choice input lists its codes in choices")
            for code, pos in _dupes(list(inp.choices)).items():
                add(f"{at}.choices[{pos[1]}]", f"duplicate choice {code!r}")
        elif inp.choices:
            add(f"{at}.choices", f"choices are only for choice inputs (this one is {inp.kind})")
        derived = DERIVED_INPUTS.get(inp.name)
        if derived is not None:
            src, kind = derived
            if inp.derived_from != src:
                add(f"{at}.derived_from", f"{inp.name!r} is computed by the store from the "
                    f"{src} records: set derived_from = {src!r}")
            if inp.kind != kind:
                add(f"{at}.kind", f"{inp.name!r} is a {kind} input")
            if inp.name == "age" and inp.unit not in (None, "years"):
                add(f"{at}.unit", "age is in years")
            allowed = vocab_codes.get(inp.name)
            if allowed is not None:
                for j, code in enumerate(inp.choices):
                    if code not in allowed:
                        add(f"{at}.choices[{j}]", f"unknown {inp.name} code {code!r} "
                            f"(allowed: {', '.join(allowed)})")
        elif inp.derived_from is not None:
            known = ", ".join(k for k, v in DERIVED_INPUTS.items() if v[0] == inp.derived_from)
            add(f"{at}.derived_from", f"the store derives only {known} from the "
                f"{inp.derived_from} records, not {inp.name!r}")

    for i, c in enumerate(p.eligibility):
        at = f"eligibility[{i}].check"
        chk = c.check
        if chk.field in SCORE_FIELDS:
            for name in SCORE_FIELDS[chk.field].inputs:
                if name not in inputs:
                    add(f"{at}.field", f"score {chk.field!r} is computed from {name!r}, which is "
                        "not a declared eligibility input (add it to [[eligibility_inputs]] "
                        "with its kind)")
            continue
        inp = inputs.get(chk.field)
        if inp is None:
            add(f"{at}.field", f"{chk.field!r} is not a declared eligibility input (add it to "
                f"[[eligibility_inputs]] with its kind: {', '.join(INPUT_KINDS)})")
            continue
        if chk.op not in KIND_OPS[inp.kind]:
            add(f"{at}.op", f"a {inp.kind} input is compared with "
                f"{', '.join(sorted(KIND_OPS[inp.kind]))}, not {chk.op!r}")
            continue
        values = chk.value if isinstance(chk.value, tuple) else (chk.value,)
        for j, v in enumerate(values):
            vat = f"{at}.value" + (f"[{j}]" if isinstance(chk.value, tuple) else "")
            if inp.kind == "boolean" and not isinstance(v, bool):
                add(vat, f"{chk.field!r} is a boolean input: compare with true or false")
            elif inp.kind == "choice" and v not in inp.choices:
                add(vat, f"{v!r} is not one of the choices of {chk.field!r} "
                    f"({', '.join(inp.choices)})")
            elif inp.kind == "number" and (isinstance(v, bool) or not isinstance(v, int | float)):
                add(vat, f"{chk.field!r} is a number input: compare with a number")
            elif inp.kind == "date" and not (
                isinstance(v, _dt.date) and not isinstance(v, _dt.datetime)
            ):
                add(vat, f"{chk.field!r} is a date input: compare with a date (YYYY-MM-DD)")
        if chk.unit is not None and inp.analyte is None:
            add(f"{at}.unit", f"{chk.field!r} is not a lab input; a threshold unit needs one")
    return issues


def protocol_rule_issues(p: Protocol) -> list[Issue]:
    """All cross-field rule violations of a structurally valid protocol, with key paths."""
    issues: list[Issue] = []
    add = lambda path, msg: issues.append(Issue(path, msg))  # noqa: E731

    # arms / design / randomisation
    for code, pos in _dupes([a.code for a in p.arms]).items():
        for i in pos[1:]:
            add(f"arms[{i}].code", f"duplicate arm code {code!r} (first at arms[{pos[0]}])")
    if p.design == "randomised":
        if len(p.arms) < 2:
            add("arms", "a randomised design needs at least 2 arms")
        if p.randomisation is None:
            add("randomisation", "a randomised design needs a [randomisation] table")
        else:
            total = sum(a.ratio for a in p.arms)
            for i, b in enumerate(p.randomisation.block_sizes):
                if b <= 0 or b % total:
                    add(
                        f"randomisation.block_sizes[{i}]",
                        f"block size {b} is not a positive multiple of the allocation ratio "
                        f"sum {total}",
                    )
            allowed_strata = {"site", "sex", "etiology", "route"}
            for i, s in enumerate(p.randomisation.strata):
                if s not in allowed_strata:
                    add(
                        f"randomisation.strata[{i}]",
                        f"unknown stratum {s!r} (allowed: {', '.join(sorted(allowed_strata))})",
                    )
    else:
        if len(p.arms) != 1:
            add("arms", "a single_arm design has exactly one arm")
        elif p.arms[0].code != "single":
            add("arms[0].code", "the arm of a single_arm design has code 'single' (contracts §1)")
        if p.randomisation is not None:
            add("randomisation", "a single_arm design has no randomisation")

    for code, pos in _dupes([s.code for s in p.sites]).items():
        for i in pos[1:]:
            add(f"sites[{i}].code", f"duplicate site code {code!r} (first at sites[{pos[0]}])")
    for code, pos in _dupes(list(p.etiologies)).items():
        for i in pos[1:]:
            add(f"etiologies[{i}]", f"duplicate etiology {code!r}")

    # visits
    visit_codes = [v.code for v in p.visits]
    for code, pos in _dupes(visit_codes).items():
        for i in pos[1:]:
            add(f"visits[{i}].code", f"duplicate visit code {code!r} (first at visits[{pos[0]}])")
    for i, v in enumerate(p.visits):
        if v.code == UNSCHEDULED:
            add(f"visits[{i}].code", f"{UNSCHEDULED!r} is reserved for unscheduled visits")
        for j, m in enumerate(v.measurements):
            if not _an.is_known(m):
                add(f"visits[{i}].measurements[{j}]", f"unknown analyte or score {m!r}")
        for code, pos in _dupes(list(v.measurements)).items():
            add(f"visits[{i}].measurements[{pos[1]}]", f"duplicate measurement {code!r}")
    baselines = [i for i, v in enumerate(p.visits) if v.baseline]
    if not baselines:
        add("visits", "exactly one visit must have baseline = true (none has)")
    for i in baselines[1:]:
        add(
            f"visits[{i}].baseline",
            f"exactly one visit may have baseline = true (also visits[{baselines[0]}])",
        )
    if baselines and p.visits[baselines[0]].target_day != 0:
        add(f"visits[{baselines[0]}].target_day", "the baseline visit must be on day 0")
    for i in range(1, len(p.visits)):
        prev, cur = p.visits[i - 1], p.visits[i]
        if cur.target_day <= prev.target_day:
            add(
                f"visits[{i}].target_day",
                f"target days must increase: {cur.target_day} after {prev.target_day} "
                f"({prev.code})",
            )
        elif cur.earliest_day <= prev.latest_day:
            add(
                f"visits[{i}].window_lower",
                f"window of {cur.code} (days {cur.earliest_day}..{cur.latest_day}) overlaps "
                f"{prev.code} (days {prev.earliest_day}..{prev.latest_day})",
            )

    # eligibility
    for cid, pos in _dupes([c.id for c in p.eligibility]).items():
        for i in pos[1:]:
            add(f"eligibility[{i}].id", f"duplicate criterion id {cid!r}")
    issues.extend(_eligibility_input_issues(p))
    for i, c in enumerate(p.eligibility):
        if c.check.field == "etiology":
            vals = c.check.value if isinstance(c.check.value, tuple) else (c.check.value,)
            for j, e in enumerate(vals):
                if e not in ETIOLOGIES:
                    add(
                        f"eligibility[{i}].check.value[{j}]",
                        f"unknown etiology {e!r} (allowed: {', '.join(ETIOLOGIES)})",
                    )
                elif c.kind == "inclusion" and c.check.op == "in" and e not in p.etiologies:
                    add(
                        f"eligibility[{i}].check.value[{j}]",
                        f"etiology {e!r} is not in the protocol's etiologies",
                    )

    # outcomes
    outcome_codes = [o.analyte for o in p.outcomes]
    for code, pos in _dupes(outcome_codes).items():
        for i in pos[1:]:
            add(f"outcomes[{i}].analyte", f"duplicate outcome {code!r}")
    for i, o in enumerate(p.outcomes):
        if not _an.is_known(o.analyte):
            add(f"outcomes[{i}].analyte", f"unknown analyte or score {o.analyte!r}")
            continue
        canon = _an.canonical_unit(o.analyte)
        if _an.normalise_unit(o.unit) != _an.normalise_unit(canon):
            add(f"outcomes[{i}].unit", f"unit of {o.analyte} must be the canonical {canon!r}")
        if o.analyte in _an.ANALYTES:
            if not _an.analyte(o.analyte).accepts(o.reported_unit):
                add(
                    f"outcomes[{i}].reported_unit",
                    f"{o.reported_unit!r} is not a unit of {o.analyte} "
                    f"(accepted: {', '.join(_an.analyte(o.analyte).units)})",
                )
        elif o.reported_unit != canon:
            add(f"outcomes[{i}].reported_unit", f"a score is reported in {canon!r}")
        if o.analyte in _an.SCORES and o.transform == "log":
            add(f"outcomes[{i}].transform", "scores are not log-transformed")
        if o.analyte not in _an.SCORES and not any(o.analyte in v.measurements for v in p.visits):
            add(f"outcomes[{i}].analyte", f"{o.analyte!r} is not measured at any visit")

    # primary endpoint
    pe = p.primary_endpoint
    if pe.analyte not in outcome_codes:
        add("primary_endpoint.analyte", f"{pe.analyte!r} is not one of the outcomes")
    if pe.visit is not None and pe.visit not in visit_codes:
        add("primary_endpoint.visit", f"unknown visit {pe.visit!r}")
    if pe.comparison in ("change_from_baseline", "between_arms_at_visit") and pe.visit is None:
        add("primary_endpoint.visit", f"comparison {pe.comparison!r} needs a visit")
    if pe.comparison in ("between_arms_at_visit", "arm_by_time") and p.design != "randomised":
        add("primary_endpoint.comparison", f"{pe.comparison!r} needs a randomised design")

    # analysis plan
    a = p.analysis
    if a.meld_variant not in _an.MELD_VARIANTS:
        add(
            "analysis.meld_variant",
            f"unknown MELD variant {a.meld_variant!r} (known: {', '.join(_an.MELD_VARIANTS)})",
        )
    else:
        want = _an.MELD_VARIANTS[a.meld_variant]
        for i, oc in enumerate(outcome_codes):
            if oc in _an.MELD_VARIANTS.values() and oc != want:
                add(
                    f"outcomes[{i}].analyte",
                    f"MELD outcome {oc!r} does not match analysis.meld_variant "
                    f"{a.meld_variant!r} ({want})",
                )
    if a.primary_test is not None and a.primary_test not in a.paired_tests:
        add("analysis.primary_test", f"{a.primary_test!r} is not one of paired_tests "
            f"({', '.join(a.paired_tests) or 'none'})")
    if a.primary_test is None and len(a.paired_tests) > 1:
        add("analysis.primary_test", f"name the primary test (one of {', '.join(a.paired_tests)}); "
            "the others are sensitivity analyses")
    if a.multiplicity == "fixed_sequence":
        if not a.sequence:
            add("analysis.sequence", "fixed_sequence multiplicity needs a non-empty sequence")
    elif a.sequence:
        add("analysis.sequence", f"a sequence needs fixed_sequence, not {a.multiplicity!r}")
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(a.sequence):
        if item.analyte not in outcome_codes:
            add(f"analysis.sequence[{i}].analyte", f"{item.analyte!r} is not one of the outcomes")
        if item.visit not in visit_codes:
            add(f"analysis.sequence[{i}].visit", f"unknown visit {item.visit!r}")
        elif p.visit(item.visit).baseline:
            add(f"analysis.sequence[{i}].visit", "cannot test at the baseline visit")
        if (item.analyte, item.visit) in seen:
            add(f"analysis.sequence[{i}]", "duplicate hypothesis in the sequence")
        seen.add((item.analyte, item.visit))
    # top-level provenance
    for k in p.sources:
        if k not in Protocol.model_fields or k in _PROV_KEYS:
            add(f"sources.{k}", "names no top-level setting of the protocol")

    # product
    if p.product is not None:
        issues.extend(_product_issues(p.product))
    if p.safety is not None:
        issues.extend(_safety_issues(p))
    return issues


def _test_issues(t: AcceptanceTest, at: str) -> list[Issue]:
    """Rules of one test with an acceptance criterion (release test or in-process control)."""
    issues: list[Issue] = []
    add = lambda path, msg: issues.append(Issue(path, msg))  # noqa: E731
    dose_range = isinstance(t, ReleaseTest) and t.dose_range
    if t.expected is not None:
        if t.min is not None or t.max is not None:
            add(at, "a qualitative test (expected) has no min/max")
        if not t.expected.strip():
            add(f"{at}.expected", "expected result is empty")
    elif t.min is None and t.max is None and not dose_range:
        add(at, "give min and/or max (quantitative) or expected (qualitative)")
    elif not t.unit:
        add(f"{at}.unit", "a quantitative test needs its unit")
    if t.min is not None and t.max is not None and t.min > t.max:
        add(f"{at}.min", "min is larger than max")
    return issues


def _range_issues(r: TemperatureRange | None, at: str) -> list[Issue]:
    if r is not None and r.min_c > r.max_c:
        return [Issue(f"{at}.min_c", "min_c is larger than max_c")]
    return []


def _product_issues(pr: Product) -> list[Issue]:
    """Cross-field rules of the product: dose range, starting material, manufacturing steps
    and their controls, release specification, temperature ranges."""
    issues: list[Issue] = []
    add = lambda path, msg: issues.append(Issue(path, msg))  # noqa: E731
    if pr.cells_min > pr.cells_max:
        add("product.cells_min", "cells_min is larger than cells_max")
    sm = pr.starting_material
    if sm is not None:
        if sm.volume_ml_min > sm.volume_ml_max:
            add("product.starting_material.volume_ml_min",
                "volume_ml_min is larger than volume_ml_max")
        issues.extend(_range_issues(sm.transport_temp_c,
                                    "product.starting_material.transport_temp_c"))
    issues.extend(_range_issues(pr.storage_temp_c, "product.storage_temp_c"))
    issues.extend(_range_issues(pr.transport_temp_c, "product.transport_temp_c"))

    for code, pos in _dupes([s.code for s in pr.manufacturing]).items():
        for i in pos[1:]:
            add(f"product.manufacturing[{i}].code",
                f"duplicate step code {code!r} (first at manufacturing[{pos[0]}])")
    for i, step in enumerate(pr.manufacturing):
        for name, pos in _dupes([c.name for c in step.controls]).items():
            for j in pos[1:]:
                add(f"product.manufacturing[{i}].controls[{j}].name",
                    f"duplicate control {name!r} (first at controls[{pos[0]}])")
        for j, c in enumerate(step.controls):
            issues.extend(_test_issues(c, f"product.manufacturing[{i}].controls[{j}]"))

    spec = pr.release_spec
    names = [t.name for t in spec]
    for name, pos in _dupes(names).items():
        for i in pos[1:]:
            add(f"product.release_spec[{i}].name",
                f"duplicate release test {name!r} (first at release_spec[{pos[0]}])")
    for i, t in enumerate(spec):
        at = f"product.release_spec[{i}]"
        issues.extend(_test_issues(t, at))
        if t.max_per_kg_dose is not None and (t.qualitative or not t.unit.endswith("/mL")):
            add(f"{at}.max_per_kg_dose", "a limit per kg per dose is for a concentration "
                "result (a quantitative test whose unit ends in /mL)")
        if t.dose_range:
            if t.qualitative or t.unit != "cells":
                add(f"{at}.dose_range", "the dose range applies to a cell count (unit 'cells')")
            elif pr.dose_basis == "per_kg" and (t.min is not None or t.max is not None):
                add(f"{at}.min", "the dose is per kg: the cell-count limits come from the "
                    "participant's weight (give no min/max)")
            elif pr.dose_basis == "total" and (
                (t.min is not None and t.min != pr.cells_min)
                or (t.max is not None and t.max != pr.cells_max)
            ):
                add(f"{at}.min", f"min/max of a dose-range test must be the dose range "
                    f"{pr.cells_min:g}-{pr.cells_max:g} cells")
        if t.pending_with is not None:
            rapid = pr.release_test(t.pending_with)
            if t.pending_with == t.name:
                add(f"{at}.pending_with", "a test cannot be its own rapid release test")
            elif rapid is None:
                add(f"{at}.pending_with", f"{t.pending_with!r} is not a test of the release "
                    f"specification ({', '.join(names)})")
            elif rapid.pending_with is not None:
                add(f"{at}.pending_with", f"the rapid test {t.pending_with!r} must itself have "
                    "a result at release (it has pending_with)")
    return issues


def _safety_issues(p: Protocol) -> list[Issue]:
    """Rules of the [safety] section that need the rest of the protocol (the section's own
    rules are in hepatrial.protocol.safety): lab-rise rules name a known analyte or score
    measured or derived at a post-baseline visit; routes named by filters are routes of the
    product."""
    issues: list[Issue] = []
    add = lambda path, msg: issues.append(Issue(path, msg))  # noqa: E731
    s = p.safety
    assert s is not None
    visits = {v.code: v for v in p.visits}
    routes = set(p.product.routes) if p.product is not None else None
    for i, r in enumerate(s.stopping_rules):
        at = f"safety.stopping_rules[{i}]"
        if r.kind == "lab_rise":
            if not _an.is_known(r.analyte):
                add(f"{at}.analyte", f"unknown analyte or score {r.analyte!r}")
            v = visits.get(r.by_visit)
            if v is None:
                add(f"{at}.by_visit", f"unknown visit {r.by_visit!r} "
                    f"({', '.join(visits)})")
            elif v.target_day <= 0:
                add(f"{at}.by_visit", f"{r.by_visit!r} is not after the baseline")
        filters = (r.match_any if r.kind == "event" else (r.event,) if r.kind == "bayesian"
                   else ())
        for j, f in enumerate(filters):
            if f.after_route is not None and routes is not None and f.after_route not in routes:
                where = f"match_any[{j}]" if r.kind == "event" else "event"
                add(f"{at}.{where}.after_route", f"{f.after_route!r} is not a route of the "
                    f"product ({', '.join(sorted(routes))})")
    return issues
