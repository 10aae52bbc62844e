"""The analysis bundle passed from the store / CLI to the analysis (docs/contracts.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hepatrial.analysis._common import require_columns

__all__ = ["DATASET_COLUMNS", "TrialData"]

DATASET_COLUMNS: tuple[str, ...] = (
    "participant_id", "site", "arm", "visit", "nominal_day", "actual_day", "analyte", "value",
    "unit", "source",
)


@dataclass
class TrialData:
    """Analysis dataset, participants table, adverse events and a protocol summary dict
    (and, optionally, the cell-product batches).

    Built by the CLI from the store; the analysis never touches the ORM.  ``validate()``
    checks the analysis-dataset columns of contracts.md §1.
    """

    dataset: pd.DataFrame
    participants: pd.DataFrame
    adverse_events: pd.DataFrame
    protocol_summary: dict[str, Any] = field(default_factory=dict)
    #: the cell-product batches (``hepatrial.trials.selectors.products_frame``: one row per
    #: batch, with the cells given, per kg, viability at release and vein-to-vein days);
    #: None when the bundle was built without them
    products: pd.DataFrame | None = None

    def validate(self) -> TrialData:
        """Raise :class:`AnalysisInputError` if a contract column is missing; return self."""
        require_columns(self.dataset, DATASET_COLUMNS, what="analysis dataset")
        require_columns(self.participants, ["participant_id", "arm", "status"],
                        what="participants")
        require_columns(self.adverse_events, ["participant_id", "term", "grade", "serious",
                                              "related"], what="adverse events")
        return self

    def as_of(self, date: Any) -> TrialData:
        """The bundle as it stood on ``date``: an interim data cut (for DSMB and interim
        reports, and for testing the report on every state of a trial).

        Dates are calendar dates of the participants table: a participant's measurement or
        event on day ``k`` happened on ``enrolment_date + k`` days (``actual_day``, or the
        visit's ``nominal_day`` when the actual day is missing; ``onset_day`` for adverse
        events).  Kept: enrolled participants with ``enrolment_date <= date`` and participants
        never enrolled (screening, screen failure) whose ``status_date <= date``; the rows and
        events of kept participants up to ``date``.  A status reached after ``date``
        (completed, died, ...) is replaced by ``enrolled`` (still in follow-up) with the
        enrolment date as status date; an event resolved after ``date`` loses its
        ``resolved_day`` and ``outcome`` (unknown at the cut).  Nothing else changes.
        """
        require_columns(self.participants, ["participant_id", "status", "status_date",
                                            "enrolment_date"], what="participants")
        cut = pd.Timestamp(date)
        ppl = self.participants.copy()
        enrol = pd.to_datetime(ppl["enrolment_date"])
        sdate = pd.to_datetime(ppl["status_date"])
        never = ppl["status"].isin(["screened", "screen_failed"])
        keep = (~never & enrol.notna() & (enrol <= cut)) | (never & sdate.notna() & (sdate <= cut))
        ppl = ppl[keep].copy()
        later = ~ppl["status"].isin(["screened", "screen_failed"]) & ~(
            pd.to_datetime(ppl["status_date"]) <= cut)
        ppl.loc[later, "status"] = "enrolled"
        if "status_reason" in ppl.columns:
            ppl.loc[later, "status_reason"] = ""
        ppl.loc[later, "status_date"] = ppl.loc[later, "enrolment_date"]
        ppl = ppl.reset_index(drop=True)
        day0 = dict(zip(ppl["participant_id"], pd.to_datetime(ppl["enrolment_date"]),
                        strict=True))

        def when(frame: pd.DataFrame, day: pd.Series) -> pd.Series:
            start = pd.to_datetime(frame["participant_id"].map(day0))  # all-NaT when empty
            return start + pd.to_timedelta(pd.to_numeric(day, errors="coerce"), unit="D")

        ds = self.dataset
        ds = ds[ds["participant_id"].isin(day0)]
        day = pd.to_numeric(ds["actual_day"], errors="coerce").fillna(
            pd.to_numeric(ds["nominal_day"], errors="coerce"))
        ds = ds[(when(ds, day) <= cut).to_numpy()].reset_index(drop=True)
        ae = self.adverse_events
        ae = ae[ae["participant_id"].isin(day0)].copy()
        if "onset_day" in ae.columns and len(ae):
            ae = ae[(when(ae, ae["onset_day"]) <= cut).to_numpy()].copy()
            if "resolved_day" in ae.columns:
                open_ = ~(when(ae, ae["resolved_day"]) <= cut).to_numpy()
                ae.loc[open_, "resolved_day"] = pd.NA
                if "outcome" in ae.columns:
                    ae.loc[open_, "outcome"] = pd.NA
        prod = self.products
        if prod is not None:  # batches of kept participants, as far as they had gone by then
            prod = prod[prod["participant_id"].isin(day0)].copy()
            if "collected_at" in prod.columns and len(prod):
                cut_utc = (cut.tz_localize("UTC") if cut.tzinfo is None
                           else cut.tz_convert("UTC")) + pd.Timedelta(days=1)
                prod = prod[(pd.to_datetime(prod["collected_at"], utc=True) < cut_utc)
                            .to_numpy()].copy()
                given = pd.to_datetime(prod["administered_at"], utc=True) < cut_utc
                not_yet = list(~given.to_numpy())
                blank: dict[str, Any] = {"route": "", "administered_at": pd.NaT}
                for c in ("route", "administered_at", "cells_total", "cells_per_kg",
                          "volume_ml", "vein_to_vein_days"):
                    if c in prod.columns:
                        prod.loc[not_yet, c] = blank.get(c, float("nan"))
            prod = prod.reset_index(drop=True)
        return TrialData(ds, ppl, ae.reset_index(drop=True), self.protocol_summary, prod)

    @property
    def baseline_visit(self) -> str:
        """Baseline visit code from the protocol summary (default ``D0``)."""
        return str(self.protocol_summary.get("baseline_visit", "D0"))
