"""Request and response bodies of the REST API (pydantic, through django-ninja).

The request schemas check only the *form* of a request — which keys, JSON types, and the text
rules every stored text obeys (:func:`hepatrial.textrules.text_problem`: the column's length,
no control characters), so that SQLite and PostgreSQL behave the same. Every clinical rule (a
known analyte, a unit the registry accepts, a value inside the hard limits, a date that is not
in the future, a visit that was done, one value per analyte and visit) is the store's
(:mod:`hepatrial.trials.validators.lab`, through :func:`hepatrial.trials.services.record_lab`),
and its refusal comes back as a 422 problem naming each field and reason.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Annotated, Any

from ninja import Schema
from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from hepatrial import vocab
from hepatrial.textrules import text_problem

__all__ = [
    "LAB_FIELD_LENGTHS",
    "MAX_LABS",
    "LabIn",
    "LabOut",
    "LabsCreated",
    "Me",
    "ParticipantOut",
    "ParticipantPage",
    "QueryMessageOut",
    "QueryOut",
    "QueryPage",
    "VisitOut",
]

#: at most this many lab results in one request (one per analyte of one visit)
MAX_LABS = 100


def _lab_lengths() -> dict[str, int]:
    from hepatrial.trials.models import LabResult

    f = LabResult._meta.get_field
    return {"analyte": f("analyte").max_length, "value": f("value_as_entered").max_length,
            "unit": f("unit_as_entered").max_length, "laboratory": f("laboratory").max_length}


#: the stored columns' lengths (a longer text is refused before writing)
LAB_FIELD_LENGTHS: dict[str, int] = _lab_lengths()


def _analyte_codes() -> list[str]:
    from hepatrial.protocol import analytes

    return sorted(analytes.ANALYTES)


def _value_as_text(v: Any) -> Any:
    """A JSON number becomes the text it was written as (``2.30`` stays ``"2.30"``: the body
    is parsed with ``Decimal`` for numbers); text is kept as it is; ``true``/``false``/``null``
    are left for the store's value rule to refuse ("is not a number"); an array or an object
    is refused here (a lab value is one value)."""
    if isinstance(v, list | dict):
        raise ValueError("a lab value is a JSON number or text, not an array or an object")
    if isinstance(v, bool):
        return v
    if isinstance(v, Decimal | int):
        v = str(v)
    if isinstance(v, str):
        why = text_problem(v, LAB_FIELD_LENGTHS["value"])
        if why:
            raise ValueError(why)
    return v


#: a lab value: a JSON number or text (kept as entered, e.g. "2.30")
LabValue = Annotated[
    Any,
    BeforeValidator(_value_as_text),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "maxLength":
                                                   LAB_FIELD_LENGTHS["value"]}],
                    "description": "the value as entered: a JSON number (kept as written, "
                    "e.g. 2.30) or text (\"2.30\")", "examples": ["2.30", 40]}),
]


class LabIn(Schema):
    """One lab result to record at a visit."""

    model_config = ConfigDict(extra="forbid")

    analyte: str = Field(
        max_length=LAB_FIELD_LENGTHS["analyte"],
        description="analyte code of the registry (hepatrial protocol show / docs)",
        json_schema_extra={"enum": _analyte_codes(), "examples": ["bilirubin"]},
    )
    value: LabValue
    unit: str = Field(max_length=LAB_FIELD_LENGTHS["unit"],
                      description="the unit the value was measured in (converted by the "
                      "registry; kept as entered)", examples=["mg/dL"])
    date: str | None = Field(
        default=None, max_length=10,
        description="specimen date YYYY-MM-DD (default: the visit's date)",
        json_schema_extra={"format": "date", "examples": ["2008-02-01"]},
    )
    laboratory: str = Field(default="", max_length=LAB_FIELD_LENGTHS["laboratory"],
                            description="the laboratory that measured it")
    confirmed_out_of_range: bool = Field(
        default=False, strict=True,
        description="a value outside the analyte's expected range was checked against the "
        "source: it is saved and opens a data query (without it such a value is refused)")

    @field_validator("analyte", "unit", "date", "laboratory")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, str):
            why = text_problem(v)
            if why:
                raise ValueError(why)
        return v


class LabOut(Schema):
    """A stored lab result: as entered and in the analyte's canonical unit."""

    analyte: str
    value_as_entered: str
    unit_as_entered: str
    value: float = Field(description="in the canonical (SI) unit")
    unit: str = Field(description="the canonical unit")
    loinc: str
    laboratory: str
    specimen_date: _dt.date | None
    range_flag: str = Field(description="ok, low or high against the analyte's expected range "
                            "(soft limits: a value outside was confirmed and has a query); "
                            "unknown for an analyte the registry does not know")


class LabsCreated(Schema):
    """The lab results a POST recorded (all of the request, or none)."""

    participant: str
    visit: str
    items: list[LabOut]


class ParticipantOut(Schema):
    """A participant (pseudonymous): site, arm, status and the dates of the trial."""

    study_id: str
    site: str
    arm: str | None = Field(description="arm code; null when not enrolled")
    sex: str = Field(json_schema_extra={"enum": list(vocab.codes(vocab.SEX))})
    year_of_birth: int
    etiology: str
    age: int | None = Field(description="age at consent in whole years: consent year − year "
                            "of birth (docs/contracts.md §2)")
    status: str = Field(json_schema_extra={"enum": list(vocab.codes(vocab.PARTICIPANT_STATUS))})
    status_date: _dt.date
    status_reason: str
    screening_date: _dt.date
    enrolment_date: _dt.date | None = Field(description="day 0; null when not enrolled")


class ParticipantPage(Schema):
    """A page of participants, by study id."""

    count: int = Field(description="participants matching, on every page")
    limit: int
    offset: int
    items: list[ParticipantOut]


class VisitOut(Schema):
    """A protocol visit with its window and its lab results."""

    code: str
    label: str
    nominal_day: int
    window_lower: int = Field(description="days from the target day to the earliest day in "
                              "the window (≤ 0)")
    window_upper: int = Field(description="days from the target day to the latest day in the "
                              "window (≥ 0)")
    earliest_date: _dt.date | None
    target_date: _dt.date | None
    latest_date: _dt.date | None
    actual_date: _dt.date | None
    actual_day: int | None = Field(description="days from day 0")
    status: str = Field(json_schema_extra={"enum": list(vocab.codes(vocab.VISIT_STATUS))})
    labs: list[LabOut]


class Me(Schema):
    """The account a token acts as."""

    username: str
    role: str
    sites: list[str] = Field(description="codes of the sites the account acts on")


class QueryMessageOut(Schema):
    """One step of a query's thread."""

    step: str = Field(json_schema_extra={"enum": list(vocab.codes(vocab.QUERY_STEP))})
    author: str
    at: _dt.datetime
    text: str


class QueryOut(Schema):
    """A data query on one field of one record of a participant, with its thread."""

    id: int
    participant: str
    site: str
    visit: str | None = Field(description="visit code; null for a record outside visits")
    record: str = Field(description="the record's model, e.g. trials.labresult")
    object_id: str = Field(description="the record's id; empty for an item never entered")
    field: str
    item: str = Field(description="the item for people, e.g. the analyte")
    origin: str = Field(json_schema_extra={"enum": list(vocab.codes(vocab.QUERY_ORIGIN))})
    status: str = Field(json_schema_extra={"enum": list(vocab.codes(vocab.QUERY_STATUS))})
    text: str
    value_at_raise: str
    raised_by: str
    raised_at: _dt.datetime
    closed_by: str | None
    closed_at: _dt.datetime | None
    messages: list[QueryMessageOut]


class QueryPage(Schema):
    """A page of data queries, oldest first."""

    count: int = Field(description="queries matching, on every page")
    limit: int
    offset: int
    items: list[QueryOut]
