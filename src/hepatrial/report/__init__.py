"""Publication-style trial report: HTML (one self-contained page), Word and CSV tables.

``analyze(trial_data)`` runs the protocol's analysis plan; ``build_report(trial_data,
analysis_results)`` renders the HTML page; ``write_report(...)`` writes the HTML, the Word
document and every table as CSV into one directory; ``write_dsmb_report(...)`` writes the DSMB's
open and closed reports the same way.
"""

from hepatrial.report.analyze import analyze, dataset_hash, jsonable
from hepatrial.report.dsmb import write_dsmb_report
from hepatrial.report.format import fmt_mean_sd, fmt_p
from hepatrial.report.html import build_report
from hepatrial.report.write import write_report

__all__ = ["analyze", "build_report", "dataset_hash", "fmt_mean_sd", "fmt_p", "jsonable",
           "write_dsmb_report", "write_report"]
