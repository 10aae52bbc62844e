"""`hepatrial import` / `hepatrial export` end to end in subprocesses, on SQLite and PostgreSQL.

Reuses the store tests' ``backend`` fixture (tests/store/test_e2e_cli.py): a fresh SQLite file,
or a fresh PostgreSQL database CREATEd for the test and DROPped afterwards
(``HEPATRIAL_TEST_PG_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``; skipped with
the reason when no server answers).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.store.test_e2e_cli import backend  # noqa: F401  (fixture reused, not duplicated)
from tests.store.test_e2e_cli import cli as _store_cli

from .test_pbcseq_roundtrip import CLINICAL, MAPPED


def run(backend: dict[str, Any], *args: str) -> Any:  # noqa: F811
    """``hepatrial ARGS``; on SQLite the store file is passed with ``--db``."""
    extra = backend["db_args"] if args[:1] in (("import",), ("export",)) else []
    return _store_cli(backend, *args, *extra)


def _count(backend: dict[str, Any], table: str) -> int:  # noqa: F811
    """Row count via the backend's raw SQL helper (rowcount of a SELECT is not portable)."""
    if backend["name"] == "sqlite":
        import sqlite3

        path = backend["db_args"][1]
        with sqlite3.connect(path) as con:
            return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    import psycopg

    with psycopg.connect(backend["env"]["HEPATRIAL_DATABASE_URL"]) as con:
        return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_import_export_cli(backend: dict[str, Any], tmp_path: Path,  # noqa: F811
                           pbcseq_csv: Path) -> None:
    pbcseq = pbcseq_csv
    raw = pd.read_csv(pbcseq)
    n_cells = int(sum(raw[c].notna().sum() for c in MAPPED))
    n_clinical = int(sum(raw[c].notna().sum() for c in CLINICAL))
    n_assessed = int(raw[list(CLINICAL)].notna().any(axis=1).sum())

    r = run(backend, "init", "--protocol", "mayo-pbc")
    assert r.returncode == 0, r.stderr
    r = run(backend, "import", "visits", str(pbcseq), "--map", "mayo-pbc")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{n_cells} created, 0 changed, 0 unchanged" in r.stdout
    assert "312 participants and 1945 visits created" in r.stdout
    assert f"clinical assessments: {n_assessed} created" in r.stdout
    assert "not stored" not in r.stdout and "note:" not in r.stdout
    assert _count(backend, "trials_clinicalassessment") == n_assessed
    assert _count(backend, "trials_participant") == 312
    assert _count(backend, "trials_visit") == 1945
    r = run(backend, "import", "visits", str(pbcseq), "--map", "mayo-pbc")
    assert r.returncode == 0 and f"0 created, 0 changed, {n_cells} unchanged" in r.stdout

    # export: every value back, deterministic bytes
    out_csv = tmp_path / "ds.csv"
    r = run(backend, "export", "dataset", "-o", str(out_csv))
    assert r.returncode == 0, r.stderr
    ds = pd.read_csv(out_csv, dtype={"participant_id": str})
    meas = ds[ds["source"] == "measured"]
    assert len(meas) == n_cells + n_clinical
    got = meas.set_index(["participant_id", "actual_day", "analyte"])["value"]
    for col, (analyte, factor) in MAPPED.items():
        sub = raw.loc[raw[col].notna()]
        keys = pd.MultiIndex.from_arrays([sub["id"].astype(str), sub["day"],
                                          [analyte] * len(sub)])
        np.testing.assert_allclose(got.reindex(keys).to_numpy(), sub[col] * factor,
                                   rtol=1e-12, err_msg=col)
    for col, analyte in CLINICAL.items():
        sub = raw.loc[raw[col].notna()]
        keys = pd.MultiIndex.from_arrays([sub["id"].astype(str), sub["day"],
                                          [analyte] * len(sub)])
        np.testing.assert_array_equal(got.reindex(keys).to_numpy(), sub[col].to_numpy(float),
                                      err_msg=col)
    digests = []
    for name in ("a.parquet", "b.parquet"):
        r = run(backend, "export", "dataset", "-o", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]

    # a bad lab file is refused whole, every reason listed, nothing written
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "participant,visit,analyte,value,unit,date\n"
        "1,D0,creatinine,1.1,mg/dL,2000-01-01\n"
        "9999,D0,creatinine,1.1,mg/dL,2000-01-01\n"
        "1,W7,creatinine,1.1,mg/dL,2000-01-01\n"
        "1,D0,potassium,4.1,mmol/L,2000-01-01\n"
        "1,D0,inr,1.1,%,2000-01-01\n"
        "1,M6,inr,n/a,1,2000-07-01\n"
        "2,D0,inr,33,1,2000-01-01\n"
        "2,D0,sodium,140,mmol/L,01/02/2000\n"
        "1,D0,creatinine,1.2,mg/dL,2000-01-01\n")
    labs_before = _count(backend, "trials_labresult")
    ledger_before = _count(backend, "trials_auditledger")
    r = run(backend, "import", "labs", str(bad))
    assert r.returncode == 1, r.stdout + r.stderr
    for reason in ("unknown participant", "unknown visit code", "unknown analyte",
                   "unit not accepted", "not a number", "out of range", "not a valid date",
                   "duplicate of row 1"):
        assert reason in r.stdout, reason
    assert "8 row(s) rejected" in r.stdout
    rej = pd.read_csv(tmp_path / "bad.csv.rejects.csv")
    assert sorted(set(rej["row"])) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert _count(backend, "trials_labresult") == labs_before
    assert _count(backend, "trials_auditledger") == ledger_before

    # dry run writes nothing; a changed value needs --reason; the reason is in the history
    good = tmp_path / "good.csv"
    good.write_text("participant,visit,analyte,value,unit,date\n"
                    "1,D0,creatinine,1.1,mg/dL,2000-01-01\n"
                    "1,D0,bilirubin,14.5,mg/dL,2000-01-01\n")
    r = run(backend, "import", "labs", str(good), "--dry-run")
    assert r.returncode == 0 and "dry run" in r.stdout and "1 created" in r.stdout, r.stdout
    assert _count(backend, "trials_labresult") == labs_before
    r = run(backend, "import", "labs", str(good), "--user", "dm1")
    assert r.returncode == 0 and "1 created, 0 changed, 1 unchanged" in r.stdout, r.stdout
    changed = tmp_path / "changed.csv"
    changed.write_text(good.read_text().replace("14.5", "14.6"))
    r = run(backend, "import", "labs", str(changed))
    assert r.returncode == 1 and "--reason" in r.stdout
    r = run(backend, "import", "labs", str(changed), "--reason", "lab re-issued report")
    assert r.returncode == 0 and "0 created, 1 changed, 1 unchanged" in r.stdout, r.stdout
    r = run(backend, "audit", "verify")
    assert r.returncode == 0, r.stderr
    r = run(backend, "audit", "log", "--participant", "1")
    assert r.returncode == 0 and "lab re-issued report" in r.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_export_rejects_unknown_suffix(backend: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    assert run(backend, "init", "--protocol", "kharaziha2009").returncode == 0
    r = run(backend, "export", "dataset", "-o", str(tmp_path / "x.xlsx"))
    assert r.returncode == 2 and ".csv or .parquet" in r.stdout


ENROL = r"""
import sys
from hepatrial.trials import setup
setup(sys.argv[1] if len(sys.argv) > 1 else None)
from hepatrial.trials import services as s
from tests.store.conftest import ELIGIBLE
s.screen_participant(study_id="K01", site="S01", sex="F", year_of_birth=1965, etiology="HCV",
                     screening_date="2008-01-06", screening_data=ELIGIBLE)
s.record_consent(participant="K01", version="1.0", date="2008-01-06")
s.assess_eligibility(participant="K01")
s.enrol_participant(participant="K01", enrolment_date="2008-01-20")
"""


def test_labs_for_scheduled_visits_cli(backend: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    """Enrolment schedules the visits; `import labs` records their dates (earliest specimen
    date, window status, deviation when late) with history, and the audit trail verifies."""
    assert run(backend, "init", "--protocol", "kharaziha2009").returncode == 0
    f = tmp_path / "enrol.py"
    f.write_text(ENROL)
    env = {**backend["env"], "PYTHONPATH": str(Path(__file__).resolve().parents[2])
           + os.pathsep + backend["env"].get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, str(f), *backend["script_args"]], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    labs = tmp_path / "labs.csv"
    labs.write_text("participant,visit,analyte,value,unit,date,lab\n"
                    "K01,D0,bilirubin,2.3,mg/dL,2008-01-20,central\n"
                    "K01,D0,inr,1.42,1,2008-01-20,central\n"
                    "K01,W2,bilirubin,1.9,mg/dL,2008-02-10,central\n")
    r = run(backend, "import", "labs", str(labs))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 created, 0 changed, 0 unchanged" in r.stdout
    assert "2 scheduled visit dates recorded" in r.stdout
    assert _count(backend, "trials_protocoldeviation") == 1  # W2 on day 21: window 11-17
    r = run(backend, "audit", "verify")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "ds.csv"
    assert run(backend, "export", "dataset", "-o", str(out)).returncode == 0
    ds = pd.read_csv(out)
    w2 = ds[(ds["visit"] == "W2") & (ds["analyte"] == "bilirubin")]
    assert w2["actual_day"].tolist() == [21] and w2["nominal_day"].tolist() == [14]
