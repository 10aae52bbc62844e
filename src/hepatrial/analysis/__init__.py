"""Statistics on tidy pandas data for hepatrial (no Django, no ORM).

Input is the tidy analysis dataset of docs/contracts.md §1 (or any tidy frame with subject,
visit and outcome columns); output is pandas DataFrames, dicts or small dataclasses.
"""

from __future__ import annotations

from hepatrial.analysis._common import AnalysisInputError
from hepatrial.analysis.ancova import ancova_by_visit
from hepatrial.analysis.bundle import TrialData
from hepatrial.analysis.descriptive import describe, friedman
from hepatrial.analysis.dsmb_data import (
    enrolment_by_month,
    safety_labs_frame,
    time_to_first_event,
    visit_status,
)
from hepatrial.analysis.lmm import LMMResult, fit_lmm
from hepatrial.analysis.missing import visit_completeness
from hepatrial.analysis.mmrm import MMRMResult, fit_mmrm
from hepatrial.analysis.multiplicity import (
    exact_test_feasibility,
    fixed_sequence,
    holm,
    min_attainable_p,
)
from hepatrial.analysis.paired import (
    effect_sizes,
    paired_test,
    paired_vs_baseline,
    wilcoxon_signed_rank,
)
from hepatrial.analysis.power import (
    paired_power,
    paired_sample_size,
    sd_inflation_factor,
    sd_of_difference,
)
from hepatrial.analysis.safety import ae_overview, ae_summary, lab_shift_table
from hepatrial.analysis.survival import KaplanMeier, cumulative_incidence, kaplan_meier

__all__ = [
    "AnalysisInputError",
    "KaplanMeier",
    "LMMResult",
    "MMRMResult",
    "TrialData",
    "ae_overview",
    "ae_summary",
    "ancova_by_visit",
    "cumulative_incidence",
    "describe",
    "effect_sizes",
    "enrolment_by_month",
    "exact_test_feasibility",
    "fit_lmm",
    "fit_mmrm",
    "fixed_sequence",
    "friedman",
    "holm",
    "kaplan_meier",
    "lab_shift_table",
    "min_attainable_p",
    "paired_power",
    "paired_sample_size",
    "paired_test",
    "paired_vs_baseline",
    "safety_labs_frame",
    "sd_inflation_factor",
    "sd_of_difference",
    "time_to_first_event",
    "visit_completeness",
    "visit_status",
    "wilcoxon_signed_rank",
]
