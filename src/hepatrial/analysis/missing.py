"""Missing data and intercurrent events per visit (ICH E9(R1); CONSORT item 16/13b).

Every enrolled participant (participants table, contracts.md §2, status other than
``screened``/``screen_failed``) is expected at every visit.  A participant-visit with no
non-missing value is missing; its reason is the participant's status when that is ``died``,
``transplanted`` or ``withdrawn`` (the intercurrent events of an ESLD trial), otherwise
``missed``.  The participants table carries no per-visit dates, so the reason is the
participant's final status, not a check that the event preceded the visit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from hepatrial.analysis._common import (
    AnalysisInputError,
    check_no_missing_keys,
    numeric_column,
    require_columns,
    visit_order,
)

__all__ = ["MISSING_REASONS", "visit_completeness"]

MISSING_REASONS = ("died", "transplanted", "withdrawn", "missed")
_NOT_ENROLLED = ("screened", "screen_failed")


def visit_completeness(
    dataset: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    analyte: str | None = None,
    visits: Sequence[Any] | None = None,
    subject: str = "participant_id",
    visit: str = "visit",
    outcome: str = "value",
    detail: bool = False,
) -> pd.DataFrame:
    """Expected, observed and missing participant-visits, with reasons.

    Parameters
    ----------
    dataset:
        Analysis dataset (contracts.md §1).  With ``analyte`` only that analyte's rows count
        as observations; otherwise any non-missing value at the visit does.
    participants:
        Participants table (contracts.md §2) with ``status``.
    visits:
        The protocol's visit list in order (recommended: a visit nobody attended is absent from
        the data); default: the visits present, in chronological order.
    detail:
        Return the per participant x visit listing (``participant_id, visit, status`` with
        status ``observed`` or a missing reason) instead of the per-visit summary.

    Returns
    -------
    Per visit: ``expected``, ``observed``, ``missing``, ``missing_died``,
    ``missing_transplanted``, ``missing_withdrawn``, ``missing_missed``, ``pct_observed``
    (expected = observed + missing).
    """
    require_columns(dataset, [subject, visit, outcome], what="dataset")
    require_columns(participants, [subject, "status"], what="participants")
    check_no_missing_keys(dataset, [subject, visit], what="dataset")
    check_no_missing_keys(participants, [subject, "status"], what="participants")
    data = dataset
    if analyte is not None:
        require_columns(dataset, ["analyte"], what="dataset")
        data = dataset[dataset["analyte"] == analyte]
    values = numeric_column(data, outcome, what="dataset")
    known = set(participants[subject])
    unknown = ~dataset[subject].isin(known)
    if bool(unknown.any()):
        row = unknown[unknown].index[0]
        raise AnalysisInputError(
            f"dataset: column {subject!r}, row {row}: participant {dataset.loc[row, subject]!r} "
            "is not in the participants table", column=subject, row=row)
    levels = list(visits) if visits is not None else visit_order(dataset, visit)
    enrolled = participants[~participants["status"].isin(_NOT_ENROLLED)]
    status = enrolled.set_index(subject)["status"]
    seen = set(zip(data.loc[values.notna(), subject], data.loc[values.notna(), visit],
                   strict=True))
    listing: list[dict[str, Any]] = []
    for v in levels:
        for s in sorted(status.index, key=str):
            if (s, v) in seen:
                st = "observed"
            else:
                ps = status.loc[s]
                st = ps if ps in ("died", "transplanted", "withdrawn") else "missed"
            listing.append({subject: s, visit: v, "status": st})
    lst = pd.DataFrame(listing, columns=[subject, visit, "status"])
    if detail:
        return lst
    rows = []
    for v in levels:
        sub = lst[lst[visit] == v]
        counts = sub["status"].value_counts()
        exp = len(sub)
        obs = int(counts.get("observed", 0))
        rec: dict[str, Any] = {"visit": v, "expected": exp, "observed": obs, "missing": exp - obs}
        for r in MISSING_REASONS:
            rec[f"missing_{r}"] = int(counts.get(r, 0))
        rec["pct_observed"] = 100.0 * obs / exp if exp else float("nan")
        rows.append(rec)
    return pd.DataFrame(rows)
