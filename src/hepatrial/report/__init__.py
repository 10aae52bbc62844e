"""Publication-style HTML report: tables (great_tables), figures (matplotlib, inline), text.

``analyze(trial_data)`` runs the protocol's analysis plan; ``build_report(trial_data,
analysis_results)`` renders one self-contained HTML page.
"""

from hepatrial.report.analyze import analyze, dataset_hash, jsonable
from hepatrial.report.html import build_report, fmt_mean_sd, fmt_p

__all__ = ["analyze", "build_report", "dataset_hash", "fmt_mean_sd", "fmt_p", "jsonable"]
