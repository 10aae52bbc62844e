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
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from hepatrial import errors as _errors

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

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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


def read_text_csv(path: str | Path, required: Iterable[str] = (), *,
                  lower: bool = True) -> pd.DataFrame:
    """Read a CSV with every cell as text, exactly as entered (only surrounding blanks trimmed).

    Header names are stripped (and lower-cased unless ``lower=False``). Adds ``row`` (1-based
    data row number; a ``row`` column in the file is an error).
    Raises :class:`ImportFileError` naming missing required columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                            skipinitialspace=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path}: not a readable UTF-8 CSV file ({exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise ImportFileError(f"{path}: empty file (no header)") from exc
    frame.columns = [str(c).strip().lower() if lower else str(c).strip()
                     for c in frame.columns]
    if "row" in frame.columns:
        raise ImportFileError(f"{path}: a column may not be called 'row' (reserved)")
    if frame.columns.duplicated().any():
        dup = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise ImportFileError(f"{path}: duplicate column(s) in header: {', '.join(dup)}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ImportFileError(
            f"{path}: missing required column(s): {', '.join(missing)} "
            f"(found: {', '.join(frame.columns)})"
        )
    for col in frame.columns:
        frame[col] = frame[col].str.strip()
    frame.insert(0, "row", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame


def parse_numbers(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse decimal numbers written as text; returns ``(values, bad_mask)``.

    Accepts plain decimals and exponent notation (``1.5``, ``-2``, ``1e3``); rejects blanks,
    decimal commas, censored values (``<5``) and non-finite numbers.
    """
    values = pd.to_numeric(text.where(text != "", None), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    return values, bad


def parse_dates(text: pd.Series, *, today: _dt.date | None = None
                ) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse ISO ``YYYY-MM-DD`` dates; returns ``(dates, bad_mask, future_mask)``."""
    shape_ok = text.str.fullmatch(_ISO_DATE.pattern).fillna(False).to_numpy(dtype=bool)
    parsed = pd.to_datetime(text.where(shape_ok, None), format="%Y-%m-%d", errors="coerce")
    bad = parsed.isna().to_numpy()
    limit = pd.Timestamp(today or _dt.date.today())
    future = (~bad) & (parsed > limit).fillna(False).to_numpy(dtype=bool)
    return parsed, bad, future


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
) -> Validation:
    """Validate a long-format lab table (as read by :func:`read_text_csv`).

    Checks, over every row: participant known (skipped when ``participants`` is None), visit code
    in ``visits`` (the protocol's) or an existing ``(participant, visit)`` pair in
    ``participant_visits`` (e.g. stored unscheduled visits), analyte known, unit accepted for
    that analyte, value numeric, value within the analyte's plausible range (by
    ``catalog.convert``), date a valid ISO date not in the future, and no repeat of an
    earlier row's (participant, visit, analyte).
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
    parts.append(_reject(frame, frame["value"].ne("").to_numpy() & bad_num, "value",
                         "not a number"))

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
