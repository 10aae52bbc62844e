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

from .test_pbcseq_roundtrip import CLINICAL, MAPPED

#: the console entry point (with its last-resort handler), as the installed command runs
MAIN = "from hepatrial.cli import main; main()"
_DB_COMMANDS = ("import", "export", "init", "user", "audit", "site", "lock", "unlock", "sign",
                "backup", "report", "analyze")


def run(backend: dict[str, Any], *args: str, stdin: str | None = None) -> Any:  # noqa: F811
    """``hepatrial ARGS`` through the console entry point; on SQLite the store file is passed
    with ``--db``. No command may print a traceback."""
    extra = backend["db_args"] if args[:1] and args[0] in _DB_COMMANDS else []
    r = subprocess.run([sys.executable, "-c", MAIN, *args, *extra], env=backend["env"],
                       capture_output=True, text=True, input=stdin, timeout=300)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert "internal error" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r


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
    assert r.returncode == 2 and "--user 'dm1': no such account" in r.stdout, r.stdout
    r = run(backend, "user", "add", "dm1", "--role", "data-manager", "--password-stdin",
            stdin="correct horse battery staple\n")
    assert r.returncode == 0, r.stdout + r.stderr
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


PARTICIPANT = ("study_id,site,sex,year_of_birth,etiology,screening_date,consent_version,"
               "consent_date,enrolment_date,cirrhosis,bilirubin_mg_dl,creatinine_umol_l,inr,"
               "portal_vein_patent,hcc,active_infection,pregnant\n"
               "K01,S01,F,1965,HCV,2008-01-06,1.0,2008-01-06,2008-01-20,true,2.3,100,1.6,"
               "true,false,false,false\n")


def test_labs_for_scheduled_visits_cli(backend: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    """Enrolment schedules the visits; `import labs` records their dates (earliest specimen
    date, window status, deviation when late) with history, and the audit trail verifies."""
    assert run(backend, "init", "--protocol", "kharaziha2009").returncode == 0
    ppl = tmp_path / "participants.csv"
    ppl.write_text(PARTICIPANT)
    r = run(backend, "import", "participants", str(ppl))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 participants created (1 enrolled, 0 screen-failed, 0 screened only)" in r.stdout
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


TABLES = ("trials_participant", "trials_consent", "trials_eligibilityassessment", "trials_visit",
          "trials_auditledger", "auth_user")


def test_import_participants_cli_dry_run_writes_nothing(backend: dict[str, Any],  # noqa: F811
                                                        tmp_path: Path) -> None:
    """The README's order: init, import participants (dry run first), import labs. A dry run
    leaves the database as it was: on SQLite byte for byte; an unknown --user is refused
    (no account is made for it)."""
    import shutil

    example = tmp_path / "examples"  # a copy: a refused import writes FILE.rejects.csv beside it
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples", example)
    assert run(backend, "init", "--protocol", "kharaziha2009").returncode == 0
    before = {t: _count(backend, t) for t in TABLES}
    sqlite_file = Path(backend["db_args"][1]) if backend["name"] == "sqlite" else None
    digest = hashlib.sha256(sqlite_file.read_bytes()).hexdigest() if sqlite_file else None
    for kind, name in (("participants", "participants.csv"), ("labs", "labs_long.csv")):
        r = run(backend, "import", kind, str(example / name), "--dry-run", "--user", "new-dm")
        assert r.returncode == 2 and "--user 'new-dm': no such account" in r.stdout, r.stdout
        r = run(backend, "import", kind, str(example / name), "--dry-run")
        if kind == "participants":
            assert r.returncode == 0, r.stdout + r.stderr
            assert "dry run, nothing written: would be 8 participants created (8 enrolled" \
                in r.stdout
        else:  # the participants do not exist yet: every row refused, nothing written
            assert r.returncode == 1 and "unknown participant" in r.stdout, r.stdout
    assert {t: _count(backend, t) for t in TABLES} == before
    if sqlite_file is not None:
        assert hashlib.sha256(sqlite_file.read_bytes()).hexdigest() == digest
    r = run(backend, "import", "participants", str(example / "participants.csv"))
    assert r.returncode == 0 and "8 participants created (8 enrolled" in r.stdout, r.stdout
    r = run(backend, "import", "labs", str(example / "labs_long.csv"))
    assert r.returncode == 0 and "192 created" in r.stdout, r.stdout
    r = run(backend, "import", "participants", str(example / "participants.csv"))
    assert r.returncode == 0 and "0 participants created" in r.stdout and "8 unchanged" \
        in r.stdout, r.stdout
    assert run(backend, "audit", "verify").returncode == 0


def test_missing_sqlite_store_is_not_created(tmp_path: Path) -> None:
    """`import ... --dry-run` or `export` before `init` says so and leaves no file behind."""
    import shutil

    example = tmp_path / "examples"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples", example)
    db = tmp_path / "nothing.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",
                                                             "HEPATRIAL_DATABASE_URL")}
    for args in (["import", "participants", str(example / "participants.csv"), "--dry-run"],
                 ["import", "labs", str(example / "labs_long.csv"), "--dry-run"],
                 ["export", "dataset", "-o", str(tmp_path / "d.csv")],
                 ["export", "participants", "-o", str(tmp_path / "p.csv")]):
        r = subprocess.run([sys.executable, "-c", MAIN, *args,
                            "--db", str(db)], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "does not exist: run `hepatrial init` first" in r.stdout, r.stdout
        assert not db.exists()


# ------------------------------------------------------------------ two imports at once


def _hold_write_lock(backend: dict[str, Any]) -> Any:  # noqa: F811
    """A connection holding the store's write lock, as an import takes it (SQLite: ``BEGIN
    IMMEDIATE``; PostgreSQL: the ledger's advisory lock); ``close()`` releases it."""
    if backend["name"] == "sqlite":
        import sqlite3

        con = sqlite3.connect(backend["db_args"][1], isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        return con
    import psycopg

    from hepatrial.trials.audit.chain import _LOCK_KEY

    con = psycopg.connect(backend["env"]["HEPATRIAL_DATABASE_URL"])
    con.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
    return con


def _waiting(backend: dict[str, Any], procs: list[Any]) -> bool:  # noqa: F811
    """Whether every import has reached the store: on PostgreSQL, waiting for the advisory
    lock; on SQLite, holding the store file open (the lock is taken right after)."""
    if backend["name"] == "postgresql":
        import psycopg

        with psycopg.connect(backend["env"]["HEPATRIAL_DATABASE_URL"], autocommit=True) as c:
            n = c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                          "AND NOT granted").fetchone()
        return bool(n and n[0] == len(procs))
    db = os.path.realpath(backend["db_args"][1])
    for p in procs:
        fds = Path(f"/proc/{p.pid}/fd")
        try:
            if not any(os.path.realpath(f) == db for f in fds.iterdir()):
                return False
        except OSError:
            return False
    return True


def test_two_imports_of_one_file_at_once(backend: dict[str, Any], tmp_path: Path,  # noqa: F811
                                         pbcseq_csv: Path) -> None:
    """Two ``import visits`` of one file started together while the store's write lock is
    held, both still running when it is released: one imports every row, the other waits,
    then finds them stored and says so (no duplicate, no integrity error); the chain holds."""
    import time

    lines = pbcseq_csv.read_text().splitlines()
    part = tmp_path / "pbcseq-60.csv"
    part.write_text("\n".join(lines[:61]) + "\n")
    raw = pd.read_csv(part)
    n_cells = int(sum(raw[c].notna().sum() for c in MAPPED))
    assert run(backend, "init", "--protocol", "mayo-pbc").returncode == 0
    cmd = [sys.executable, "-c", MAIN, "import", "visits", str(part), "--map", "mayo-pbc",
           *backend["db_args"]]
    holder = _hold_write_lock(backend)
    procs = [subprocess.Popen(cmd, env=backend["env"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        while not _waiting(backend, procs):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline, "the imports did not reach the store"
            time.sleep(0.2)
        time.sleep(1.0 if backend["name"] == "postgresql" else 3.0)
        # neither could finish while the lock was held: they ran at the same time
        assert [p.poll() for p in procs] == [None, None]
    finally:
        holder.close()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
        assert "Traceback" not in out + err
        outs.append(out)
    first = [o for o in outs if f"{n_cells} created, 0 changed, 0 unchanged" in o]
    second = [o for o in outs if f"0 created, 0 changed, {n_cells} unchanged" in o]
    assert len(first) == len(second) == 1, outs
    assert "every row is already stored unchanged: nothing to import" in second[0]
    assert _count(backend, "trials_labresult") == n_cells
    assert _count(backend, "trials_visit") == len(raw)
    r = run(backend, "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
