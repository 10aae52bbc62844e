"""Data preparation for the DSMB report (frames in, frames out; no protocol, no store).

* :func:`time_to_first_event` — per treated participant the time from the first
  administration (infusion) to the first qualifying event (e.g. an adverse event at least
  possibly related), censored at the end of follow-up (the data cut, or the date follow-up
  ended: completed, withdrawn, transplanted), with death before the event as a competing
  event (Kalbfleisch JD, Prentice RL. *The Statistical Analysis of Failure Time Data*, 2nd ed.
  2002, §8.2: a death ends the time at risk and is not an independent censoring).
* :func:`enrolment_by_month` — enrolments per calendar month and cumulative.
* :func:`visit_status` — per enrolled participant and scheduled visit: attended, missing
  (with the intercurrent event: died, transplanted, withdrawn; otherwise missed) or **not
  yet due** (the visit's window closes after the data cut: ICH E9(R1) counts only visits
  that should have happened as missing).
* :func:`safety_labs_frame` — analysis-dataset rows (docs/contracts.md §1) as the lab records
  of the stopping-rule evaluator (``hepatrial.protocol.safety.SafetyData.from_frames``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from hepatrial.analysis._common import AnalysisInputError, require_columns

__all__ = ["END_REASONS", "enrolment_by_month", "safety_labs_frame", "time_to_first_event",
           "visit_status"]

#: why follow-up ended for a censored participant
END_REASONS = ("data cut", "completed", "withdrawn", "transplanted")
_ENDS_FOLLOW_UP = ("completed", "withdrawn", "transplanted", "died")
_NOT_ENROLLED = ("screened", "screen_failed")


def _dates(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, errors="coerce").dt.normalize()


def time_to_first_event(
    participants: pd.DataFrame,
    origins: pd.DataFrame,
    events: pd.DataFrame,
    *,
    as_of: Any,
    deaths: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Time from origin to the first event, per participant with an origin.

    ``participants``: ``participant_id, status, status_date`` (contracts.md §2, as of the
    cut); ``origins``: ``participant_id, origin`` (date of the first administration; one row
    per treated participant); ``events``: ``participant_id, date`` of the qualifying events
    (any number per participant; those before the origin or after the end of follow-up do
    not count); ``deaths``: ``participant_id, date``. ``as_of``: the data cut (a date).

    End of follow-up: the earliest of the data cut, the status date of a participant whose
    status ends follow-up (completed, withdrawn, transplanted, died) and the date of death.
    Returns, sorted by participant: ``participant_id, origin, end, time`` (days from origin
    to the event or the end of follow-up), ``status`` (1 event, 2 death before an event — a
    competing event —, 0 censored), ``reason`` (``event``, ``death`` or one of
    :data:`END_REASONS`), ``events_before_origin`` (qualifying events dated before the
    origin, not counted) and ``follow_up`` (days from origin to the end of follow-up, whether
    or not an event happened).
    """
    require_columns(participants, ["participant_id", "status", "status_date"],
                    what="participants")
    require_columns(origins, ["participant_id", "origin"], what="origins")
    require_columns(events, ["participant_id", "date"], what="events")
    cut = pd.Timestamp(as_of).normalize()
    ppl = participants.set_index("participant_id")
    dead: dict[Any, pd.Timestamp] = {}
    if deaths is not None and len(deaths):
        require_columns(deaths, ["participant_id", "date"], what="deaths")
        for pid, d in zip(deaths["participant_id"], _dates(deaths["date"]), strict=True):
            if d <= cut:
                dead[pid] = min(d, dead.get(pid, d))
    ev = events.assign(date=_dates(events["date"]))
    rows = []
    for pid, origin in sorted(zip(origins["participant_id"], _dates(origins["origin"]),
                                  strict=True)):
        if pid not in ppl.index:
            raise AnalysisInputError(f"origins: participant {pid!r} is not in the participants "
                                     "table", column="participant_id")
        if pd.isna(origin):
            raise AnalysisInputError(f"origins: participant {pid!r} has no origin date",
                                     column="origin")
        status = str(ppl.at[pid, "status"])
        sdate = _dates(pd.Series([ppl.at[pid, "status_date"]])).iloc[0]
        end, reason = cut, "data cut"
        if status in _ENDS_FOLLOW_UP and pd.notna(sdate) and sdate.normalize() <= cut:
            end, reason = sdate.normalize(), status
        if pid in dead and dead[pid] <= end:
            end, reason = dead[pid], "death"
        if reason == "died":  # status died without a death record: the status date
            reason = "death"
        if end < origin:
            raise AnalysisInputError(
                f"participant {pid!r}: follow-up ends on {end.date()} ({reason}), before the "
                f"first administration on {origin.date()}", column="status_date")
        mine = ev.loc[ev["participant_id"] == pid, "date"].dropna()
        before = int((mine < origin).sum())
        counted = mine[(mine >= origin) & (mine <= end)]
        if len(counted):
            first = counted.min()
            rows.append((pid, origin, first, (first - origin).days, 1, "event", before,
                         (end - origin).days))
        else:
            st = 2 if reason == "death" else 0
            rows.append((pid, origin, end, (end - origin).days, st, reason, before,
                         (end - origin).days))
    return pd.DataFrame(rows, columns=["participant_id", "origin", "end", "time", "status",
                                       "reason", "events_before_origin", "follow_up"])


def enrolment_by_month(participants: pd.DataFrame, *, as_of: Any) -> pd.DataFrame:
    """Enrolments per calendar month, from the first enrolment's month to the cut's month:
    ``month`` (``YYYY-MM``), ``enrolled``, ``cumulative``. Participants never enrolled (no
    enrolment date) and enrolments after ``as_of`` are not counted; empty when nobody is
    enrolled."""
    require_columns(participants, ["participant_id", "enrolment_date"], what="participants")
    cut = pd.Timestamp(as_of).normalize()
    d = _dates(participants["enrolment_date"]).dropna()
    d = d[d <= cut]
    if d.empty:
        return pd.DataFrame({"month": pd.Series(dtype=object), "enrolled": pd.Series(dtype=int),
                             "cumulative": pd.Series(dtype=int)})
    months = pd.period_range(d.min().to_period("M"), cut.to_period("M"), freq="M")
    counts = d.dt.to_period("M").value_counts()
    n = [int(counts.get(m, 0)) for m in months]
    cum = pd.Series(n).cumsum().astype(int).tolist()
    return pd.DataFrame({"month": [str(m) for m in months], "enrolled": n, "cumulative": cum})


def visit_status(
    dataset: pd.DataFrame,
    participants: pd.DataFrame,
    visits: Sequence[dict[str, Any]],
    *,
    as_of: Any,
) -> pd.DataFrame:
    """Per enrolled participant and scheduled visit: ``attended``, ``not yet due``, or
    missing with its reason (``died``, ``transplanted``, ``withdrawn``, ``missed``).

    ``visits``: the protocol's visits (``code``, ``nominal_day``, ``window_upper`` — days
    after the nominal day the window stays open, 0 when absent). A visit is attended when the
    dataset has a non-missing value of the participant at it; otherwise it is not yet due
    while ``enrolment_date + nominal_day + window_upper`` is after ``as_of`` (and the
    participant is still in follow-up), else missing. Returns ``participant_id, visit,
    status`` in visit order, then participant.
    """
    require_columns(dataset, ["participant_id", "visit", "value"], what="dataset")
    require_columns(participants, ["participant_id", "status", "enrolment_date"],
                    what="participants")
    cut = pd.Timestamp(as_of).normalize()
    enrolled = participants[~participants["status"].astype(str).isin(_NOT_ENROLLED)]
    seen = set(zip(dataset.loc[dataset["value"].notna(), "participant_id"],
                   dataset.loc[dataset["value"].notna(), "visit"], strict=True))
    d0 = dict(zip(enrolled["participant_id"], _dates(enrolled["enrolment_date"]), strict=True))
    status = dict(zip(enrolled["participant_id"], enrolled["status"].astype(str), strict=True))
    rows = []
    for v in visits:
        code = str(v["code"])
        close = int(v.get("nominal_day") or 0) + int(v.get("window_upper") or 0)
        for pid in sorted(d0, key=str):
            if (pid, code) in seen:
                st = "attended"
            elif status[pid] in ("died", "transplanted", "withdrawn"):
                st = status[pid]
            elif pd.notna(d0[pid]) and d0[pid] + pd.Timedelta(days=close) > cut:
                st = "not yet due"
            else:
                st = "missed"
            rows.append((pid, code, st))
    return pd.DataFrame(rows, columns=["participant_id", "visit", "status"])


def safety_labs_frame(dataset: pd.DataFrame, participants: pd.DataFrame,
                      analytes: Sequence[str]) -> pd.DataFrame:
    """The rows of ``analytes`` in the analysis dataset as lab records for the stopping-rule
    evaluator: ``participant_id, visit, nominal_day, analyte, value, date`` (date =
    enrolment date + actual day, or + nominal day when the actual day is missing)."""
    require_columns(dataset, ["participant_id", "visit", "nominal_day", "actual_day",
                              "analyte", "value"], what="dataset")
    cols = ["participant_id", "visit", "nominal_day", "analyte", "value", "date"]
    sub = dataset[dataset["analyte"].isin(list(analytes)) & dataset["value"].notna()]
    if sub.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    d0 = dict(zip(participants["participant_id"], _dates(participants["enrolment_date"]),
                  strict=True))
    day = pd.to_numeric(sub["actual_day"], errors="coerce").fillna(
        pd.to_numeric(sub["nominal_day"], errors="coerce"))
    date = pd.to_datetime(sub["participant_id"].map(d0)) + pd.to_timedelta(day, unit="D")
    out = pd.DataFrame({"participant_id": sub["participant_id"].to_numpy(),
                        "visit": sub["visit"].astype(str).to_numpy(),
                        "nominal_day": pd.to_numeric(sub["nominal_day"]).astype(int).to_numpy(),
                        "analyte": sub["analyte"].astype(str).to_numpy(),
                        "value": sub["value"].astype(float).to_numpy(),
                        "date": [x.date() if pd.notna(x) else None for x in date]})
    return out.reset_index(drop=True)
