"""``import visits``: a wide file (one row per participant-visit) through an import map.

The map (:class:`hepatrial.protocol.importmap.VisitImportMap`) says which column holds the
participant id, the participant-level fields (site, arm, sex, age, etiology, status, status day),
the visit day and the lab columns with their units. Participants and visits are created as
needed; visit codes come from the protocol's windows (:meth:`Protocol.assign_visits`); rows in
no window or second rows in a window are kept as unscheduled visits, stored with code
``UNS-D<day>`` (a participant can have several; the analysis dataset shows them as ``UNS`` with
``nominal_day`` = actual day). No row is dropped.

The file holds days since enrolment, not dates: day 0 is ``day0`` (default
:data:`DEFAULT_DAY0`, an arbitrary anchor), so actual dates are ``day0 + day`` and the exported
``actual_day`` is the file's day exactly.

Clinical columns of the map (``[[clinical]]``) are decoded and stored in the visit's
``ClinicalAssessment`` (:data:`CLINICAL_FIELDS` says which map field goes to which store field;
items the file does not give stay NULL = not assessed). A map field the store has no place for
refuses the import (nothing is dropped). On re-import a stored item that differs from the file
is a change and needs ``--reason``; a missing cell never erases a stored value.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hepatrial.ingest.report import ImportResult
from hepatrial.ingest.validate import (
    ImportFileError,
    number_reasons,
    parse_numbers,
    read_text_csv,
    rejects_frame,
    text_rejects,
)

__all__ = ["CLINICAL_FIELDS", "DEFAULT_DAY0", "UNSCHEDULED_PREFIX", "import_visits",
           "prepare_visits"]

DEFAULT_DAY0 = _dt.date(2000, 1, 1)
UNSCHEDULED_PREFIX = "UNS-D"

#: (map ``[[clinical]]`` field, map type) -> ``ClinicalAssessment`` field. Ascites given as
#: yes/no is kept apart from the Child-Pugh grade (none/slight/moderate), so no grade is invented.
CLINICAL_FIELDS: dict[tuple[str, str], str] = {
    ("ascites", "bool"): "ascites_present",
    ("ascites", "category"): "ascites",
    ("encephalopathy", "category"): "encephalopathy",
    ("hepatomegaly", "bool"): "hepatomegaly",
    ("spider_angiomata", "bool"): "spider_angiomata",
    ("spiders", "bool"): "spider_angiomata",
    ("edema", "category"): "edema",
    ("histologic_stage", "int"): "histologic_stage",
}
#: store fields of a clinical assessment an import can fill (nullable: None = not assessed)
CLINICAL_STORE_FIELDS: tuple[str, ...] = (
    "ascites", "encephalopathy", "ascites_present", "hepatomegaly", "spider_angiomata", "edema",
    "histologic_stage",
)


def clinical_targets(imap: Any) -> list[tuple[Any, str, Any]]:
    """``(map entry, store field, check)`` for each ``[[clinical]]`` entry of the map; ``check``
    raises ValueError for a decoded value the store field cannot hold. ImportFileError for an
    entry the store has no field for (it would otherwise be dropped)."""
    from hepatrial.trials.models import ClinicalAssessment

    out = []
    bad = []
    for c in imap.clinical:
        target = CLINICAL_FIELDS.get((c.field, c.type))
        if target is None:
            bad.append(f"{c.column} -> {c.field} ({c.type})")
            continue
        f = ClinicalAssessment._meta.get_field(target)
        allowed = {k for k, _ in f.choices} if f.choices else None

        def check(v: Any, _f: Any = f, _allowed: Any = allowed, _c: Any = c) -> None:
            if _allowed is not None and v not in _allowed:
                raise ValueError(f"{v!r} is not one of {', '.join(sorted(_allowed))}")
            if _f.get_internal_type() == "BooleanField" and not isinstance(v, bool):
                raise ValueError(f"{v!r} is not true/false")
            if _f.name == "histologic_stage" and not (
                    isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4):
                raise ValueError(f"{v!r} is not a histologic stage 1-4")

        out.append((c, target, check))
    if bad:
        known = ", ".join(f"{f} ({t})" for f, t in CLINICAL_FIELDS)
        raise ImportFileError("the store has no field for clinical column(s) "
                              + "; ".join(bad) + f" (known: {known})")
    return out


def _rej(rows: Any, column: str, values: Any, reason: Any) -> pd.DataFrame:
    rows = np.asarray(rows)
    if len(rows) == 0:
        return pd.DataFrame(columns=["row", "column", "value", "reason"])
    return pd.DataFrame({"row": rows, "column": column, "value": values, "reason": reason})


def _load_map(map_name: str | Path) -> Any:
    from hepatrial.protocol.importmap import load_import_map
    from hepatrial.protocol.loader import ProtocolError, ProtocolNotFoundError

    try:
        return load_import_map(map_name)
    except (ProtocolError, ProtocolNotFoundError) as exc:
        raise ImportFileError(f"import map {map_name}: {exc}") from None


def _decode_column(frame: pd.DataFrame, fm: Any, missing: tuple[str, ...], name: str
                   ) -> tuple[pd.Series, pd.DataFrame]:
    """Decode a FieldMap over the whole column (each distinct text once)."""
    if fm.column is None:
        const = pd.Series([fm.value] * len(frame), index=frame.index, dtype=object)
        return const, _rej([], "", [], [])
    col = frame[fm.column]
    decoded: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for text in col.unique():
        try:
            decoded[text] = fm.decode(text, missing)
        except ValueError as exc:
            errors[text] = f"{name}: {exc}"
    out = col.map(decoded)
    bad = col.isin(list(errors))
    rej = _rej(frame.loc[bad, "row"], fm.column, col[bad], col[bad].map(errors))
    return out, rej


def _number_column(frame: pd.DataFrame, column: str, missing: tuple[str, ...], what: str, *,
                   whole: bool = False, lo: float | None = None, hi: float | None = None,
                   lo_open: bool = False, unit: str = ""
                   ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """A numeric column (missing cells NaN): ``(values, bad, rejects)``.

    The one number rule (:func:`hepatrial.ingest.validate.number_reasons`), then a whole
    number when ``whole``, then inside ``lo``..``hi`` (``lo_open``: more than ``lo``). Bad
    cells are NaN in ``values``."""
    text = frame[column]
    present = ~text.isin(missing).to_numpy()
    given = text.where(present, "")
    num, bad_num = parse_numbers(given)
    why = number_reasons(given, bad_num)
    reason = pd.Series(None, index=frame.index, dtype=object)
    reason[why.notna().to_numpy()] = f"{what}: " + why[why.notna()]
    ok = present & why.isna().to_numpy() & np.isfinite(num)
    if whole:
        frac = ok & (np.mod(np.where(ok, num, 0), 1) != 0)
        reason[frac] = f"{what} is not a whole number"
        ok &= ~frac
    suffix = f" {unit}" if unit else ""

    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"

    if lo is not None:
        low = ok & ((num <= lo) if lo_open else (num < lo))
        reason[low] = [f"{what} {fmt(v)}{suffix} is not plausible (it must be "
                       f"{'more than' if lo_open else 'at least'} {fmt(lo)}{suffix})"
                       for v in num[low]]
        ok &= ~low
    if hi is not None:
        high = ok & (num > hi)
        reason[high] = [f"{what} {fmt(v)}{suffix} is not plausible (at most {fmt(hi)}{suffix})"
                        for v in num[high]]
        ok &= ~high
    bad = reason.notna().to_numpy()
    rej = _rej(frame.loc[bad, "row"], column, text[bad], reason[bad])
    return np.where(ok, num, np.nan), bad, rej


def _day_range(day0: _dt.date) -> tuple[int, int]:
    """The study days that give a calendar date from ``day0`` (Python's date range)."""
    return (_dt.date.min - day0).days, (_dt.date.max - day0).days


#: plausible age in years at enrolment: more than 0, at most 120 (the oldest verified ages
#: are just over 120; an age of 0 or below is a missing or mistyped value)
AGE_YEARS: tuple[float, float] = (0.0, 120.0)


def prepare_visits(frame: pd.DataFrame, imap: Any, protocol: Any, *, day0: _dt.date,
                   stored_days: dict[str, dict[int, str]] | None = None,
                   today: _dt.date | None = None,
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame,
                              pd.DataFrame]:
    """Validate a wide visits table and reshape it (pandas; the store is read only for the
    clinical fields' allowed values).

    ``stored_days``: per participant, the study days of its stored visits and their codes. A
    row is identified by participant and day: a day already stored keeps its stored visit
    (so re-sending rows - a file imported batch by batch - finds them unchanged); the other
    days are assigned by the protocol's windows among the visits whose stored day the file
    does not repeat (a scheduled visit given a new day is a corrected day: a change that needs
    a reason).

    Rules, each reported on the row and column it concerns: every number by the one number
    rule; the visit day a whole number giving a calendar date, not in the future (``today``)
    and not before day 0 unless the row is a screening visit
    (:func:`hepatrial.trials.validators.visit.visit_date_columns`); a participant's fields by
    the store's participant rules (:func:`hepatrial.trials.validators.participant.
    participant_columns`: id, sex, etiology, year of birth from the age, 1900 or later and
    not after day 0) and the text rules (an id the store can hold and no spreadsheet formula);
    age plausible (:data:`AGE_YEARS`); the status day a whole number, not before day 0 (a
    death before enrolment) nor in the future; no visit after a death.

    Returns ``(participants, visits, labs, clinical, rejects)``:

    * participants: one row per id with the decoded fields (``study_id, site, arm, sex, age,
      etiology, status, status_day, first_row``);
    * visits: ``row, study_id, day, code, nominal_day, scheduled, label, window_lower,
      window_upper, actual_date``;
    * labs: long rows in the lab-import shape (``row, participant, visit, analyte, value, unit,
      value_canonical, unit_canonical, date_parsed, column``) - one per non-missing cell;
    * clinical: ``row, study_id, visit`` + one column per store field of the map's clinical
      entries (None = missing cell), one row per file row with at least one value;
    * rejects: every problem (row, column, value, reason).
    """
    from hepatrial.ingest.catalog import registry_catalog
    from hepatrial.ingest.importer import lab_text_limits

    missing = tuple(imap.missing_values)
    stored_days = stored_days or {}
    today = today or _dt.date.today()
    parts: list[pd.DataFrame] = []
    pid_col = imap.participant.id
    ids = frame[pid_col]
    no_id = ids.isin(missing)
    parts.append(_rej(frame.loc[no_id, "row"], pid_col, ids[no_id], "missing participant id"))
    # control characters and formula-like ids (the id's length: the participant rule below)
    parts.append(text_rejects(frame.loc[~no_id.to_numpy()], {pid_col: None},
                              identifiers=(pid_col,)))

    day_col = imap.visit.day
    lo_day, hi_day = _day_range(day0)
    day_vals, day_bad, rej = _number_column(frame, day_col, missing, "visit day", whole=True)
    parts.append(rej)
    no_day = frame[day_col].isin(missing).to_numpy()
    parts.append(_rej(frame.loc[no_day, "row"], day_col, frame.loc[no_day, day_col],
                      "missing visit day"))
    no_date = np.isfinite(day_vals) & ((day_vals < lo_day) | (day_vals > hi_day))
    parts.append(_rej(frame.loc[no_date, "row"], day_col, frame.loc[no_date, day_col],
                      f"visit day gives no calendar date from day 0 = {day0} (--day0)"))
    day_bad = day_bad | no_day | no_date
    days = np.where(day_bad, 0, day_vals).astype(np.int64)

    # participant-level fields: decode, then constant within participant (the rules of a
    # participant-level value are reported on the participant's first row)
    first_rows = set(frame.loc[(~ids.duplicated(keep="first") & ~no_id).to_numpy(), "row"])

    def on_first(rej: pd.DataFrame) -> pd.DataFrame:
        return rej.loc[rej["row"].isin(first_rows).to_numpy()] if len(rej) else rej

    fields: dict[str, pd.Series] = {}
    for name, fm in imap.participant_fields().items():
        values, rej = _decode_column(frame, fm, missing, name)
        parts.append(rej)
        if name in ("age", "status_day") and fm.column is not None and not fm.codes:
            if name == "age":
                num, _b, rej = _number_column(frame, fm.column, missing, "age", lo=AGE_YEARS[0],
                                              hi=AGE_YEARS[1], lo_open=True, unit="years")
            else:
                num, _b, rej = _number_column(frame, fm.column, missing, "status day",
                                              whole=True, hi=hi_day)
                parts.append(on_first(_status_date_rules(frame, fm.column, num, day0, today)))
                num = np.where(num < 0, np.nan, num)
            parts.append(on_first(rej))
            values = pd.Series(num, index=frame.index)
        fields[name] = values
        if fm.column is not None:
            text = frame[fm.column]
            first_text = text.groupby(ids).transform("first")
            first_row = frame["row"].groupby(ids).transform("first")
            differs = (text != first_text).to_numpy() & ~no_id.to_numpy()
            parts.append(_rej(
                frame.loc[differs, "row"], fm.column, text[differs],
                "participant-level value differs from row " + first_row[differs].astype(str)
                + " of the same participant (" + first_text[differs] + ")"))
    parts.append(_participant_rules(frame, imap, fields, ids, no_id, day0, today))

    dup = pd.DataFrame({"id": ids, "day": days}).duplicated(keep="first").to_numpy() & ~day_bad
    if dup.any():
        first = frame["row"].groupby([ids, days]).transform("first")
        parts.append(_rej(frame.loc[dup, "row"], day_col, frame.loc[dup, day_col],
                          "duplicate of row " + first[dup].astype(str)
                          + " (same participant and day)"))

    # labs: each mapped column, missing cells are no measurement
    catalog = registry_catalog()
    value_max = lab_text_limits()["value"]
    lab_parts = []
    for a in imap.analytes:
        text = frame[a.column]
        present = ~text.isin(missing).to_numpy()
        given = text.where(present, "")
        num, bad_num = parse_numbers(given)
        why = number_reasons(given, bad_num)
        bad_present = why.notna().to_numpy()
        parts.append(_rej(frame.loc[bad_present, "row"], a.column, text[bad_present],
                          why[bad_present]))
        long = present & ~bad_present & (text.str.len() > (value_max or 10 ** 9)).to_numpy()
        parts.append(_rej(frame.loc[long, "row"], a.column, text[long],
                          f"is longer than {value_max} characters (the value is kept as "
                          "entered; write it with fewer digits)"))
        ok = present & ~bad_present & ~long
        conv = np.full(len(frame), np.nan)
        if ok.any():
            c, errs = catalog.convert(a.analyte, a.unit, num[ok])
            conv[ok] = c
            errs = np.asarray(errs, dtype=object)
            has = np.array([e is not None for e in errs], dtype=bool)
            if has.any():
                pos = np.flatnonzero(ok)[has]
                parts.append(_rej(frame["row"].to_numpy()[pos], a.column,
                                  text.to_numpy()[pos], errs[has]))
        lab_parts.append(pd.DataFrame({
            "row": frame["row"].to_numpy()[ok], "participant": ids.to_numpy()[ok],
            "day": days[ok], "analyte": a.analyte, "value": text.to_numpy()[ok],
            "unit": a.unit, "value_canonical": conv[ok],
            "unit_canonical": catalog.canonical_unit(a.analyte), "column": a.column}))

    clin_values: dict[str, list[Any]] = {}
    for c, target, check in clinical_targets(imap):
        text = frame[c.column]
        errors: dict[str, str] = {}
        decoded: dict[str, Any] = {}
        for t in text.unique():
            try:
                v = c.decode(t, missing)
                if v is not None:
                    check(v)
                decoded[t] = v
            except ValueError as exc:
                errors[t] = str(exc)
        bad = text.isin(list(errors))
        parts.append(_rej(frame.loc[bad, "row"], c.column, text[bad], text[bad].map(errors)))
        clin_values[target] = [decoded.get(t) for t in text]

    # visit assignment per participant (only meaningful when ids/days are valid)
    base = pd.DataFrame({"row": frame["row"].to_numpy(), "study_id": ids.to_numpy(),
                         "day": days})
    base = base.loc[~no_id.to_numpy() & ~day_bad]
    assigned = []
    for sid, grp in base.groupby("study_id", sort=True):
        known = stored_days.get(str(sid), {})
        # codes of stored visits whose day the file repeats are taken; a stored visit whose
        # day the file no longer has may be given to a new day (a corrected day: a change)
        file_days = {int(d) for d in grp["day"]}
        taken = {code for d, code in known.items() if d in file_days}
        rest = [(row, day) for row, day in zip(grp["row"], grp["day"], strict=True)
                if int(day) not in known]
        by_row = dict(zip((r for r, _ in rest),
                          protocol.assign_visits([d for _, d in rest]), strict=True))
        for row, day in zip(grp["row"], grp["day"], strict=True):
            day = int(day)
            code = known.get(day)
            if code is None:
                va = by_row[row]
                code = va.visit if va.scheduled and va.visit not in taken else None
            if code is not None and not code.startswith(UNSCHEDULED_PREFIX):
                pv = protocol.visit(code)
                assigned.append((row, sid, day, code, pv.target_day, True, pv.label,
                                 pv.window_lower, pv.window_upper))
            else:
                assigned.append((row, sid, day, f"{UNSCHEDULED_PREFIX}{day}", day, False,
                                 f"Unscheduled (day {day})", 0, 0))
    visits = pd.DataFrame(assigned, columns=["row", "study_id", "day", "code", "nominal_day",
                                             "scheduled", "label", "window_lower",
                                             "window_upper"])
    visits["actual_date"] = [day0 + _dt.timedelta(days=int(d)) for d in visits["day"]]
    parts.append(_visit_date_rules(frame, visits, day_col, day0, today))
    parts.append(_after_death(frame, visits, fields, imap, day_col))
    rejects = rejects_frame(parts)

    labs = pd.concat(lab_parts, ignore_index=True) if lab_parts else pd.DataFrame()
    code_of = dict(zip(visits["row"], visits["code"], strict=True))
    labs = labs.loc[labs["row"].isin(code_of.keys())].copy()
    labs["visit"] = labs["row"].map(code_of)
    labs["date_parsed"] = pd.to_datetime(
        [day0 + _dt.timedelta(days=int(d)) for d in labs["day"]])
    labs = labs.sort_values(["row", "analyte"], kind="mergesort").reset_index(drop=True)

    clinical = pd.DataFrame({"row": frame["row"].to_numpy(), "study_id": ids.to_numpy(),
                             **{k: pd.Series(v, dtype=object) for k, v in clin_values.items()}})
    if clin_values:
        some = np.zeros(len(clinical), dtype=bool)
        for k in clin_values:
            some |= clinical[k].notna().to_numpy()
        clinical = clinical.loc[some & clinical["row"].isin(code_of.keys()).to_numpy()]
    else:
        clinical = clinical.iloc[0:0]
    clinical = clinical.assign(visit=clinical["row"].map(code_of)).reset_index(drop=True)

    first_idx = ~ids.duplicated(keep="first") & ~no_id
    ppl = pd.DataFrame({"study_id": ids[first_idx].to_numpy(),
                        "first_row": frame.loc[first_idx, "row"].to_numpy()})
    for name, values in fields.items():
        ppl[name] = values[first_idx].to_numpy()
    return ppl, visits, labs, clinical, rejects


def _status_date_rules(frame: pd.DataFrame, column: str, num: np.ndarray, day0: _dt.date,
                       today: _dt.date) -> pd.DataFrame:
    """The status date (day 0 + status day) is not before enrolment (a death or a transplant
    before day 0 cannot be: ``services.change_status`` refuses it too) and not in the
    future."""
    before = np.isfinite(num) & (num < 0)
    limit = (today - day0).days
    future = np.isfinite(num) & (num > limit)
    return rejects_frame([
        _rej(frame.loc[before, "row"], column, frame.loc[before, column],
             [f"status day {int(v)} is before enrolment (day 0): the status date cannot be "
              "before day 0" for v in num[before]]),
        _rej(frame.loc[future, "row"], column, frame.loc[future, column],
             [f"status day {int(v)} is {day0 + _dt.timedelta(days=int(v))}, in the future "
              f"(today is {today}; day 0 = {day0}, --day0)" for v in num[future]])])


def _participant_rules(frame: pd.DataFrame, imap: Any, fields: dict[str, pd.Series],
                       ids: pd.Series, no_id: pd.Series, day0: _dt.date, today: _dt.date
                       ) -> pd.DataFrame:
    """The store's participant rules on each participant's first row (year of birth from the
    age at day 0), reported on the column the field comes from."""
    from hepatrial.trials.validators.participant import participant_columns

    first = (~ids.duplicated(keep="first") & ~no_id).to_numpy()
    if not first.any():
        return _rej([], "", [], [])
    p = imap.participant_fields()
    col_of = {"study_id": imap.participant.id}
    for name in ("sex", "etiology", "site"):
        if name in p and p[name].column is not None:
            col_of[name] = p[name].column
    age_fm = p.get("age")
    if age_fm is not None and age_fm.column is not None:
        col_of["year_of_birth"] = age_fm.column
    age = pd.to_numeric(fields["age"], errors="coerce").to_numpy(dtype=float) if (
        "age" in fields) else np.full(len(frame), np.nan)
    yob = [day0.year - int(np.floor(a)) if np.isfinite(a) else None for a in age[first]]
    _typed, problems = participant_columns(
        study_id=ids[first].to_numpy(), sex=_values(fields, "sex", first),
        year_of_birth=yob, etiology=_values(fields, "etiology", first), screening_date=day0,
        today=today)
    rows = frame["row"].to_numpy()[first]
    out = []
    for i, name, why in problems.items():
        if name == "year_of_birth" and "year_of_birth" not in col_of:
            continue  # the map gives no age: the year of birth is not known
        if name == "year_of_birth" and yob[i] is None and np.isnan(age[first][i]):
            present = age_fm is not None and age_fm.column is not None and frame[
                age_fm.column].to_numpy()[first][i] not in tuple(imap.missing_values)
            if present:
                continue  # a bad age cell is reported by the age rule
            why = "missing age (the year of birth is required)"
        elif name == "year_of_birth":
            why = f"age {age[first][i]:g} at day 0 = {day0} gives year of birth {yob[i]}: {why}"
        if name in ("sex", "etiology") and name not in col_of:
            continue  # a constant of the map, checked against the protocol
        col = col_of.get(name, "--day0" if name == "screening_date" else name)
        value = frame[col].to_numpy()[first][i] if col in frame.columns else str(day0)
        out.append((int(rows[i]), col, value, why))
    return pd.DataFrame(out, columns=["row", "column", "value", "reason"])


def _values(fields: dict[str, pd.Series], name: str, mask: np.ndarray) -> Any:
    if name not in fields:
        return None
    return fields[name].to_numpy(dtype=object)[mask]


def _visit_date_rules(frame: pd.DataFrame, visits: pd.DataFrame, day_col: str, day0: _dt.date,
                      today: _dt.date) -> pd.DataFrame:
    """The store's visit-date rules (not in the future, not before day 0 unless a screening
    visit) on every visit of the file; reported on the day column."""
    from hepatrial.trials.validators.visit import visit_date_columns

    if visits.empty:
        return _rej([], "", [], [])
    # an unscheduled visit before day 0 is no screening visit: judged with nominal day 0
    nominal = np.where(visits["scheduled"].to_numpy(dtype=bool),
                       visits["nominal_day"].to_numpy(), 0)
    _d, problems = visit_date_columns(actual_date=visits["actual_date"].to_numpy(dtype=object),
                                      enrolment_date=day0, nominal_day=nominal, today=today)
    text = dict(zip(frame["row"], frame[day_col], strict=True))
    out = []
    for i, _name, why in problems.items():
        r = visits.iloc[i]
        out.append((int(r["row"]), day_col, text[r["row"]],
                    f"visit day {int(r['day'])} is {r['actual_date']} (day 0 = {day0}, "
                    f"--day0): {why}"))
    return pd.DataFrame(out, columns=["row", "column", "value", "reason"])


def _after_death(frame: pd.DataFrame, visits: pd.DataFrame, fields: dict[str, pd.Series],
                 imap: Any, day_col: str) -> pd.DataFrame:
    """No visit after the day a participant died (status ``died`` on the status day)."""
    if visits.empty or "status" not in fields or "status_day" not in fields:
        return _rej([], "", [], [])
    ids = frame[imap.participant.id]
    status = fields["status"].groupby(ids).transform("first")
    sday = pd.to_numeric(fields["status_day"], errors="coerce").groupby(ids).transform("first")
    died = dict(zip(frame["row"], (status == "died").to_numpy(), strict=True))
    death_day = dict(zip(frame["row"], sday.to_numpy(dtype=float), strict=True))
    text = dict(zip(frame["row"], frame[day_col], strict=True))
    out = []
    for r in visits.itertuples(index=False):
        d = death_day[r.row]
        if died[r.row] and np.isfinite(d) and r.day > d:
            out.append((int(r.row), day_col, text[r.row],
                        f"visit on day {r.day} is after the participant's death on day "
                        f"{int(d)}"))
    return pd.DataFrame(out, columns=["row", "column", "value", "reason"])


# --------------------------------------------------------------------------- import


def _participant_objs(ppl: pd.DataFrame, *, day0: _dt.date, source: str) -> list[Any]:
    from hepatrial.trials.models import Arm, Participant, Site

    sites = dict(Site.objects.values_list("code", "id"))
    arms = dict(Arm.objects.values_list("code", "id"))
    objs = []
    for r in ppl.to_dict("records"):
        age = r.get("age")
        age = None if age is None or pd.isna(age) else float(age)
        yob = (day0.year - int(np.floor(age))) if age is not None else None
        status = r.get("status") or "enrolled"
        sday = r.get("status_day")
        sdate = day0 + _dt.timedelta(days=int(sday)) if sday is not None and not pd.isna(
            sday) else day0
        data: dict[str, Any] = {"source": source}
        if age is not None:
            data["age"] = age
        objs.append(Participant(
            study_id=str(r["study_id"]), site_id=sites[r["site"]], sex=r.get("sex") or "",
            year_of_birth=yob, etiology=r.get("etiology") or "other", screening_date=day0,
            screening_data=data, status=status, status_date=sdate,
            status_reason=f"imported from {source}", arm_id=arms[r["arm"]],
            enrolment_date=day0))
    return objs


def import_visits(
    path: str | Path,
    map_name: str | Path,
    *,
    db: str | Path | None = None,
    dry_run: bool = False,
    reason: str | None = None,
    user: str | None = None,
    rejects_path: str | Path | None = None,
    day0: _dt.date | None = None,
    today: _dt.date | None = None,
) -> ImportResult:
    """Import a wide visits file through an import map; see the module docstring.

    Raises :class:`ImportRefused` (nothing written) on any rejected row or on changes to
    stored values without ``reason``; ``RecordLocked`` when a lock covers what the file writes;
    ``NotFoundError``/``PermissionDenied`` for ``user``. ``today`` (default: today) is the
    reference of the not-in-the-future rules.
    """
    from hepatrial.ingest import importer as imp

    t0 = time.perf_counter()
    path = Path(path)
    target = imp.rejects_target(path, rejects_path, dry_run)
    day0 = day0 or DEFAULT_DAY0
    imap = _load_map(map_name)
    if imap.participant.extra:
        raise ImportFileError(
            f"import map {map_name}: participant field(s) {', '.join(imap.participant.extra)} "
            "have no place in the store (they would be dropped): remove them from the map or "
            "list their columns in ignore_columns")
    frame = read_text_csv(path, lower=False)
    issues = imap.check_header([c for c in frame.columns if c != "row"])
    if issues:
        raise ImportFileError(f"{path} does not fit map {map_name}: "
                              + "; ".join(str(i) for i in issues))
    imp._setup(db)
    acting = imp.acting_user(user, create_system=not dry_run)
    result = ImportResult(rows=len(frame), dry_run=dry_run)
    try:
        with imp.import_transaction(dry_run):
            _import_visits(path, map_name, frame, imap, result, day0=day0, reason=reason,
                           user=acting, dry_run=dry_run, today=today, rejects_path=target)
    except imp.ImportRefused as exc:
        raise imp.finish_refusal(exc, target) from None
    result.seconds = time.perf_counter() - t0
    return result


def _stored_days(ids: list[str]) -> dict[str, dict[int, str]]:
    """Per participant of ``ids``: study day -> code of each stored visit with a date."""
    from hepatrial.trials.models import Visit

    out: dict[str, dict[int, str]] = {}
    for i in range(0, len(ids), 5000):
        for sid, code, actual, day0 in Visit.objects.filter(
                participant__study_id__in=ids[i:i + 5000], actual_date__isnull=False,
                participant__enrolment_date__isnull=False).values_list(
                    "participant__study_id", "code", "actual_date",
                    "participant__enrolment_date"):
            out.setdefault(sid, {}).setdefault((actual - day0).days, code)
    return out


def _import_visits(path: Path, map_name: str | Path, frame: pd.DataFrame, imap: Any,
                   result: ImportResult, *, day0: _dt.date, reason: str | None, user: Any,
                   dry_run: bool, today: _dt.date | None, rejects_path: Path | None) -> None:
    from hepatrial.ingest import importer as imp

    index = imp.StoreIndex.load()
    protocol = index.protocol
    issues = imap.check_against(protocol)
    if issues:
        raise ImportFileError(f"map {map_name} does not fit the store's protocol "
                              f"{protocol.name}: " + "; ".join(str(i) for i in issues))
    ids = sorted(set(frame[imap.participant.id]) & set(index.participants))
    ppl, visits, labs, clinical, rejects = prepare_visits(
        frame, imap, protocol, day0=day0, stored_days=_stored_days(ids), today=today)
    if not rejects.empty:
        n = rejects["row"].nunique()
        raise imp._refuse(rejects, rejects_path,
                          f"{n} of {len(frame)} rows rejected; nothing was imported", result)

    # compare participants and visits with the store
    reason = (reason or "").strip() or None
    change_rej, p_changes, v_changes = _diff_structure(ppl, visits, day0=day0)
    new_ppl = ppl.loc[~ppl["study_id"].isin(index.participants.keys())]
    vkeys = list(zip(visits["study_id"], visits["code"], strict=True))
    new_visits = visits.loc[[k not in index.visits for k in vkeys]]
    labs_plan = imp.plan_labs(labs, index.visits, has_lab_column=False)
    if not labs_plan.changed.empty:
        rej = imp._changes_need_reason(labs_plan.changed)
        rej["column"] = labs_plan.changed["column"].to_numpy()
        change_rej.append(rej)
    clin_new, clin_changed, clin_same, clin_rej = _plan_clinical(clinical, index.visits)
    change_rej.append(clin_rej)
    changes = rejects_frame(change_rej)
    if not changes.empty and reason is None:
        raise imp._refuse(changes, rejects_path,
                          f"{changes['row'].nunique()} row(s) differ from stored values and no "
                          "--reason was given; nothing was imported", result)
    result.created = len(labs_plan.new)
    result.changed = len(labs_plan.changed) + len(p_changes) + len(v_changes)
    result.unchanged = labs_plan.unchanged
    result.participants_created = len(new_ppl)
    result.visits_created = len(new_visits)
    result.clinical_created = len(clin_new)
    result.clinical_changed = len(clin_changed)
    result.clinical_unchanged = clin_same
    if (labs_plan.new.empty and changes.empty and new_ppl.empty and new_visits.empty
            and clin_new.empty):
        if len(frame):
            result.notes.append("every row is already stored unchanged: nothing to import")
        return
    stored_pids = [index.participants[s] for s in ppl["study_id"] if s in index.participants]
    touched_visits = [index.visits[k] for k in vkeys if k in index.visits]
    imp.refuse_locked(stored_pids, touched_visits, f"import visits {path.name}")
    if dry_run:
        return

    from hepatrial.trials import audit
    from hepatrial.trials.models import Participant, Visit

    why = f"import visits {path.name}"
    created = audit.bulk_create(Participant, _participant_objs(new_ppl, day0=day0,
                                                                source=path.name),
                                user=user, reason=why)
    pids = dict(index.participants)
    pids.update({p.study_id: p.pk for p in created})
    vobjs = [Visit(participant_id=pids[r.study_id], code=r.code, label=r.label,
                   nominal_day=int(r.nominal_day), window_lower=int(r.window_lower),
                   window_upper=int(r.window_upper),
                   scheduled_date=(day0 + _dt.timedelta(days=int(r.nominal_day))
                                   if r.scheduled else None),
                   actual_date=r.actual_date, status="in_window")
             for r in new_visits.itertuples(index=False)]
    vcreated = audit.bulk_create(Visit, vobjs, user=user, reason=why)
    vids = dict(index.visits)
    vids.update({(r.study_id, r.code): o.pk for r, o in
                 zip(new_visits.itertuples(index=False), vcreated, strict=True)})
    if p_changes:
        _apply_participant_changes(p_changes, reason=reason, user=user)
    if v_changes:
        objs = []
        vis = {o.pk: o for o in Visit.objects.filter(pk__in=[c[0] for c in v_changes])}
        for pk, actual in v_changes:
            o = vis[pk]
            o.actual_date = actual
            objs.append(o)
        audit.bulk_update(Visit, objs, ["actual_date"], reason=reason, user=user)
    new = labs_plan.new.assign(visit_id=[vids[k] for k in zip(
        labs_plan.new["participant"], labs_plan.new["visit"], strict=True)])
    imp.insert_labs(new, pids, reason=why, user=user)
    _insert_clinical(clin_new, pids, vids, reason=why, user=user)
    if reason is not None:
        imp._apply_changes(labs_plan.changed, reason=reason, user=user,
                           has_lab_column=False)
        _apply_clinical_changes(clin_changed, reason=reason, user=user)


def _clinical_columns(clinical: pd.DataFrame) -> list[str]:
    return [c for c in CLINICAL_STORE_FIELDS if c in clinical.columns]


def _plan_clinical(clinical: pd.DataFrame, visit_ids: dict[tuple[str, str], int]
                   ) -> tuple[pd.DataFrame, list[tuple[int, dict[str, Any]]], int,
                              pd.DataFrame]:
    """Split the file's clinical rows into new assessments, changes to stored ones (only items
    the file gives that differ; a missing cell never erases a stored value) and unchanged.

    Returns ``(new rows, [(assessment pk, {field: new value})], n unchanged, reject lines for
    the changes)``.
    """
    from hepatrial.trials.models import ClinicalAssessment

    cols = _clinical_columns(clinical)
    empty_rej = pd.DataFrame(columns=["row", "column", "value", "reason"])
    if clinical.empty:
        return clinical, [], 0, empty_rej
    vid = [visit_ids.get(k) for k in zip(clinical["study_id"], clinical["visit"], strict=True)]
    known = sorted({v for v in vid if v is not None})
    stored: dict[int, dict[str, Any]] = {}
    for i in range(0, len(known), 5000):
        for r in ClinicalAssessment.objects.filter(visit_id__in=known[i:i + 5000]).values(
                "id", "visit_id", *cols):
            stored[r["visit_id"]] = r
    is_new = np.array([v is None or v not in stored for v in vid], dtype=bool)
    changes, rej, same = [], [], 0
    for r, v in zip(clinical.loc[~is_new].to_dict("records"),
                    [v for v, n in zip(vid, is_new, strict=True) if not n], strict=True):
        s = stored[v]
        diff = {c: r[c] for c in cols if r[c] is not None and r[c] != s[c]}
        if diff:
            changes.append((s["id"], diff))
            rej.append((r["row"], ",".join(diff),
                        "; ".join(f"{c} {s[c]!r} -> {x!r}" for c, x in diff.items()),
                        "clinical assessment differs from the stored one: a change needs "
                        "--reason"))
        else:
            same += 1
    return (clinical.loc[is_new].reset_index(drop=True), changes, same,
            pd.DataFrame(rej, columns=["row", "column", "value", "reason"]))


def _insert_clinical(new: pd.DataFrame, pids: dict[str, int],
                     vids: dict[tuple[str, str], int], *, reason: str, user: Any) -> int:
    """Create the new clinical assessments, each with its history row and ledger entry (fast
    path of :func:`hepatrial.ingest.bulk.fast_create_with_history`)."""
    from django.utils import timezone

    from hepatrial.ingest.bulk import fast_create_with_history
    from hepatrial.trials.models import ClinicalAssessment

    if new.empty:
        return 0
    n = len(new)
    data: dict[str, list[Any]] = {
        "participant_id": [pids[s] for s in new["study_id"]],
        "visit_id": [vids[k] for k in zip(new["study_id"], new["visit"], strict=True)],
        "dialysis_last_week": [False] * n,
        "weight_kg": [None] * n,
    }
    for c in CLINICAL_STORE_FIELDS:
        data[c] = (list(new[c]) if c in new.columns else [None] * n)
    return fast_create_with_history(ClinicalAssessment, data, key_columns=("visit_id",),
                                    reason=reason, user_id=user.pk, date=timezone.now())


def _apply_clinical_changes(changes: list[tuple[int, dict[str, Any]]], *, reason: str,
                            user: Any) -> int:
    """Apply changed clinical items with ``reason`` (``audit.bulk_update``: ``~`` history rows
    and ledger entries)."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import ClinicalAssessment

    if not changes:
        return 0
    objs = {o.pk: o for o in ClinicalAssessment.objects.filter(pk__in=[c[0] for c in changes])}
    fields: set[str] = set()
    for pk, diff in changes:
        for k, v in diff.items():
            setattr(objs[pk], k, v)
            fields.add(k)
    return audit.bulk_update(ClinicalAssessment, [objs[pk] for pk, _ in changes],
                             sorted(fields), reason=reason, user=user)


_PARTICIPANT_FIELDS = ("site", "arm", "sex", "etiology", "status", "status_date", "age")


def _diff_structure(ppl: pd.DataFrame, visits: pd.DataFrame, *, day0: _dt.date
                    ) -> tuple[list[pd.DataFrame], list[tuple[int, dict[str, Any]]],
                               list[tuple[int, _dt.date]]]:
    """Compare participants (site, arm, sex, etiology, status, status date, age) and visit dates
    with the store; return reject lines for the differences and the changes to apply."""
    from hepatrial.trials.models import Participant, Visit

    stored = {p["study_id"]: p for p in Participant.objects.filter(
        study_id__in=ppl["study_id"].tolist()).values(
            "id", "study_id", "site__code", "arm__code", "sex", "etiology", "status",
            "status_date", "screening_data")}
    rej_rows, p_changes = [], []
    for r in ppl.to_dict("records"):
        s = stored.get(r["study_id"])
        if s is None:
            continue
        want = {"site": r.get("site"), "arm": r.get("arm"), "sex": r.get("sex"),
                "etiology": r.get("etiology"), "status": r.get("status") or s["status"]}
        sday = r.get("status_day")
        want["status_date"] = (day0 + _dt.timedelta(days=int(sday))
                               if sday is not None and not pd.isna(sday) else s["status_date"])
        have = {"site": s["site__code"], "arm": s["arm__code"], "sex": s["sex"],
                "etiology": s["etiology"], "status": s["status"],
                "status_date": s["status_date"]}
        age = r.get("age")
        if age is not None and not pd.isna(age):
            want["age"] = float(age)
            have["age"] = (s["screening_data"] or {}).get("age")
        diff = {k: v for k, v in want.items() if v is not None and v != have.get(k)}
        if diff:
            rej_rows.append((r["first_row"], ",".join(diff),
                             "; ".join(f"{k} {have.get(k)!r} -> {v!r}" for k, v in diff.items()),
                             "participant differs from the stored one: a change needs --reason"))
            p_changes.append((s["id"], diff))
    vstored = {(sid, code): (pk, ad) for sid, code, pk, ad in Visit.objects.filter(
        participant__study_id__in=ppl["study_id"].tolist()).values_list(
            "participant__study_id", "code", "id", "actual_date")}
    v_changes = []
    for r in visits.itertuples(index=False):
        s = vstored.get((r.study_id, r.code))
        if s is not None and s[1] != r.actual_date:
            rej_rows.append((r.row, "day", str(r.day),
                             f"visit {r.code} stored on {s[1]}, file says {r.actual_date}: "
                             "a change needs --reason"))
            v_changes.append((s[0], r.actual_date))
    parts = [pd.DataFrame(rej_rows, columns=["row", "column", "value", "reason"])]
    return parts, p_changes, v_changes


def _apply_participant_changes(changes: list[tuple[int, dict[str, Any]]], *, reason: str,
                               user: Any) -> None:
    from hepatrial.trials.models import Arm, Participant, Site

    sites = dict(Site.objects.values_list("code", "id"))
    arms = dict(Arm.objects.values_list("code", "id"))
    objs = {o.pk: o for o in Participant.objects.filter(pk__in=[c[0] for c in changes])}
    fields: set[str] = set()
    out = []
    for pk, diff in changes:
        o = objs[pk]
        for k, v in diff.items():
            if k == "site":
                o.site_id = sites[v]
                fields.add("site")
            elif k == "arm":
                o.arm_id = arms[v]
                fields.add("arm")
            elif k == "age":
                o.screening_data = {**(o.screening_data or {}), "age": v}
                fields.add("screening_data")
                # the year of birth is set from the age as at import (see _participant_objs)
                o.year_of_birth = o.screening_date.year - int(np.floor(v))
                fields.add("year_of_birth")
            else:
                setattr(o, k, v)
                fields.add(k)
        out.append(o)
    from hepatrial.trials import audit

    audit.bulk_update(Participant, out, sorted(fields), reason=reason, user=user)
