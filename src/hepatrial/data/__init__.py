"""Public example datasets bundled with hepatrial.

* ``pbcseq.csv`` — the Mayo Clinic trial in primary biliary cirrhosis (D-penicillamine vs
  placebo, 1974–1984), longitudinal form: 312 randomised patients, 1,945 visits, as distributed
  in R ``survival::pbcseq`` (Therneau T, *A Package for Survival Analysis in R*; Fleming TR,
  Harrington DP, *Counting Processes and Survival Analysis*, Wiley 1991; Murtaugh PA et al.,
  Hepatology 1994;20:126-134). In this copy ``trt`` is coded 1 = D-penicillamine, 0 = placebo;
  ``day`` is days since enrolment; ``status`` 0/1/2 = censored/transplant/dead; bili mg/dL,
  albumin g/dL, protime seconds, ast U/mL, platelet 10^3/µL. Public data; no patient can be
  identified from it.

``hepatrial example pbcseq -o FILE`` writes a copy; :func:`path` gives the installed file.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DATASETS", "path"]

_HERE = Path(__file__).resolve().parent

#: name -> one-line description
DATASETS: dict[str, str] = {
    "pbcseq": "Mayo Clinic PBC trial, longitudinal (R survival::pbcseq): 312 patients, "
    "1,945 visits; import with `hepatrial import visits FILE --map mayo-pbc`",
}


def path(name: str) -> Path:
    """The installed CSV file of the bundled dataset ``name`` (e.g. ``"pbcseq"``)."""
    if name not in DATASETS:
        raise KeyError(f"no bundled dataset {name!r} (known: {', '.join(sorted(DATASETS))})")
    return _HERE / f"{name}.csv"
