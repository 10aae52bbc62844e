"""Write the example files of the model trial from the demo's synthetic cohort.

    uv run python examples/make_examples.py

* ``examples/participants.csv`` — the 8 synthetic patients of Kharaziha 2009 for
  ``hepatrial import participants``: screening 14 days before day 0 (consent the same day),
  year of birth = screening year − age in whole years, the eligibility inputs of kharaziha2009
  (labs in SI units, named with their unit as ``hepatrial score`` reads them: the day-0 values,
  as the demo uses them), day 0 = the cohort's enrolment date.
* ``examples/labs_long.csv`` — their lab results in the long format of ``hepatrial import
  labs`` (participant, visit, analyte, value, unit, date), byte for byte the file the demo
  imports.

**Synthetic reconstruction, not patient data** (:mod:`hepatrial.demo.cohort`). The files are
committed; ``tests/ingest/test_examples.py`` checks that this script still writes them.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTICIPANTS = HERE / "participants.csv"
LABS_LONG = HERE / "labs_long.csv"
#: eligibility inputs given for every patient (kharaziha2009), besides the day-0 labs
FINDINGS = {"cirrhosis": "true", "dialysis": "false", "portal_vein_patent": "true",
            "hcc": "false", "active_infection": "false", "pregnant": "false"}
LAB_COLUMNS = {"bilirubin": "bilirubin_umol_l", "creatinine": "creatinine_umol_l",
               "inr": "inr", "albumin": "albumin_g_l"}
SCREENING_DAYS = 14


def participants_text(cohort: object, labs_csv: Path) -> str:
    """``participants.csv`` for the cohort (values as the labs file writes them)."""
    import pandas as pd

    labs = pd.read_csv(labs_csv, dtype=str, keep_default_na=False)
    d0 = labs[labs["visit"] == "D0"]
    value = {(r.participant, r.analyte): r.value for r in d0.itertuples(index=False)}
    cols = ["study_id", "site", "sex", "year_of_birth", "etiology", "screening_date",
            "consent_version", "consent_date", "enrolment_date", "cirrhosis",
            *LAB_COLUMNS.values(), *(k for k in FINDINGS if k != "cirrhosis")]
    lines = [",".join(cols)]
    for r in cohort.participants.itertuples(index=False):  # type: ignore[attr-defined]
        day0 = dt.date.fromisoformat(r.enrolment_date)
        scr = day0 - dt.timedelta(days=SCREENING_DAYS)
        row = {"study_id": r.participant_id, "site": r.site, "sex": r.sex,
               "year_of_birth": str(scr.year - int(r.age)), "etiology": r.etiology,
               "screening_date": scr.isoformat(), "consent_version": "1.0",
               "consent_date": scr.isoformat(), "enrolment_date": day0.isoformat(),
               **FINDINGS,
               **{c: value[(r.participant_id, a)] for a, c in LAB_COLUMNS.items()}}
        lines.append(",".join(row[c] for c in cols))
    return "\n".join(lines) + "\n"


def build(out_dir: Path) -> tuple[str, bytes]:
    """``(participants.csv text, labs_long.csv bytes)`` from the reconstructed cohort."""
    from hepatrial.demo import cohort as _cohort
    from hepatrial.demo.pipeline import write_csvs

    c = _cohort.reconstruct()
    labs_csv, _ppl = write_csvs(c, out_dir)
    return participants_text(c, labs_csv), labs_csv.read_bytes()


def main() -> int:
    """Write both example files."""
    with tempfile.TemporaryDirectory() as tmp:
        ppl, labs = build(Path(tmp))
    PARTICIPANTS.write_text(ppl, encoding="utf-8")
    LABS_LONG.write_bytes(labs)
    print(f"wrote {PARTICIPANTS} and {LABS_LONG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
