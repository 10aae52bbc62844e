"""Safety summaries: adverse events (docs/contracts.md §3) and CTCAE lab-grade shift tables.

Counting follows ICH E3 §12.2 / CONSORT harms (Ioannidis et al. 2004; Junqueira et al. 2023):
per category both the number of events and the number (and %) of participants with at least
one such event.  Grades are CTCAE v5.0 (1 mild ... 5 death).  The shift table cross-tabulates
the baseline grade against the worst post-baseline grade per participant (ICH E3 §12.4.2.2).

:func:`ae_by_soc_term` is the journal's adverse-event table (CONSORT Harms 2022, Junqueira et
al. BMJ 2023;381:e073725, items 14-17; the layout of R gtreg ``tbl_ae()``): per system organ
class and term the participants with at least one event n (%), the events, the participants
by their **maximum** grade (each participant counted once, at their worst grade), the
participants with a serious or a related event, and the time from infusion to onset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hepatrial.analysis._common import (
    AnalysisInputError,
    check_no_missing_keys,
    numeric_column,
    require_columns,
    visit_order,
)

__all__ = ["NOT_CODED", "ae_by_soc_term", "ae_overview", "ae_summary", "lab_shift_table"]

RELATEDNESS = ("not_related", "unlikely", "possible", "probable", "definite")
RELATED = ("possible", "probable", "definite")
NOT_TREATED = ("screened", "screen_failed")
#: System organ class of events whose term is not (yet) coded to MedDRA/CTCAE.
NOT_CODED = "Not coded"


def _validate_ae(ae: pd.DataFrame, subject: str) -> pd.DataFrame:
    require_columns(ae, [subject, "term", "grade", "serious", "related"], what="adverse events")
    check_no_missing_keys(ae, [subject, "term", "grade", "serious", "related"],
                          what="adverse events")
    grade = numeric_column(ae, "grade", what="adverse events")
    bad = ~grade.isin([1, 2, 3, 4, 5])
    if bool(bad.any()):
        row = bad[bad].index[0]
        raise AnalysisInputError(
            f"adverse events: column 'grade', row {row}: {ae.loc[row, 'grade']!r} is not a "
            "CTCAE grade 1-5", column="grade", row=row)
    serious = ae["serious"]
    # True/False also match 1/0 and 1.0/0.0 (equal hashes)
    mapping: dict[Any, bool] = {True: True, False: False, "true": True, "false": False,
                                "True": True, "False": False}
    ser = serious.map(lambda v: mapping.get(v, None))
    bad = ser.isna()
    if bool(bad.any()):
        row = bad[bad].index[0]
        raise AnalysisInputError(
            f"adverse events: column 'serious', row {row}: {serious.loc[row]!r} is not a boolean",
            column="serious", row=row)
    rel = ae["related"].astype(str)
    bad = ~rel.isin(RELATEDNESS)
    if bool(bad.any()):
        row = bad[bad].index[0]
        raise AnalysisInputError(
            f"adverse events: column 'related', row {row}: {ae.loc[row, 'related']!r} not in "
            f"{', '.join(RELATEDNESS)}", column="related", row=row)
    related = pd.Categorical(rel, categories=list(RELATEDNESS), ordered=True)
    return ae.assign(grade=grade.astype(int), serious=ser.astype(bool), related=related)


def _denominators(
    participants: pd.DataFrame | None, n_total: int | None, subject: str, arm: str | None
) -> dict[Any, int]:
    if n_total is not None:
        if arm is not None:
            raise AnalysisInputError("with arm=..., give the participants table, not n_total")
        return {None: int(n_total)}
    if participants is None:
        raise AnalysisInputError("give the participants table or n_total for the denominator")
    require_columns(participants, [subject, "status"] + ([arm] if arm else []),
                    what="participants")
    treated = participants[~participants["status"].isin(NOT_TREATED)]
    if arm is None:
        return {None: int(treated[subject].nunique())}
    return {k: int(v) for k, v in treated.groupby(arm)[subject].nunique().items()}


def ae_summary(
    adverse_events: pd.DataFrame,
    *,
    participants: pd.DataFrame | None = None,
    n_total: int | None = None,
    subject: str = "participant_id",
    by: Sequence[str] = ("term", "grade", "serious", "related"),
    arm: str | None = None,
) -> pd.DataFrame:
    """Adverse events by term x grade x serious x related (or any subset ``by``).

    Denominator: participants in the ``participants`` table (contracts.md §2) who were not
    only screened (status not screened/screen_failed), per arm with ``arm=``; or ``n_total``.
    With ``arm``, the AE table is joined to the participants' arm.

    Returns ``by`` columns (plus ``arm``), ``n_events``, ``n_participants`` (with >= 1 such
    event), ``n_total`` (denominator) and ``pct`` (100 n_participants / n_total), sorted by
    the ``by`` columns.
    """
    ae = _validate_ae(adverse_events, subject)
    keys = list(by)
    require_columns(ae, keys, what="adverse events")
    denom = _denominators(participants, n_total, subject, arm)
    if arm is not None:
        assert participants is not None
        amap = participants.set_index(subject)[arm]
        ae = ae.assign(**{arm: ae[subject].map(amap)})
        unknown = ae[arm].isna()
        if bool(unknown.any()):
            row = unknown[unknown].index[0]
            raise AnalysisInputError(
                f"adverse events: row {row}: participant {ae.loc[row, subject]!r} not in the "
                "participants table", column=subject, row=row)
        keys = [arm, *keys]
    cols = [*keys, "n_events", "n_participants", "n_total", "pct"]
    if ae.empty:
        return pd.DataFrame(columns=cols)
    g = ae.groupby(keys, sort=True, dropna=False, observed=True)
    out = pd.DataFrame({"n_events": g.size(), "n_participants": g[subject].nunique()})
    out = out.reset_index()
    if "related" in out.columns:
        out["related"] = out["related"].astype(str)
    out["n_total"] = [denom[r] if arm else denom[None] for r in (out[arm] if arm else out.index)]
    out["pct"] = 100.0 * out["n_participants"] / out["n_total"]
    return out[cols].reset_index(drop=True)


def ae_overview(
    adverse_events: pd.DataFrame,
    *,
    participants: pd.DataFrame | None = None,
    n_total: int | None = None,
    subject: str = "participant_id",
) -> pd.DataFrame:
    """Participants (n, %) and events with any AE, SAE, related AE (possible/probable/definite),
    grade >= 3 and grade 5 (fatal) AE."""
    ae = _validate_ae(adverse_events, subject)
    n = _denominators(participants, n_total, subject, None)[None]
    cats = {
        "any adverse event": np.ones(len(ae), dtype=bool),
        "serious adverse event": ae["serious"].to_numpy(dtype=bool),
        "related adverse event": ae["related"].isin(RELATED).to_numpy(),
        "grade >= 3": (ae["grade"] >= 3).to_numpy(),
        "grade 5 (fatal)": (ae["grade"] == 5).to_numpy(),
    }
    rows = []
    for name, mask in cats.items():
        sub = ae[mask]
        k = int(sub[subject].nunique())
        rows.append({"category": name, "n_events": len(sub), "n_participants": k,
                     "n_total": n, "pct": 100.0 * k / n if n else float("nan")})
    return pd.DataFrame(rows)


def ae_by_soc_term(
    adverse_events: pd.DataFrame,
    *,
    participants: pd.DataFrame | None = None,
    n_total: int | None = None,
    subject: str = "participant_id",
    soc: str = "soc",
    onset: str = "onset_day",
) -> pd.DataFrame:
    """Adverse events by system organ class and term (gtreg ``tbl_ae`` layout).

    Events are grouped by the ``soc`` column when the table has one (events with a missing SOC
    and every event of a table without the column are grouped under :data:`NOT_CODED`), then
    by ``term`` exactly as recorded (no case folding or merging of free text).

    Returns one row per level, in print order: ``level`` (``"any"`` — all events; ``"soc"``;
    ``"term"``), ``soc``, ``term`` (empty where not applicable), ``n_participants`` (with at
    least one such event), ``n_total`` (denominator: treated participants, as
    :func:`ae_summary`), ``pct``, ``n_events``, ``max_grade_1`` … ``max_grade_5``
    (participants by their maximum grade among these events: each participant counted once),
    ``n_serious`` and ``n_related`` (participants with at least one serious / related —
    possible, probable, definite — such event), ``onset_median``, ``onset_min``,
    ``onset_max`` (days from day 0, the infusion, to onset over the events with a known onset)
    and ``n_onset_missing``.  SOCs are ordered by decreasing participant count, then name,
    with :data:`NOT_CODED` last; terms within a SOC the same way.
    """
    ae = _validate_ae(adverse_events, subject)
    n = _denominators(participants, n_total, subject, None)[None]
    socs = (ae[soc].astype(object).where(ae[soc].notna(), NOT_CODED).astype(str)
            if soc in ae.columns else pd.Series(NOT_CODED, index=ae.index, dtype=object))
    ae = ae.assign(__soc=socs.to_numpy(), __term=ae["term"].astype(str).to_numpy())
    days = (numeric_column(ae, onset, what="adverse events") if onset in ae.columns
            else pd.Series(np.nan, index=ae.index))
    ae = ae.assign(__onset=days.to_numpy(dtype=float))
    cols = ["level", "soc", "term", "n_participants", "n_total", "pct", "n_events",
            *[f"max_grade_{g}" for g in range(1, 6)], "n_serious", "n_related",
            "onset_median", "onset_min", "onset_max", "n_onset_missing"]

    def summary(level: str, soc_name: str, term_name: str, g: pd.DataFrame) -> dict[str, Any]:
        k = int(g[subject].nunique())
        worst = g.groupby(subject)["grade"].max()
        on = g["__onset"].dropna().to_numpy(dtype=float)
        row: dict[str, Any] = {
            "level": level, "soc": soc_name, "term": term_name, "n_participants": k,
            "n_total": n, "pct": 100.0 * k / n if n else float("nan"), "n_events": len(g)}
        for grade in range(1, 6):
            row[f"max_grade_{grade}"] = int((worst == grade).sum())
        row["n_serious"] = int(g.loc[g["serious"], subject].nunique())
        row["n_related"] = int(g.loc[g["related"].isin(RELATED), subject].nunique())
        row["onset_median"] = float(np.median(on)) if on.size else float("nan")
        row["onset_min"] = float(on.min()) if on.size else float("nan")
        row["onset_max"] = float(on.max()) if on.size else float("nan")
        row["n_onset_missing"] = int(len(g) - on.size)
        return row

    def order(groups: Any) -> list[tuple[str, pd.DataFrame]]:
        items = [(str(k), g) for k, g in groups]
        return sorted(items, key=lambda kv: (kv[0] == NOT_CODED, -kv[1][subject].nunique(),
                                             kv[0]))

    rows = [summary("any", "", "", ae)]
    for soc_name, g in order(ae.groupby("__soc", sort=True)):
        rows.append(summary("soc", soc_name, "", g))
        for term_name, gt in order(g.groupby("__term", sort=True)):
            rows.append(summary("term", soc_name, term_name, gt))
    return pd.DataFrame(rows, columns=cols)


def lab_shift_table(
    labs: pd.DataFrame,
    *,
    baseline: Any,
    subject: str = "participant_id",
    visit: str = "visit",
    term: str = "term",
    grade: str = "grade",
    visits: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """CTCAE grade shift table: baseline grade x worst post-baseline grade, per term.

    ``labs`` has one row per participant x visit x term with a CTCAE grade (0 = normal/none,
    1-4; missing allowed).  Post-baseline visits are the visits after ``baseline`` in
    chronological order (``visits`` or the inferred order; screening is not post-baseline).
    A participant without a baseline grade, or without any post-baseline grade, is counted in
    the ``"missing"`` row/column — nobody is dropped.

    Returns a long table: term, baseline_grade, worst_grade (strings "0".."4" or "missing"),
    n — every combination present (zeros included), in a stable order.
    """
    require_columns(labs, [subject, visit, term, grade], what="labs")
    check_no_missing_keys(labs, [subject, visit, term], what="labs")
    g = numeric_column(labs, grade, what="labs")
    bad = g.notna() & ~g.isin([0, 1, 2, 3, 4, 5])
    if bool(bad.any()):
        row = bad[bad].index[0]
        raise AnalysisInputError(f"labs: column {grade!r}, row {row}: {labs.loc[row, grade]!r} "
                                 "is not a CTCAE grade 0-5", column=grade, row=row)
    data = labs.assign(**{grade: g})
    post = set(visit_order(data, visit, baseline=baseline, order=visits)[1:])
    grade_levels = [str(k) for k in range(0, 5)]
    if bool((g == 5).any()):
        grade_levels.append("5")
    cats = [*grade_levels, "missing"]
    rows: list[dict[str, Any]] = []
    for t in sorted(pd.unique(data[term]), key=str):
        sub = data[data[term] == t]
        subjects = sorted(pd.unique(sub[subject]), key=str)
        base = sub[sub[visit] == baseline].groupby(subject)[grade].max()
        worst = sub[sub[visit].isin(post)].groupby(subject)[grade].max()

        def lab(v: Any) -> str:
            return "missing" if v is None or pd.isna(v) else str(int(v))

        pairs = pd.DataFrame({
            "b": [lab(base.get(s)) for s in subjects],
            "w": [lab(worst.get(s)) for s in subjects],
        })
        counts = pairs.groupby(["b", "w"]).size()
        for b in cats:
            for w in cats:
                rows.append({"term": t, "baseline_grade": b, "worst_grade": w,
                             "n": int(counts.get((b, w), 0))})
    return pd.DataFrame(rows, columns=["term", "baseline_grade", "worst_grade", "n"])
