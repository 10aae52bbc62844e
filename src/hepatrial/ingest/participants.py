"""``hepatrial import participants``: screening, consent, eligibility and enrolment from a CSV.

One row per participant. Columns:

* ``study_id, site, sex, year_of_birth, etiology, screening_date`` (required);
* ``consent_version, consent_date`` (both or neither; empty: no consent recorded yet, the
  participant is only screened and no eligibility assessment is made);
* ``enrolment_date`` (empty: screened only);
* one column per eligibility input of the protocol, named as the protocol names it
  (``hepatrial protocol show NAME``): lab inputs with their unit in the name as
  ``hepatrial score`` reads them (``bilirubin_umol_l`` or ``bilirubin_mg_dl``,
  ``creatinine_umol_l`` or ``creatinine_mg_dl``, ``inr``, ...), booleans ``true``/``false``;
  an empty cell is "not given" (the criteria that need it stay undecided).

Every row is written through the store's services - ``screen_participant``,
``record_consent``, ``assess_eligibility``, ``enrol_participant`` - so every rule of the store
(:mod:`hepatrial.trials.validators`: typed screening data, units converted by the analyte
registry, consent before enrolment, roles) applies exactly as for a form; this module only maps
columns to service arguments and the services' problems back to rows and columns. A participant
whose eligibility fails is stored as ``screen_failed`` with the failed criteria and is never
enrolled (a note says so when the row asked for enrolment).

All-or-nothing: the rows are written in one transaction (a savepoint per row, so that every
row's problems are collected); when any row is refused, or with ``dry_run``, the transaction
is rolled back, so nothing is stored. A participant already stored is *unchanged* when the file
says what the store holds, and refused otherwise (this importer creates participants; a
correction goes through the admin or the services with a reason).

Rows in rejects are 1-based data rows (row 1 = the first line after the header).
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hepatrial.ingest.report import ImportRefused, ImportResult
from hepatrial.ingest.validate import ImportFileError, read_text_csv, rejects_frame

__all__ = [
    "CONSENT_COLUMNS",
    "ENROLMENT_COLUMN",
    "PARTICIPANT_REQUIRED",
    "ParticipantImportResult",
    "import_participants",
    "input_columns",
]

#: required columns, in the order of the example file
PARTICIPANT_REQUIRED: tuple[str, ...] = (
    "study_id", "site", "sex", "year_of_birth", "etiology", "screening_date",
)  # fmt: skip
CONSENT_COLUMNS: tuple[str, str] = ("consent_version", "consent_date")
ENROLMENT_COLUMN = "enrolment_date"

#: which file column a field of a service's problem refers to, per step
_CONSENT_FIELDS = {"version": "consent_version", "date": "consent_date"}


@dataclass
class ParticipantImportResult(ImportResult):
    """What ``import participants`` did (or would do): participants created (``created``) and
    unchanged, and of the created ones how many are enrolled, screen-failed, screened only."""

    enrolled: int = 0
    screen_failed: int = 0
    screened_only: int = 0

    def summary(self) -> str:
        """One line: ``N created (N enrolled, N screen-failed, N screened only), N unchanged``."""
        head = "dry run, nothing written: would be " if self.dry_run else ""
        return (f"{head}{self.created} participants created ({self.enrolled} enrolled, "
                f"{self.screen_failed} screen-failed, {self.screened_only} screened only), "
                f"{self.unchanged} unchanged")


def input_columns(protocol: Any) -> list[str]:
    """The eligibility-input columns a participants file may have for ``protocol``."""
    from hepatrial.trials.validators import eligibility

    return list(eligibility.input_columns(protocol))


def _check_header(frame: pd.DataFrame, protocol: Any, path: Path) -> list[str]:
    """Refuse unknown columns (naming what is accepted); return the input columns present."""
    from hepatrial.protocol.models import DERIVED_INPUTS

    inputs = input_columns(protocol)
    known = {*PARTICIPANT_REQUIRED, *CONSENT_COLUMNS, ENROLMENT_COLUMN, *inputs}
    problems = []
    for col in frame.columns:
        if col == "row" or col in known:
            continue
        if col in DERIVED_INPUTS:
            src = DERIVED_INPUTS[col][0]
            hint = ("consent_version and consent_date" if src == "consent"
                    else "the participant columns")
            problems.append(f"{col!r} is not entered: the store takes it from {hint}")
        else:
            problems.append(f"{col!r} is not a column of a participants file")
    if problems:
        raise ImportFileError(
            f"{path}: {'; '.join(problems)} (columns: {', '.join(PARTICIPANT_REQUIRED)}, "
            f"{', '.join(CONSENT_COLUMNS)}, {ENROLMENT_COLUMN} and the eligibility inputs of "
            f"protocol {protocol.name}: {', '.join(inputs)})")
    have = set(frame.columns)
    if bool(set(CONSENT_COLUMNS) & have) and not set(CONSENT_COLUMNS) <= have:
        raise ImportFileError(f"{path}: consent_version and consent_date go together (found "
                              f"only {', '.join(sorted(set(CONSENT_COLUMNS) & have))})")
    return [c for c in frame.columns if c in inputs]


class _Rollback(Exception):
    """Leave the import's transaction without committing (dry run, or a row was refused)."""


def _cell(frame: pd.DataFrame, col: str, i: int) -> str:
    return str(frame[col].iat[i]) if col in frame.columns else ""


def _rejects_of(exc: Exception, *, step: str, frame: pd.DataFrame, i: int,
                given: dict[str, str]) -> list[tuple[int, str, str, str]]:
    """Reject lines (row, column, value, reason) for a service's refusal of row ``i``."""
    from hepatrial.trials.validators import RuleViolation

    row = int(frame["row"].iat[i])
    default = {"screen": "study_id", "consent": "consent_date", "eligibility": "screening_date",
               "enrol": ENROLMENT_COLUMN}[step]
    problems = exc.problems if isinstance(exc, RuleViolation) else None
    if not problems:
        return [(row, default, _cell(frame, default, i), str(exc))]
    out = []
    for p in problems:
        field = p.field or default
        if field.startswith("screening_data."):
            field = field.removeprefix("screening_data.")
        if step == "consent":
            field = _CONSENT_FIELDS.get(field, field)
        col = field if field in frame.columns else default
        value = given.get(col, _cell(frame, col, i))
        reason = p.reason if col == field else f"{p.field}: {p.reason}"
        out.append((row, col, value, reason))
    return out


def _failed_criteria(assessment: Any) -> str:
    parts = []
    for cid, c in (assessment.criteria or {}).items():
        if c.get("passes") is False:
            parts.append(f"{cid}: {c.get('reason') or c.get('text')}")
    return "; ".join(parts)


def _undecided(assessment: Any) -> str:
    return ", ".join(cid for cid, c in (assessment.criteria or {}).items()
                     if c.get("passes") is None)


def _later(a: str, b: str) -> str:
    """The later of two ISO dates (text kept as entered; ``a`` if either is not a date)."""
    try:
        return b if _dt.date.fromisoformat(b) > _dt.date.fromisoformat(a) else a
    except ValueError:
        return a


def _stored_differences(p: Any, frame: pd.DataFrame, i: int, inputs: list[str],
                        protocol: Any) -> list[tuple[str, str]]:
    """``(column, reason)`` where row ``i`` differs from the stored participant ``p``."""
    from hepatrial.trials.validators import RuleViolation, eligibility

    out: list[tuple[str, str]] = []
    stored = {"site": p.site.code, "sex": p.sex, "year_of_birth": str(p.year_of_birth),
              "etiology": p.etiology, "screening_date": p.screening_date.isoformat(),
              ENROLMENT_COLUMN: p.enrolment_date.isoformat() if p.enrolment_date else ""}
    for col, have in stored.items():
        if col not in frame.columns and col == ENROLMENT_COLUMN:
            continue
        if _cell(frame, col, i) != have:
            out.append((col, f"stored {have or 'empty'!r}"))
    data = {c: _cell(frame, c, i) for c in inputs if _cell(frame, c, i) != ""}
    try:
        parsed = eligibility.parse_screening(
            protocol, data, record=f"participant {p.study_id}", year_of_birth=p.year_of_birth,
            screening_date=p.screening_date).stored
    except RuleViolation:
        parsed = None
    if parsed != dict(p.screening_data or {}):
        out.append((inputs[0] if inputs else "study_id",
                    f"screening data differ from the stored {p.screening_data!r}"))
    version, date = (_cell(frame, c, i) for c in CONSENT_COLUMNS)
    if version or date:
        consents = {(c.version, c.date.isoformat()) for c in p.consents.all()}
        if (version, date) not in consents:
            out.append(("consent_date", f"no stored consent {version} of {date} "
                        f"(stored: {sorted(consents) or 'none'})"))
    return out


def import_participants(
    path: str | Path,
    *,
    db: str | Path | None = None,
    dry_run: bool = False,
    user: str | None = None,
    rejects_path: str | Path | None = None,
) -> ParticipantImportResult:
    """Import a participants file (see the module docstring) all-or-nothing.

    Raises :class:`ImportRefused` (nothing written; every reject listed with row, column,
    value and reason, also written to ``rejects_path``, default ``<FILE>.rejects.csv``) when
    any row is refused; :class:`ImportFileError` when the file or the store cannot be used.
    With ``dry_run`` every row goes through the same services and the transaction is rolled
    back: the result says what would be stored and nothing is.
    """
    from django.db import transaction

    from hepatrial.errors import StoreError
    from hepatrial.ingest.importer import (
        _setup,
        acting_user,
        current_protocol,
        finish_refusal,
        rejects_target,
    )

    t0 = time.perf_counter()
    path = Path(path)
    target = rejects_target(path, rejects_path, dry_run)
    frame = read_text_csv(path, required=PARTICIPANT_REQUIRED)
    _setup(db)
    from hepatrial.trials import services
    from hepatrial.trials.audit import lock_ledger
    from hepatrial.trials.models import Participant

    protocol = current_protocol()
    inputs = _check_header(frame, protocol, path)
    acting = acting_user(user, create_system=False)
    result = ParticipantImportResult(rows=len(frame), dry_run=dry_run)
    rejects: list[tuple[int, str, str, str]] = []
    notes: list[str] = []

    # text the store cannot hold (lengths, control characters, formula-like ids): refused
    # before any service runs, the same on SQLite and PostgreSQL
    bad_text = _text_rejects(frame, inputs)
    rejects.extend(bad_text)
    bad_rows = {r[0] for r in bad_text}

    # file-level row rules: one row per participant, consent given as a pair
    first: dict[str, int] = {}
    todo: list[int] = []
    for i in range(len(frame)):
        row, sid = int(frame["row"].iat[i]), frame["study_id"].iat[i]
        if sid and sid in first:
            rejects.append((row, "study_id", sid, f"duplicate of row {first[sid]}"))
            continue
        first.setdefault(sid, row)
        if row in bad_rows:
            continue
        version, date = (_cell(frame, c, i) for c in CONSENT_COLUMNS)
        if bool(version) != bool(date):
            col = CONSENT_COLUMNS[0] if not version else CONSENT_COLUMNS[1]
            rejects.append((row, col, "", "consent_version and consent_date go together "
                            "(both, or neither when no consent is recorded yet)"))
            continue
        todo.append(i)

    try:
        with transaction.atomic():
            # the store's write lock from the start: a second import of the same file waits,
            # then finds the participants stored (unchanged) instead of failing on them
            lock_ledger()
            history_user = acting if acting is not None else services.system_user()
            stored = {p.study_id: p for p in Participant.objects.filter(
                study_id__in=[frame["study_id"].iat[i] for i in todo]).select_related("site")}
            for i in todo:
                sid = frame["study_id"].iat[i]
                if sid in stored:
                    diff = _stored_differences(stored[sid], frame, i, inputs, protocol)
                    if not diff:
                        result.unchanged += 1
                    for col, why in diff:
                        rejects.append((int(frame["row"].iat[i]), col, _cell(frame, col, i),
                                        f"participant {sid} is already stored and differs "
                                        f"({why}): import participants only creates "
                                        "participants; correct it with a reason (admin)"))
                    continue
                rejects.extend(_write_row(frame, i, inputs, history_user, services,
                                          result, notes, StoreError))
            if rejects or dry_run:
                raise _Rollback
    except _Rollback:
        pass
    if not rejects and not result.created and result.unchanged:
        notes.append("every row is already stored unchanged: nothing to import")
    result.notes = notes
    result.seconds = time.perf_counter() - t0
    if rejects:
        rej = rejects_frame([pd.DataFrame(rejects, columns=["row", "column", "value",
                                                            "reason"])])
        result.rejects = rej
        n = rej["row"].nunique()
        raise finish_refusal(ImportRefused(
            f"{n} of {len(frame)} rows rejected; nothing was imported", rej, result), target)
    return result


def _text_rejects(frame: pd.DataFrame, inputs: list[str]) -> list[tuple[int, str, str, str]]:
    """Text cells the store cannot hold: ids (study id, site; :func:`hepatrial.textrules.
    identifier_problem`), fields longer than their column, control characters anywhere."""
    from hepatrial.ingest.importer import text_limits
    from hepatrial.ingest.validate import text_rejects
    from hepatrial.trials.models import Consent, Participant, Site

    limits = {**text_limits(Participant, {"study_id": "study_id"}),
              **text_limits(Site, {"site": "code"}),
              **text_limits(Consent, {"consent_version": "version"})}
    limits.update({c: None for c in frame.columns if c != "row" and c not in limits})
    rej = text_rejects(frame, limits, identifiers=("study_id", "site"))
    return [(int(r.row), str(r.column), str(r.value), str(r.reason))
            for r in rej.itertuples(index=False)]


def _write_row(frame: pd.DataFrame, i: int, inputs: list[str], user: Any, services: Any,
               result: ParticipantImportResult, notes: list[str], store_error: type
               ) -> list[tuple[int, str, str, str]]:
    """Row ``i`` through the services inside a savepoint; returns its reject lines (the
    savepoint is rolled back when there are any)."""
    from django.db import transaction

    sid = frame["study_id"].iat[i]
    given = {c: _cell(frame, c, i) for c in inputs if _cell(frame, c, i) != ""}
    version, cdate = (_cell(frame, c, i) for c in CONSENT_COLUMNS)
    day0 = _cell(frame, ENROLMENT_COLUMN, i)
    screening_date = frame["screening_date"].iat[i]
    step = "screen"
    try:
        with transaction.atomic():
            services.screen_participant(
                study_id=sid, site=frame["site"].iat[i], sex=frame["sex"].iat[i],
                year_of_birth=frame["year_of_birth"].iat[i], etiology=frame["etiology"].iat[i],
                screening_date=screening_date, screening_data=given, user=user)
            assessment = None
            if version:
                step = "consent"
                services.record_consent(participant=sid, version=version, date=cdate, user=user)
                step = "eligibility"
                assessment = services.assess_eligibility(
                    participant=sid, assessed_on=_later(screening_date, cdate), user=user)
            if assessment is not None and assessment.eligible is False:
                result.screen_failed += 1
                notes.append(f"{sid}: screen failed ({_failed_criteria(assessment)})"
                             + (": not enrolled" if day0 else ""))
            elif day0:
                step = "enrol"
                services.enrol_participant(participant=sid, enrolment_date=day0, user=user)
                result.enrolled += 1
            else:
                result.screened_only += 1
                if assessment is None:
                    notes.append(f"{sid}: screened; no consent recorded, so no eligibility "
                                 "assessment yet")
                elif assessment.eligible is None:
                    notes.append(f"{sid}: screened; eligibility undecided (no value for "
                                 f"{_undecided(assessment)})")
    except store_error as exc:
        if step == "enrol" and assessment is not None and assessment.eligible is None:
            return [(int(frame["row"].iat[i]), ENROLMENT_COLUMN, day0,
                     f"cannot enrol: eligibility undecided (no value for "
                     f"{_undecided(assessment)})")]
        return _rejects_of(exc, step=step, frame=frame, i=i, given=given)
    result.created += 1
    result.participants_created += 1
    return []
