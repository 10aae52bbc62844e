"""Statistics on tidy pandas data for hepatrial (no Django, no ORM).

Input is the tidy analysis dataset of docs/contracts.md §1 (or any tidy frame with subject,
visit and outcome columns); output is pandas DataFrames, dicts or small dataclasses.
"""

from __future__ import annotations

from hepatrial.analysis._common import AnalysisInputError
from hepatrial.analysis.descriptive import describe, friedman
from hepatrial.analysis.lmm import LMMResult, fit_lmm
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

__all__ = [
    "AnalysisInputError",
    "LMMResult",
    "describe",
    "effect_sizes",
    "exact_test_feasibility",
    "fit_lmm",
    "fixed_sequence",
    "friedman",
    "holm",
    "min_attainable_p",
    "paired_test",
    "paired_vs_baseline",
    "wilcoxon_signed_rank",
]
