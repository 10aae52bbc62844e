"""Import maps: how the columns of a longitudinal visits file map onto a protocol.

An import map is a TOML file validated by :class:`VisitImportMap`; the importer
(``hepatrial import visits FILE --map MAP``, written by the store team) reads it. Format (see
``builtin/mayo-pbc.map.toml`` for a complete example)::

    format_version = 1
    protocol = "mayo-pbc"              # built-in name or path of the protocol it targets
    missing_values = ["", "NA"]        # cell texts that mean "missing"
    ignore_columns = ["rownames"]      # columns deliberately not imported

    [participant]                      # participant-level fields (constant within a participant)
    id = "id"                          # column with the participant id
    site = { value = "MAYO" }          # constant ...
    arm = { column = "trt", codes = { "1" = "DPCA", "0" = "placebo" } }   # ... or coded column
    sex = { column = "sex", codes = { f = "F", m = "M" } }
    age = { column = "age", unit = "years" }
    etiology = { value = "PBC" }
    status = { column = "status", codes = { "0" = "completed", "2" = "died" } }
    status_day = { column = "futime", unit = "days" }
    extra = { }                        # any further participant-level field -> FieldMap

    [visit]
    day = "day"                        # column: actual day since day 0
    assign = "window"                  # visit code from the protocol's windows
    unscheduled_code = "UNS"

    [[analytes]]                       # one per lab column
    column = "bili"
    analyte = "bilirubin"              # code in hepatrial.protocol.analytes
    unit = "mg/dL"                     # unit of the file; converted to canonical on import

    [[clinical]]                       # other visit-level observations
    column = "ascites"
    field = "ascites"
    type = "bool"
    codes = { "0" = false, "1" = true }

**Visit assignment** (``assign = "window"``): for each participant the rows are assigned with
:meth:`hepatrial.protocol.models.Protocol.assign_visits`: a day inside a visit window is a
candidate for that visit; each scheduled visit goes to the candidate closest to its target day
(ties: the earlier day); every other row (outside all windows, or a second row in a window) is
kept as an **unscheduled visit** with code ``UNS`` and ``nominal_day`` = its actual day.
No row is ever dropped.

**Codes**: keys of ``codes`` are the cell text. :meth:`FieldMap.decode` also matches numerically
(cell ``1.0`` matches key ``"1"``), so files written by R/pandas with float columns work.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hepatrial.protocol import analytes as _an
from hepatrial.protocol.loader import (
    MAP_SUFFIX,
    ProtocolError,
    ProtocolNotFoundError,
    builtin_root,
    issues_from_validation_error,
    load_model_file,
    parse_toml,
)
from hepatrial.protocol.models import ETIOLOGIES, Issue, Protocol

CodeValue = str | bool | int | float

#: Participant statuses of docs/contracts.md §2.
STATUSES = (
    "screened",
    "screen_failed",
    "enrolled",
    "withdrawn",
    "died",
    "transplanted",
    "completed",
)
SEXES = ("F", "M")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __hash__(self) -> int:  # frozen models with dict fields: hash the canonical JSON
        return hash(self.model_dump_json())



def _missing(raw: Any, missing_values: Iterable[str] = ("", "NA")) -> bool:
    if raw is None:
        return True
    if isinstance(raw, float) and math.isnan(raw):
        return True
    return isinstance(raw, str) and raw.strip() in set(missing_values)


class FieldMap(_Model):
    """A participant-level field: a ``column`` (optionally with ``codes``) or a constant."""

    column: str | None = None
    value: CodeValue | None = None
    codes: dict[str, CodeValue] | None = None
    unit: str | None = None
    note: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> FieldMap:
        if (self.column is None) == (self.value is None):
            raise ValueError("give exactly one of 'column' or 'value'")
        if self.value is not None and self.codes is not None:
            raise ValueError("'codes' needs a 'column'")
        return self

    def decode(self, raw: Any = None, missing_values: Iterable[str] = ("", "NA")) -> Any:
        """Map one raw cell to its value: the constant, the coded value, or the raw value.

        Missing cells give None. A cell with no matching code raises :class:`ValueError` naming
        the column, the value and the known codes.
        """
        if self.value is not None:
            return self.value
        if _missing(raw, missing_values):
            return None
        if self.codes is None:
            return raw
        text = str(raw).strip()
        if text in self.codes:
            return self.codes[text]
        try:
            num = float(text)
        except ValueError:
            num = None
        if num is not None:
            for k, v in self.codes.items():
                try:
                    if float(k) == num:
                        return v
                except ValueError:
                    continue
        raise ValueError(
            f"column {self.column!r}: value {raw!r} has no code (known: {', '.join(self.codes)})"
        )

    def mapped_values(self) -> list[CodeValue]:
        """The values this field can produce when coded or constant (empty for raw columns)."""
        if self.value is not None:
            return [self.value]
        return list(self.codes.values()) if self.codes else []


class ParticipantSpec(_Model):
    """Participant-level fields."""

    id: str = Field(description="column holding the participant id")
    site: FieldMap
    arm: FieldMap
    sex: FieldMap | None = None
    age: FieldMap | None = None
    etiology: FieldMap | None = None
    status: FieldMap | None = None
    status_day: FieldMap | None = None
    extra: dict[str, FieldMap] = Field(default_factory=dict)

    @field_validator("sex", "status", "etiology")
    @classmethod
    def _values_allowed(cls, fm: FieldMap | None, info: ValidationInfo) -> FieldMap | None:
        allowed = {"sex": SEXES, "status": STATUSES, "etiology": ETIOLOGIES}[str(info.field_name)]
        if fm is not None:
            bad = [v for v in fm.mapped_values() if v not in allowed]
            if bad:
                raise ValueError(f"value(s) {bad} not allowed (allowed: {', '.join(allowed)})")
        return fm


class VisitSpec(_Model):
    """How rows become visits."""

    day: str = Field(description="column with the actual day since day 0")
    assign: Literal["window"] = "window"
    unscheduled_code: Literal["UNS"] = "UNS"  # == models.UNSCHEDULED
    note: str = ""


class AnalyteColumn(_Model):
    """A lab column: analyte code and the unit used in the file."""

    column: str
    analyte: str
    unit: str
    note: str = ""

    @model_validator(mode="after")
    def _known(self) -> AnalyteColumn:
        a = _an.analyte(self.analyte)  # raises UnknownAnalyteError (a ValueError)
        if not a.accepts(self.unit):
            raise ValueError(
                f"unit {self.unit!r} is not accepted for {self.analyte} "
                f"(accepted: {', '.join(a.units)})"
            )
        return self

    def to_canonical(self, values: Any, *, check: bool = True) -> np.ndarray:
        """Convert the column's values (array-like, NaN for missing) to the canonical unit."""
        return _an.to_canonical_array(self.analyte, values, self.unit, check=check)


class ClinicalColumn(_Model):
    """A non-lab visit-level observation (signs, stage)."""

    column: str
    field: str
    type: Literal["bool", "int", "float", "category"]
    codes: dict[str, CodeValue] | None = None
    note: str = ""

    @model_validator(mode="after")
    def _codes(self) -> ClinicalColumn:
        if self.type in ("bool", "category") and not self.codes:
            raise ValueError(f"type {self.type!r} needs codes")
        if self.type == "bool" and self.codes and not all(
            isinstance(v, bool) for v in self.codes.values()
        ):
            raise ValueError("codes of a bool field must map to true/false")
        return self

    def decode(self, raw: Any, missing_values: Iterable[str] = ("", "NA")) -> Any:
        """Decode one cell (None when missing); ValueError for an unknown code / bad number."""
        fm = FieldMap(column=self.column, codes=self.codes)
        v = fm.decode(raw, missing_values)
        if v is None or self.codes:
            return v
        if self.type == "int":
            f = float(v)
            if not f.is_integer():
                raise ValueError(f"column {self.column!r}: {raw!r} is not an integer")
            return int(f)
        return float(v)


class VisitImportMap(_Model):
    """A column map for importing a longitudinal visits file into a protocol."""

    format_version: Literal[1] = 1
    protocol: str
    description: str = ""
    missing_values: tuple[str, ...] = ("", "NA")
    ignore_columns: tuple[str, ...] = ()
    participant: ParticipantSpec
    visit: VisitSpec
    analytes: tuple[AnalyteColumn, ...] = Field(min_length=1)
    clinical: tuple[ClinicalColumn, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> VisitImportMap:
        seen: dict[str, str] = {}
        for where, col in self._visit_level_columns():
            if col in seen:
                raise ValueError(f"column {col!r} is used twice ({seen[col]} and {where})")
            seen[col] = where
        codes = [a.analyte for a in self.analytes]
        dup = sorted({c for c in codes if codes.count(c) > 1})
        if dup:
            raise ValueError(f"analyte(s) mapped twice: {', '.join(dup)}")
        fields = [c.field for c in self.clinical]
        dupf = sorted({c for c in fields if fields.count(c) > 1})
        if dupf:
            raise ValueError(f"clinical field(s) mapped twice: {', '.join(dupf)}")
        return self

    def _visit_level_columns(self) -> list[tuple[str, str]]:
        cols = [("visit.day", self.visit.day)]
        cols += [(f"analytes[{i}]", a.column) for i, a in enumerate(self.analytes)]
        cols += [(f"clinical[{i}]", c.column) for i, c in enumerate(self.clinical)]
        return cols

    def participant_fields(self) -> dict[str, FieldMap]:
        """Participant-level FieldMaps by field name (site, arm, sex, ..., then extra)."""
        p = self.participant
        out = {
            k: getattr(p, k)
            for k in ("site", "arm", "sex", "age", "etiology", "status", "status_day")
            if getattr(p, k) is not None
        }
        out.update(p.extra)
        return out

    def columns(self) -> list[str]:
        """Every column the map reads (participant id first), without duplicates."""
        cols = [self.participant.id]
        cols += [fm.column for fm in self.participant_fields().values() if fm.column]
        cols += [c for _, c in self._visit_level_columns()]
        return list(dict.fromkeys(cols))

    def check_header(self, header: Sequence[str]) -> list[Issue]:
        """Problems between the map and a file header: missing mapped columns, and file columns
        that are neither mapped nor listed in ``ignore_columns`` (so nothing is lost silently)."""
        issues = []
        hdr = list(header)
        for c in self.columns():
            if c not in hdr:
                issues.append(Issue("(map)", f"column {c!r} is not in the file"))
        used = set(self.columns()) | set(self.ignore_columns)
        for c in hdr:
            if c not in used:
                issues.append(Issue("(file)", f"column {c!r} is neither mapped nor ignored"))
        return issues

    def check_against(self, protocol: Protocol) -> list[Issue]:
        """Problems between the map and its protocol (names, arm/site codes, analytes)."""
        issues = []
        if protocol.name != self.protocol and not str(self.protocol).endswith(".toml"):
            issues.append(
                Issue("protocol", f"map is for {self.protocol!r}, protocol is {protocol.name!r}")
            )
        arms = set(protocol.arm_codes)
        for v in self.participant.arm.mapped_values():
            if v not in arms:
                issues.append(Issue("participant.arm", f"arm {v!r} is not in the protocol"))
        sites = {s.code for s in protocol.sites}
        for v in self.participant.site.mapped_values():
            if v not in sites:
                issues.append(Issue("participant.site", f"site {v!r} is not in the protocol"))
        if self.participant.etiology is not None:
            for v in self.participant.etiology.mapped_values():
                if v not in protocol.etiologies:
                    issues.append(
                        Issue("participant.etiology", f"etiology {v!r} not allowed by the protocol")
                    )
        measured = {m for v in protocol.visits for m in v.measurements}
        for i, a in enumerate(self.analytes):
            if a.analyte not in measured:
                issues.append(
                    Issue(f"analytes[{i}].analyte", f"{a.analyte!r} is not measured at any visit")
                )
        return issues


def load_import_map(name_or_path: str | Path) -> VisitImportMap:
    """Load a map by built-in name (``"mayo-pbc"`` → ``builtin/mayo-pbc.map.toml``) or path.

    Raises :class:`hepatrial.protocol.loader.ProtocolError` (issues with key paths) when invalid.
    """
    p = Path(name_or_path)
    if p.is_file():
        return load_model_file(p, VisitImportMap)  # type: ignore[return-value]
    f = builtin_root().joinpath(f"{name_or_path}{MAP_SUFFIX}")
    if not f.is_file():
        raise ProtocolNotFoundError(f"no import map file or built-in map {str(name_or_path)!r}")
    data = parse_toml(f.read_text(encoding="utf-8"), f"builtin:{name_or_path}{MAP_SUFFIX}")
    try:
        return VisitImportMap.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(f"builtin:{name_or_path}", issues_from_validation_error(exc)) from None
