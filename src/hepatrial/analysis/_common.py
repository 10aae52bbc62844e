"""Input validation and small helpers shared by the analysis modules.

Every check raises :class:`AnalysisInputError` naming the column, the row (index label of the
input frame) and the reason, so that nothing is dropped or coerced silently.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hepatrial import errors as _errors


class AnalysisInputError(_errors.AnalysisInputError):
    """Bad analysis input: a missing column, a non-numeric value, a duplicate record, ...

    Attributes
    ----------
    column:
        The offending column, when the problem is tied to one.
    row:
        The index label of the first offending row of the input frame, when there is one.
    """

    def __init__(self, message: str, *, column: str | None = None, row: Hashable | None = None):
        super().__init__(message)
        self.column = column
        self.row = row


def require_columns(df: pd.DataFrame, columns: Iterable[str | None], *, what: str = "data") -> None:
    """Raise :class:`AnalysisInputError` if any of ``columns`` is absent from ``df``."""
    if not isinstance(df, pd.DataFrame):
        raise AnalysisInputError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    for col in columns:
        if col is not None and col not in df.columns:
            raise AnalysisInputError(
                f"{what}: column {col!r} not found (columns: {', '.join(map(str, df.columns))})",
                column=col,
            )


def numeric_column(df: pd.DataFrame, column: str, *, what: str = "data") -> pd.Series:
    """Return ``df[column]`` as float; missing values stay NaN, anything else non-numeric raises.

    The error names the column, the row label and the offending value.
    """
    require_columns(df, [column], what=what)
    raw = df[column]
    if pd.api.types.is_bool_dtype(raw):
        raise AnalysisInputError(
            f"{what}: column {column!r} is boolean, not numeric", column=column
        )
    converted = pd.to_numeric(raw, errors="coerce")
    bad = converted.isna() & raw.notna()
    if bool(bad.any()):
        row = bad[bad].index[0]
        raise AnalysisInputError(
            f"{what}: column {column!r}, row {row}: value {raw.loc[row]!r} is not numeric",
            column=column,
            row=row,
        )
    values = converted.astype(float)
    inf = np.isinf(values.to_numpy())
    if bool(inf.any()):
        row = values.index[int(np.argmax(inf))]
        raise AnalysisInputError(
            f"{what}: column {column!r}, row {row}: value is infinite", column=column, row=row
        )
    return values


def check_no_missing_keys(df: pd.DataFrame, columns: Sequence[str], *, what: str = "data") -> None:
    """Key columns (subject, visit, ...) may not be missing."""
    for col in columns:
        miss = df[col].isna()
        if bool(miss.any()):
            row = miss[miss].index[0]
            raise AnalysisInputError(
                f"{what}: column {col!r}, row {row}: missing key value", column=col, row=row
            )


def check_unique(df: pd.DataFrame, keys: Sequence[str], *, what: str = "data") -> None:
    """Raise if two rows share the same key (e.g. subject x visit): no silent averaging."""
    dup = df.duplicated(subset=list(keys), keep="first")
    if bool(dup.any()):
        row = dup[dup].index[0]
        key = ", ".join(f"{k}={df.loc[row, k]!r}" for k in keys)
        raise AnalysisInputError(
            f"{what}: row {row}: duplicate record for {key} "
            f"(one value per {' x '.join(keys)} expected)",
            column=keys[-1],
            row=row,
        )


def check_by(df: pd.DataFrame, by: str | None) -> None:
    """With ``by=None``, refuse a frame whose ``analyte`` column holds several analytes."""
    if by is None and "analyte" in df.columns and df["analyte"].nunique(dropna=True) > 1:
        raise AnalysisInputError(
            "data has several analytes in column 'analyte'; pass by='analyte' or filter first",
            column="analyte",
        )


def split_by(
    df: pd.DataFrame, by: str | None, *, default_label: str
) -> list[tuple[str, pd.DataFrame]]:
    """Split ``df`` into outcome groups (e.g. by ``analyte``), in sorted order.

    With ``by=None`` the frame is one group labelled ``default_label``; if the frame nevertheless
    has an ``analyte`` column with several analytes, mixing them would be meaningless and an
    error is raised.
    """
    check_by(df, by)
    if by is None:
        return [(default_label, df)]
    require_columns(df, [by])
    check_no_missing_keys(df, [by])
    return [(str(k), g) for k, g in sorted(df.groupby(by, sort=False), key=lambda kv: str(kv[0]))]


def chronological_visits(
    df: pd.DataFrame, visit: str, order: Sequence[Any] | None = None
) -> tuple[list[Any], bool]:
    """Visit levels in chronological order, and whether that order is known.

    Priority: explicit ``order``; an ordered categorical; the ``nominal_day`` column of the
    analysis dataset (contracts.md §1); numeric visits sorted — all "known"; otherwise order of
    first appearance ("not known").  Never alphabetical (W24 before W4).
    """
    present = list(pd.unique(df[visit].dropna()))
    if order is not None:
        levels = list(order)
        unknown = [v for v in present if v not in levels]
        if unknown:
            raise AnalysisInputError(
                f"column {visit!r}: visit(s) {unknown!r} not in the given visit order", column=visit
            )
        return levels, True
    if isinstance(df[visit].dtype, pd.CategoricalDtype) and df[visit].cat.ordered:
        return [v for v in df[visit].cat.categories if v in set(present)], True
    if "nominal_day" in df.columns and visit != "nominal_day":
        days = pd.to_numeric(df["nominal_day"], errors="coerce").groupby(df[visit]).min()
        if bool(days.notna().all()):
            return sorted(present, key=lambda v: (float(days.loc[v]), str(v))), True
    if pd.api.types.is_numeric_dtype(df[visit]):
        return sorted(present), True
    return present, False


def visit_order(
    df: pd.DataFrame,
    visit: str,
    *,
    baseline: Any = None,
    order: Sequence[Any] | None = None,
) -> list[Any]:
    """Chronological visit levels (see :func:`chronological_visits`).

    With ``baseline``: ``[baseline, *post-baseline visits]``.  Visits before the baseline
    (e.g. screening) are left out when the chronology is known; with the first-appearance
    fallback every other visit counts as post-baseline.
    """
    levels, known = chronological_visits(df, visit, order)
    if baseline is None:
        return levels
    if baseline not in levels:
        raise AnalysisInputError(
            f"column {visit!r}: baseline level {baseline!r} not found "
            f"(levels: {', '.join(map(str, levels))})",
            column=visit,
        )
    i = levels.index(baseline)
    post = levels[i + 1:] if known else [v for v in levels if v != baseline]
    return [baseline, *post]


def nan_to_none(value: Any) -> Any:
    """Convert numpy scalars to Python and NaN/inf to ``None`` (recursively) for JSON."""
    if isinstance(value, dict):
        return {str(k): nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def frame_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready dicts (NaN -> None, numpy -> Python)."""
    return [nan_to_none(dict(r)) for r in df.to_dict(orient="records")]
