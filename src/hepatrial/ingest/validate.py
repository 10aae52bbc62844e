"""Whole-file validation of import files, before anything is written.

Pure pandas/numpy: no Django here. Every check runs over the whole file at once (vectorised), and
every problem is collected, so one run lists *all* the bad rows of a file instead of stopping at
the first one. The importers write nothing unless :attr:`Validation.ok` is true.

Row numbers in rejects are **1-based data row numbers**: the first row after the header is row 1
(in a file without quoted line breaks that is file line ``row + 1``).

Values are kept exactly as entered (``value_text``); the canonical conversion is carried alongside
in full float precision, never rounded.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np
import pandas as pd

from hepatrial import errors as _errors
from hepatrial.scores.numbers import NUMBER_PATTERN, number_problem
from hepatrial.textrules import utf8_problem
from hepatrial.trials.validators.participant import FIRST_YEAR_OF_BIRTH

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "LAB_COLUMNS",
    "REJECT_COLUMNS",
    "AnalyteCatalog",
    "ImportFileError",
    "Validation",
    "read_text_csv",
    "rejects_frame",
    "validate_labs",
]

#: Columns of a long-format lab file, in order; ``lab`` is optional.
LAB_COLUMNS: tuple[str, ...] = ("participant", "visit", "analyte", "value", "unit", "date", "lab")
LAB_REQUIRED: tuple[str, ...] = LAB_COLUMNS[:-1]

#: Columns of the rejects table (terminal and ``--rejects`` CSV).
REJECT_COLUMNS: tuple[str, ...] = ("row", "column", "value", "reason")

_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
#: no date a trial holds is earlier: the earliest year of birth the store accepts
#: (:data:`hepatrial.trials.validators.participant.FIRST_YEAR_OF_BIRTH`; pure, no Django)
EARLIEST_DATE = _dt.date(FIRST_YEAR_OF_BIRTH, 1, 1)


class ImportFileError(_errors.FileFormatError):
    """The file as a whole cannot be read (missing file, missing columns, not a CSV)."""


class AnalyteCatalog(Protocol):
    """What validation needs to know about analytes (adapter over ``hepatrial.protocol``)."""

    def codes(self) -> Collection[str]:
        """Known canonical analyte codes."""

    def units(self, code: str) -> Collection[str]:
        """Units accepted for ``code`` (display spellings, for messages)."""

    def accepts(self, code: str, unit: str) -> bool:
        """True when ``unit`` (as written in the file) is accepted for ``code``."""

    def convert(
        self, code: str, unit: str, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised conversion to the canonical unit.

        Returns ``(canonical_values, errors)`` where ``errors`` is an object array holding
        ``None`` for good values and a reason string (e.g. out of range) for bad ones.
        """

    def canonical_unit(self, code: str) -> str:
        """The canonical unit of ``code``."""


@dataclass
class Validation:
    """Outcome of validating a whole file.

    ``frame`` holds every row with the parsed columns (``row``, the text columns as entered,
    ``value_num``, ``value_canonical``, ``unit_canonical``, ``date_parsed``); ``rejects`` holds one
    line per problem (:data:`REJECT_COLUMNS`), sorted by row.
    """

    frame: pd.DataFrame
    rejects: pd.DataFrame = field(default_factory=lambda: rejects_frame([]))

    @property
    def ok(self) -> bool:
        """True when no row was rejected."""
        return self.rejects.empty

    @property
    def n_rejected_rows(self) -> int:
        """Number of distinct rejected rows."""
        return int(self.rejects["row"].nunique()) if not self.rejects.empty else 0


def rejects_frame(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate reject parts into one table sorted by row, then column order of appearance."""
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=("int64" if c == "row" else "object"))
                             for c in REJECT_COLUMNS})
    out = pd.concat(parts, ignore_index=True)[list(REJECT_COLUMNS)]
    out["row"] = out["row"].astype("int64")
    out["_order"] = np.arange(len(out))
    out = out.sort_values(["row", "_order"], kind="stable").drop(columns="_order")
    return out.reset_index(drop=True)


def _reject(frame: pd.DataFrame, mask: np.ndarray | pd.Series, column: str,
            reason: str | pd.Series) -> pd.DataFrame:
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return pd.DataFrame(columns=list(REJECT_COLUMNS))
    sub = frame.loc[mask]
    reasons = reason[mask] if isinstance(reason, pd.Series) else reason
    return pd.DataFrame({
        "row": sub["row"].to_numpy(),
        "column": column,
        "value": sub[column].to_numpy() if column in sub.columns else "",
        "reason": reasons if isinstance(reasons, str) else np.asarray(reasons, dtype=object),
    })


def csv_header(path: str | Path) -> list[str]:
    """The header of a CSV file as written (the first record, UTF-8 with or without BOM).

    Raises :class:`ImportFileError` for a missing file, a directory, an empty file or text that
    is not UTF-8. Duplicate names are kept (pandas would rename a second ``value`` to
    ``value.1``: use this to refuse them by name).
    """
    import csv

    path = Path(path)
    if not path.exists():
        raise ImportFileError(f"{path}: no such file")
    if not path.is_file():
        raise ImportFileError(f"{path}: not a file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise ImportFileError(f"{path}: {utf8_problem(path)}") from None
    except csv.Error as exc:
        raise ImportFileError(f"{path}: the header is not a CSV record ({exc})") from None
    if header is None or not any(h.strip() for h in header):
        raise ImportFileError(f"{path}: empty file (no header)")
    return header


def duplicate_names(names: Iterable[str]) -> list[str]:
    """Names that occur more than once (sorted)."""
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return sorted(n for n, k in seen.items() if k > 1)


def _ragged_rows(path: Path, n_fields: int, limit: int = 10) -> list[str]:
    """``row N (line L): has K fields`` for the first records whose field count differs from
    the header's (error path only: the csv module re-reads the file)."""
    import csv

    out = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        row, line = 0, reader.line_num + 1
        for record in reader:
            if record:
                row += 1
                if len(record) != n_fields:
                    out.append(f"row {row} (line {line}) has {len(record)} field(s)")
                    if len(out) >= limit:
                        break
            line = reader.line_num + 1
    return out


def read_text_csv(path: str | Path, required: Iterable[str] = (), *,
                  lower: bool = True, allowed: Iterable[str] | None = None) -> pd.DataFrame:
    """Read a CSV with every cell as text, exactly as entered (only surrounding blanks trimmed).

    Header names are stripped (and lower-cased unless ``lower=False``). Adds ``row`` (1-based
    data row number; a ``row`` column in the file is an error).

    The file as a whole is refused with :class:`ImportFileError` (naming what is wrong) when it
    is missing, empty or not UTF-8 (line and byte given); when its header repeats a column
    (checked on the header as written, so a second ``value`` is not silently read as
    ``value.1``), lacks a ``required`` column or - with ``allowed`` - has a column that is not
    allowed (nothing is ignored silently); when a record has more or fewer fields than the
    header (row and line given).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(path)
    raw = csv_header(path)
    names = [str(c).strip().lower() if lower else str(c).strip() for c in raw]
    dup = duplicate_names(names)
    if dup:
        raise ImportFileError(f"{path}: duplicate column(s) in header: {', '.join(dup)} "
                              "(each column may appear once)")
    if "row" in names:
        raise ImportFileError(f"{path}: a column may not be called 'row' (reserved)")
    if "" in names:
        raise ImportFileError(f"{path}: column {names.index('') + 1} of the header has no name")
    missing = [c for c in required if c not in names]
    if missing:
        raise ImportFileError(
            f"{path}: missing required column(s): {', '.join(missing)} "
            f"(found: {', '.join(names)})"
        )
    if allowed is not None:
        ok = list(allowed)
        unknown = [c for c in names if c not in ok]
        if unknown:
            raise ImportFileError(
                f"{path}: unknown column(s): {', '.join(unknown)} (a file may have only: "
                f"{', '.join(ok)}; nothing is ignored silently)")
    bad_rows: list[object] = []
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True,
                                             invalid_row_handler=lambda r: bad_rows.append(r)
                                             or "skip"),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        problem = utf8_problem(path)
        raise ImportFileError(f"{path}: {problem or f'not a readable CSV file ({exc})'}") from None
    if bad_rows:
        where = _ragged_rows(path, len(names)) or [f"{len(bad_rows)} record(s)"]
        raise ImportFileError(f"{path}: {'; '.join(where)}; the header has {len(names)} "
                              "fields (every row needs one field per column)")
    frame = _text_frame(table, names)
    frame.insert(0, "row", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame


def _text_frame(table: pa.Table, names: list[str]) -> pd.DataFrame:
    """The columns of an Arrow table of text as a frame of pandas' text dtype, blanks around
    each cell trimmed (``Series.str.strip``).

    With pandas' Arrow-backed ``str`` dtype (pandas 3) the columns stay in Arrow: trimmed
    there (``utf8_trim_whitespace``, what ``str.strip`` runs on that dtype), without the
    round trip through a million Python strings; otherwise (and for a file without rows,
    whose columns pandas leaves as ``object``) as object columns of Python strings."""
    import pyarrow.compute as pc

    dtype = pd.Series(np.array([""], dtype=object)).dtype  # what a column of text becomes
    if table.num_rows and isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return pd.DataFrame({
            n: pd.Series(pc.utf8_trim_whitespace(table.column(n).combine_chunks()), dtype=dtype)
            for n in names})
    frame = pd.DataFrame({n: table.column(n).to_numpy(zero_copy_only=False).astype(object)
                          for n in names})
    for col in frame.columns:
        frame[col] = frame[col].str.strip()
    return frame


def number_reasons(text: pd.Series, bad: np.ndarray | None = None) -> pd.Series:
    """For each cell that is given but is not a plain number (:mod:`hepatrial.scores.numbers`:
    no ``_``, no non-ASCII digits, no separators, no nan/inf, no overflow), the reason; None
    elsewhere (empty cells are not judged here). ``bad``: the mask :func:`parse_numbers`
    returned for ``text``, when the caller has it (else ``text`` is parsed here)."""
    if bad is None:
        bad = parse_numbers(text)[1]
    bad = bad & text.ne("").to_numpy()
    out = pd.Series(None, index=text.index, dtype=object)
    if bad.any():
        sub = text[bad]
        why = {t: number_problem(t) or f"{t!r} is too large to be a number"
               for t in sub.unique()}
        out[bad] = sub.map(why)
    return out


def parse_numbers(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse decimal numbers written as text; returns ``(values, bad_mask)``.

    The one number rule (:data:`hepatrial.scores.numbers.NUMBER_PATTERN`): plain decimals and
    exponent notation (``1.5``, ``-2``, ``1e3``); blanks, ``4_6``, non-ASCII digits, decimal
    commas, censored values (``<5``), nan/inf and values that overflow a double are bad.
    :func:`number_reasons` says why. Each distinct text is judged and parsed once (as a column
    of the same dtype, so by the same regular-expression engine and number parser).
    """
    codes, uniques = pd.factorize(text, use_na_sentinel=False)
    distinct = pd.Series(uniques)
    shape_ok = distinct.str.fullmatch(NUMBER_PATTERN).fillna(False).to_numpy(dtype=bool)
    values = pd.to_numeric(distinct.where(shape_ok, None), errors="coerce").to_numpy(
        dtype=float, copy=True)[codes]
    bad = ~np.isfinite(values)
    values[bad] = np.nan
    return values, bad


def parse_dates(text: pd.Series, *, today: _dt.date | None = None
                ) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse ISO ``YYYY-MM-DD`` dates; returns ``(dates, bad_mask, future_mask)``.

    Each distinct text is parsed once with :meth:`datetime.date.fromisoformat` (so
    ``0000-01-01`` and ``2024-02-30`` are bad, not a crash); dates before
    :data:`EARLIEST_DATE` are not dates a trial can hold (:func:`birth_rejects` says why) and
    come back as NaT without being marked bad.
    """
    codes, uniq = _distinct(text)
    days = [_iso_date(t) for t in uniq]
    bad = np.array([d is None for d in days], dtype=bool)[codes]
    usable = pd.to_datetime(pd.Series(
        [pd.Timestamp(d) if d is not None and d >= EARLIEST_DATE else pd.NaT for d in days],
        dtype=object))
    parsed = pd.Series(usable.to_numpy()[codes], index=text.index, name=text.name)
    limit = pd.Timestamp(today or _dt.date.today())
    future = (~bad) & (parsed > limit).fillna(False).to_numpy(dtype=bool)
    return parsed, bad, future


def _distinct(values: pd.Series) -> tuple[np.ndarray, list[object]]:
    """``(codes, uniques)`` with ``values[i] == uniques[codes[i]]`` (missing values kept as a
    value of their own): a rule judging each distinct value once, then taking each row's."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes, list(uniques)


def _iso_date(t: object) -> _dt.date | None:
    """The ISO ``YYYY-MM-DD`` date of a text (any year), None when it is none."""
    if isinstance(t, str) and _ISO_DATE.match(t):
        try:
            return _dt.date.fromisoformat(t)
        except ValueError:
            return None
    return None


def date_years(text: pd.Series) -> np.ndarray:
    """The year of each valid ISO date (any year, also before pandas' range), NaN elsewhere."""
    codes, uniq = _distinct(text)
    years = np.array([np.nan if (d := _iso_date(t)) is None else float(d.year) for t in uniq],
                     dtype=float)
    return years[codes]


def birth_rejects(frame: pd.DataFrame, column: str, dates_text: pd.Series, *,
                  birth_years: Mapping[str, int | None] | None, id_column: str = "participant"
                  ) -> pd.DataFrame:
    """Reject lines for dates before the participant was born (the year of birth), and for
    dates before :data:`EARLIEST_DATE` whatever the participant (no one in a trial was born
    before 1900, :data:`hepatrial.trials.validators.participant.FIRST_YEAR_OF_BIRTH`). Text
    that is not a date is left to the date rule."""
    years = date_years(dates_text)
    too_early = np.isfinite(years) & (years < EARLIEST_DATE.year)
    parts = [_reject(frame, too_early, column,
                     f"before {EARLIEST_DATE.year}: not a plausible date (no participant was "
                     f"born before {EARLIEST_DATE.year})")]
    if birth_years:
        codes, ids = _distinct(frame[id_column])  # each participant looked up once
        known = pd.Series([birth_years.get(i) for i in cast(list[str], ids)], dtype=object)
        yob = pd.to_numeric(known, errors="coerce").to_numpy(dtype=float)[codes]
        before = np.isfinite(years) & np.isfinite(yob) & (years < yob) & ~too_early
        if before.any():
            reason = pd.Series(None, index=frame.index, dtype=object)
            reason[before] = [f"before the participant was born (year of birth {int(y)})"
                              for y in yob[before]]
            parts.append(_reject(frame, before, column, reason))
    return rejects_frame(parts)


def text_rejects(frame: pd.DataFrame, limits: Mapping[str, int | None],
                 identifiers: Collection[str] = ()) -> pd.DataFrame:
    """Reject lines for text the store cannot hold, before anything is written, identically
    on SQLite and PostgreSQL (:func:`hepatrial.textrules.text_problem`: longer than the
    field's ``limits[column]``, a control character such as NUL; and for the ``identifiers``
    :func:`hepatrial.textrules.identifier_problem`: no leading ``= + - @``, tab or CR).
    Empty cells are left to the rules that need a value."""
    from hepatrial.textrules import (
        CONTROL_PATTERN,
        FORMULA_PATTERN,
        identifier_problem,
        text_problem,
    )

    parts = []
    for col, max_len in limits.items():
        if col not in frame.columns:
            continue
        text = frame[col]
        bad = np.array(text.str.contains(CONTROL_PATTERN, regex=True), dtype=bool)
        if max_len is not None:
            bad = bad | (text.str.len() > max_len).to_numpy(dtype=bool)
        ident = col in identifiers
        if ident:
            bad = bad | text.str.match(FORMULA_PATTERN).to_numpy(dtype=bool)
        if not bad.any():
            continue
        reason = pd.Series(None, index=frame.index, dtype=object)
        reason[bad] = [(identifier_problem(t, max_len) if ident and t else
                        text_problem(t, max_len)) for t in text[bad]]
        parts.append(_reject(frame, bad, col, reason))
    return rejects_frame(parts)


def _first_row_of_duplicate(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.Series]:
    """Mask of rows repeating an earlier row's key, and the earlier row's number."""
    dup = frame.duplicated(keys, keep="first").to_numpy()
    if not dup.any():
        return dup, pd.Series(dtype=object)
    first = frame.groupby(keys, sort=False, dropna=False)["row"].transform("min")
    return dup, first


def validate_labs(
    frame: pd.DataFrame,
    *,
    catalog: AnalyteCatalog,
    visits: Collection[str],
    participants: Collection[str] | None,
    participant_visits: Collection[tuple[str, str]] = (),
    today: _dt.date | None = None,
    extra_checks: Iterable[Callable[[pd.DataFrame], pd.DataFrame]] = (),
    birth_years: Mapping[str, int | None] | None = None,
    text_limits: Mapping[str, int | None] | None = None,
) -> Validation:
    """Validate a long-format lab table (as read by :func:`read_text_csv`).

    Checks, over every row: participant known (skipped when ``participants`` is None), visit code
    in ``visits`` (the protocol's) or an existing ``(participant, visit)`` pair in
    ``participant_visits`` (e.g. stored unscheduled visits), analyte known, unit accepted for
    that analyte, value a plain number (:func:`number_reasons`), value within the analyte's
    hard limits (by ``catalog.convert``), date a valid ISO date not in the future and not
    before the participant's year of birth (``birth_years``; never before 1900), text the
    store can hold (``text_limits``: column -> maximum length, :func:`text_rejects`), and no
    repeat of an earlier row's (participant, visit, analyte).
    """
    frame = frame.reset_index(drop=True)
    for col in LAB_COLUMNS:
        if col not in frame.columns:
            frame[col] = ""
    parts: list[pd.DataFrame] = []

    for col in ("participant", "visit", "analyte", "unit", "value", "date"):
        parts.append(_reject(frame, frame[col].eq("").to_numpy(), col, f"missing {col}"))

    present = frame["participant"].ne("")
    if participants is not None:
        known = frame["participant"].isin(set(participants))
        parts.append(_reject(frame, present & ~known, "participant", "unknown participant"))

    visit_set = set(visits)
    present = frame["visit"].ne("").to_numpy()
    visit_ok = frame["visit"].isin(visit_set).to_numpy()
    if participant_visits:
        pairs = pd.MultiIndex.from_arrays([frame["participant"], frame["visit"]])
        visit_ok = visit_ok | pairs.isin(list(participant_visits))
    parts.append(_reject(frame, present & ~visit_ok, "visit",
                         "unknown visit code (not in the protocol, and no such visit stored "
                         "for this participant)"))

    codes = set(catalog.codes())
    analyte_ok = frame["analyte"].isin(codes).to_numpy()
    parts.append(_reject(frame, frame["analyte"].ne("").to_numpy() & ~analyte_ok, "analyte",
                         "unknown analyte"))

    values, bad_num = parse_numbers(frame["value"])
    why_num = number_reasons(frame["value"], bad_num)
    parts.append(_reject(frame, why_num.notna().to_numpy(), "value", why_num))

    canonical = np.full(len(frame), np.nan)
    canon_unit = np.full(len(frame), "", dtype=object)
    unit_bad = np.zeros(len(frame), dtype=bool)
    range_reason = pd.Series(None, index=frame.index, dtype=object)
    ok_positions = np.flatnonzero(analyte_ok)
    grouped = frame.loc[analyte_ok, ["analyte", "unit"]].groupby(
        ["analyte", "unit"], sort=True).indices
    for (code, unit), idx in grouped.items():
        pos = ok_positions[idx]
        if not catalog.accepts(code, unit):
            if unit != "":
                unit_bad[pos] = True
            continue
        canon_unit[pos] = catalog.canonical_unit(code)
        ok_pos = pos[~bad_num[pos]]
        if len(ok_pos) == 0:
            continue
        conv, errors = catalog.convert(code, unit, values[ok_pos])
        canonical[ok_pos] = conv
        errors = np.asarray(errors, dtype=object)
        has_err = np.array([e is not None for e in errors], dtype=bool)
        if has_err.any():
            range_reason.iloc[ok_pos[has_err]] = errors[has_err]
    unit_reason = pd.Series(
        [f"unit not accepted for {a} (accepted: {', '.join(sorted(catalog.units(a)))})"
         if b else None for a, b in zip(frame["analyte"], unit_bad, strict=True)]
        if unit_bad.any() else [None] * len(frame), index=frame.index, dtype=object)
    parts.append(_reject(frame, unit_bad, "unit", unit_reason))
    parts.append(_reject(frame, range_reason.notna().to_numpy(), "value", range_reason))

    dates, bad_date, future = parse_dates(frame["date"], today=today)
    parts.append(_reject(frame, frame["date"].ne("").to_numpy() & bad_date, "date",
                         "not a valid date (expected YYYY-MM-DD)"))
    parts.append(_reject(frame, future, "date", "date is in the future"))
    parts.append(birth_rejects(frame, "date", frame["date"], birth_years=birth_years))
    if text_limits:
        parts.append(text_rejects(frame, text_limits))

    dup, first = _first_row_of_duplicate(frame, ["participant", "visit", "analyte"])
    if dup.any():
        reason = "duplicate of row " + first.astype(str) + " (same participant, visit, analyte)"
        parts.append(_reject(frame, dup, "analyte", reason))

    for check in extra_checks:
        parts.append(check(frame))

    frame["value_num"] = values
    frame["value_canonical"] = canonical
    frame["unit_canonical"] = canon_unit
    frame["date_parsed"] = dates
    return Validation(frame=frame, rejects=rejects_frame(parts))
