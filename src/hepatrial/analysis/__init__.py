"""Statistics on tidy pandas data for hepatrial (no Django, no ORM).

Input is the tidy analysis dataset of docs/contracts.md §1 (or any tidy frame with subject,
visit and outcome columns); output is pandas DataFrames, dicts or small dataclasses.
"""

from __future__ import annotations

from hepatrial.analysis._common import AnalysisInputError
from hepatrial.analysis.ancova import ancova_by_visit
from hepatrial.analysis.bundle import TrialData
from hepatrial.analysis.descriptive import describe, friedman
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

__all__ = [
    "AnalysisInputError",
    "LMMResult",
    "MMRMResult",
    "TrialData",
    "ae_overview",
    "ae_summary",
    "ancova_by_visit",
    "describe",
    "effect_sizes",
    "exact_test_feasibility",
    "fit_lmm",
    "fit_mmrm",
    "fixed_sequence",
    "friedman",
    "holm",
    "lab_shift_table",
    "min_attainable_p",
    "paired_power",
    "paired_sample_size",
    "paired_test",
    "paired_vs_baseline",
    "sd_inflation_factor",
    "sd_of_difference",
    "visit_completeness",
    "wilcoxon_signed_rank",
]
