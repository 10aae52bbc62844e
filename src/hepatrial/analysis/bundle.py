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
    """Analysis dataset, participants table, adverse events and a protocol summary dict.

    Built by the CLI from the store; the analysis never touches the ORM.  ``validate()``
    checks the analysis-dataset columns of contracts.md §1.
    """

    dataset: pd.DataFrame
    participants: pd.DataFrame
    adverse_events: pd.DataFrame
    protocol_summary: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrialData:
        """Raise :class:`AnalysisInputError` if a contract column is missing; return self."""
        require_columns(self.dataset, DATASET_COLUMNS, what="analysis dataset")
        require_columns(self.participants, ["participant_id", "arm", "status"],
                        what="participants")
        require_columns(self.adverse_events, ["participant_id", "term", "grade", "serious",
                                              "related"], what="adverse events")
        return self

    @property
    def baseline_visit(self) -> str:
        """Baseline visit code from the protocol summary (default ``D0``)."""
        return str(self.protocol_summary.get("baseline_visit", "D0"))
