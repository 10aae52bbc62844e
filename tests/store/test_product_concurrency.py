"""Two concurrent administrations of one batch, from two processes: exactly one succeeds.

Both processes are started while the test holds the store's write lock (PostgreSQL: the
audit ledger's advisory lock, which every write takes first; SQLite: a ``BEGIN IMMEDIATE``
write transaction), so both are inside ``record_administration`` waiting for it at the same
time. When the test lets go, one takes the lock, gives the batch and commits; the other then
locks the batch row (``SELECT ... FOR UPDATE``), reads it again and is refused by the dosing
gate: the batch has already been administered.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.store.test_e2e_cli import backend  # noqa: F401  (fixture: fresh SQLite / PostgreSQL)

REPO = Path(__file__).resolve().parents[2]

SETUP = r"""
import sys
from hepatrial.trials import setup, migrate
setup(sys.argv[1] if len(sys.argv) > 1 else None)
migrate()
from hepatrial.trials import services
from tests.store import _product as P
from tests.store.conftest import DAY0, enrol
services.install_protocol("kharaziha2009")
enrol(services, "K01")
b = P.ready_batch(services, "B1", "K01", DAY0)
print(b.coi_identifier)
"""

GIVE = r"""
import json, sys
from hepatrial.trials import setup
setup(sys.argv[2] if len(sys.argv) > 2 else None)
from hepatrial.trials import services
from tests.store import _product as P
from tests.store.conftest import DAY0
print("ready", flush=True)
try:
    a = P.administer(services, "K01", "B1", DAY0, operator=sys.argv[1], review=False)
    print(json.dumps({"ok": a.pk}))
except services.StoreError as exc:
    print(json.dumps({"refused": str(exc)}))
"""


def _env(be: dict[str, Any]) -> dict[str, str]:
    env = dict(be["env"])
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_two_concurrent_administrations_of_one_batch(backend: dict[str, Any]) -> None:  # noqa: F811
    env = _env(backend)
    r = subprocess.run([sys.executable, "-c", SETUP, *backend["script_args"]], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    hold: Any
    if backend["name"] == "postgresql":
        import psycopg

        from hepatrial.trials.audit.chain import _LOCK_KEY

        hold = psycopg.connect(env["HEPATRIAL_DATABASE_URL"], autocommit=True)
        hold.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
    else:
        hold = sqlite3.connect(backend["script_args"][0], isolation_level=None, timeout=30)
        hold.execute("BEGIN IMMEDIATE")
    procs = [subprocess.Popen([sys.executable, "-c", GIVE, f"nurse{i}",
                               *backend["script_args"]], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (1, 2)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        if backend["name"] == "postgresql":  # both wait for the lock inside their transaction
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                n = hold.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND NOT granted").fetchone()[0]
                if n == 2:
                    break
                time.sleep(0.1)
            assert n == 2, f"{n} process(es) waiting for the ledger lock"
        else:
            time.sleep(3)  # both are blocked at BEGIN IMMEDIATE (busy timeout 30 s)
    finally:
        if backend["name"] == "postgresql":
            hold.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
        else:
            hold.execute("COMMIT")
        hold.close()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    ok = [o for o in outs if "ok" in o]
    refused = [o["refused"] for o in outs if "refused" in o]
    assert len(ok) == 1 and len(refused) == 1, outs
    assert "batch_released: batch 'B1' has already been administered" in refused[0]
    rows = _rows(backend, "SELECT state FROM trials_cellproductbatch WHERE batch_id = 'B1'")
    assert rows == [("administered",)]
    assert _rows(backend, "SELECT count(*) FROM trials_administration") == [(1,)]
    assert _rows(backend, "SELECT count(*) FROM trials_custodyevent WHERE action = "
                 "'administer'") == [(1,)]


def _rows(be: dict[str, Any], sql: str) -> list[tuple[Any, ...]]:
    if be["name"] == "postgresql":
        import psycopg

        with psycopg.connect(be["env"]["HEPATRIAL_DATABASE_URL"]) as con:
            return [tuple(r) for r in con.execute(sql).fetchall()]
    with sqlite3.connect(be["script_args"][0]) as con:
        return [tuple(r) for r in con.execute(sql).fetchall()]
