"""End to end through the ``hepatrial`` CLI in subprocesses, on SQLite and on PostgreSQL.

The PostgreSQL half needs a server (default ``postgresql://postgres@127.0.0.1:5432/test``, or
``HEPATRIAL_TEST_PG_URL``); each test creates a fresh database and drops it afterwards. When no
server answers, the PostgreSQL cases are skipped with the reason (run ``.ci/postgres.sh``), or
fail when ``HEPATRIAL_REQUIRE_POSTGRES=1`` (set by ``.ci/run``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_ADMIN_URL = os.environ.get("HEPATRIAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

ENROL_SCRIPT = r"""
import json, sys
from hepatrial.trials import setup
setup(sys.argv[1] if len(sys.argv) > 1 else None)
from hepatrial.trials import services as s
from hepatrial.trials.base import ChangeReasonRequired
from hepatrial.trials.models import Participant, ProtocolDeviation
eligible = {"cirrhosis": True, "bilirubin_umol_l": 40.0, "creatinine_umol_l": 100.0, "inr": 1.6,
            "dialysis": False, "portal_vein_patent": True, "hcc": False,
            "active_infection": False, "pregnant": False}
s.screen_participant(study_id="K01", site="S01", sex="F", year_of_birth=1965,
                     etiology="HCV", screening_date="2008-01-06", screening_data=eligible)
s.record_consent(participant="K01", version="1.0", date="2008-01-06")
s.assess_eligibility(participant="K01")
p = s.enrol_participant(participant="K01", enrolment_date="2008-01-20")
s.record_visit(participant="K01", visit_code="D0", actual_date="2008-01-20")
w1 = s.record_visit(participant="K01", visit_code="W1", actual_date="2008-02-01")  # day 12
lab = s.record_lab(participant="K01", visit_code="D0", analyte="bilirubin", value="2.3",
                   unit="mg/dL")
s.update_lab(lab, value="2.4", reason="transcription error")
refused = ""
p = Participant.objects.get(study_id="K01")
p.year_of_birth = 1966
try:
    p.save()
except ChangeReasonRequired as exc:
    refused = str(exc)
print(json.dumps({
    "arm": p.arm.code, "w1": w1.status,
    "deviations": list(ProtocolDeviation.objects.values_list("category", flat=True)),
    "refused": refused, "lab_pk": lab.pk, "lab_value": lab.value,
}))
"""


def _pg_url(dbname: str) -> str:
    parts = urlsplit(PG_ADMIN_URL)
    return urlunsplit(parts._replace(path="/" + dbname))


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``{"name", "env", "db_args", "sql"}`` for a fresh, empty database of each kind."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env.pop("HEPATRIAL_DATABASE_URL", None)
    env.pop("HEPATRIAL_DB", None)
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite3"

        def run_sql(sql: str) -> int:
            with sqlite3.connect(path) as con:
                return con.execute(sql).rowcount

        yield {"name": "sqlite", "env": env, "db_args": ["--db", str(path)],
               "script_args": [str(path)], "sql": run_sql}  # fmt: skip
        return
    try:
        admin = _pg_admin()
    except Exception as exc:  # no server
        msg = f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc}); run .ci/postgres.sh"
        if os.environ.get("HEPATRIAL_REQUIRE_POSTGRES", "").strip() not in ("", "0"):
            pytest.fail(f"HEPATRIAL_REQUIRE_POSTGRES is set but {msg}")
        pytest.skip(msg)
    name = f"hepatrial_e2e_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = _pg_url(name)
    env["HEPATRIAL_DATABASE_URL"] = url

    def run_pg(sql: str) -> int:
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            return con.execute(sql).rowcount

    try:
        yield {"name": "postgresql", "env": env, "db_args": [], "script_args": [],
               "sql": run_pg}  # fmt: skip
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def cli(backend: dict[str, Any], *args: str, stdin: str | None = None) -> Any:
    """Run ``hepatrial ARGS`` in a subprocess against the backend's database."""
    cmd = [sys.executable, "-c", "from hepatrial.cli import app; app()", *args]
    if (args and args[0] in ("init", "serve")) or args[:1] in (("user",), ("audit",)):
        cmd += backend["db_args"]
    return subprocess.run(
        cmd, env=backend["env"], capture_output=True, text=True, input=stdin, timeout=300
    )


def script(backend: dict[str, Any], source: str, tmp_path: Path) -> Any:
    f = tmp_path / "script.py"
    f.write_text(source)
    return subprocess.run(
        [sys.executable, str(f), *backend["script_args"]],
        env=backend["env"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_end_to_end_with_tampering(backend: dict[str, Any], tmp_path: Path) -> None:
    r = cli(backend, "init", "--protocol", "kharaziha2009")
    assert r.returncode == 0, r.stderr
    assert "protocol kharaziha2009 v1.0.0 created" in r.stdout
    r = cli(backend, "init", "--protocol", "kharaziha2009")
    assert r.returncode == 0 and "unchanged" in r.stdout, r.stderr

    r = script(backend, ENROL_SCRIPT, tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["arm"] == "single"
    assert out["w1"] == "late" and out["deviations"] == ["visit_window"]
    assert "a reason for change is required" in out["refused"]
    assert out["lab_value"] == pytest.approx(41.04)

    r = cli(backend, "user", "add", "coord", "--site", "S01", "--password-stdin",
            stdin="correct-horse-battery\n")  # fmt: skip
    assert r.returncode == 0, r.stderr

    r = cli(backend, "audit", "verify")
    assert r.returncode == 0, r.stderr
    assert "audit trail OK" in r.stdout

    r = cli(backend, "audit", "log", "--participant", "K01")
    assert r.returncode == 0, r.stderr
    assert "transcription error" in r.stdout and "labresult" in r.stdout
    assert "2.3 → 2.4" in r.stdout

    sql = backend["sql"]
    lab = out["lab_pk"]
    # raw-SQL tampering: UPDATE and DELETE on a history row and on a live row
    assert (
        sql(
            "UPDATE trials_historicalparticipant SET year_of_birth = 1950 "
            "WHERE history_id = (SELECT MIN(history_id) FROM trials_historicalparticipant)"
        )
        == 1
    )
    assert (
        sql(
            "DELETE FROM trials_historicalvisit "
            "WHERE history_id = (SELECT MIN(history_id) FROM trials_historicalvisit)"
        )
        == 1
    )
    assert sql(f"UPDATE trials_labresult SET value = 1.0 WHERE id = {lab}") == 1
    assert sql("DELETE FROM trials_protocoldeviation") == 1
    r = cli(backend, "audit", "verify")
    assert r.returncode == 1
    assert "audit trail FAILED verification" in r.stderr
    assert "live_unaudited: trials.visit" in r.stderr  # its only history row is gone
    assert "history_edited: trials.historicalparticipant" in r.stderr
    assert "history_missing: trials.historicalvisit" in r.stderr
    assert f"live_edited: trials.labresult {lab}" in r.stderr
    assert "value: '41.04' → '1.0'" in r.stderr
    assert "live_deleted: trials.protocoldeviation" in r.stderr
    # a ledger row deleted
    assert sql("DELETE FROM trials_auditledger WHERE seq = 2") == 1
    r = cli(backend, "audit", "verify")
    assert r.returncode == 1 and "ledger_gap: ledger" in r.stderr


def test_cli_protocol_version_change_needs_reason(backend: dict[str, Any], tmp_path: Path) -> None:
    from hepatrial.protocol.loader import builtin_path

    assert cli(backend, "init").returncode == 0
    f = tmp_path / "k2.toml"
    f.write_text(
        builtin_path("kharaziha2009").read_text().replace('version = "1.0.0"', 'version = "2.0.0"')
    )
    r = cli(backend, "init", "--protocol", str(f))
    assert r.returncode == 1 and "--reason" in r.stderr
    r = cli(backend, "init", "--protocol", str(f), "--reason", "amendment 2")
    assert r.returncode == 0 and "v2.0.0 updated" in r.stdout, r.stderr


CONCURRENT_SCRIPT = r"""
import sys
from hepatrial.trials import setup
setup(sys.argv[2] if len(sys.argv) > 2 else None)
from hepatrial.trials import services as s
for i in range(25):
    s.create_site(code=f"W{sys.argv[1]}-{i:02d}", name="concurrent writer")
"""


def test_concurrent_writers_keep_one_valid_chain(backend: dict[str, Any], tmp_path: Path) -> None:
    assert cli(backend, "init").returncode == 0
    f = tmp_path / "writer.py"
    f.write_text(CONCURRENT_SCRIPT)
    procs = [
        subprocess.Popen(
            [sys.executable, str(f), str(w), *backend["script_args"]],
            env=backend["env"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    r = cli(backend, "audit", "verify")
    assert r.returncode == 0, r.stderr
    # system user + protocol config + site + arm (init), then 4 writers x 25 sites
    n = int(r.stdout.split(" ledger entries")[0].rsplit(" ", 1)[-1])
    assert n == 104
