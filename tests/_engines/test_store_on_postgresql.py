"""The in-process store tests (services, audit tampering, admin) again, on PostgreSQL.

Runs the engine-sensitive files of ``tests/store`` (:data:`ENGINE_SENSITIVE`; without the
tests parametrised by engine, which run on both anyway) in a subprocess
with ``HEPATRIAL_DATABASE_URL`` pointing at the PostgreSQL server; pytest-django creates and
drops its ``test_...`` database. Skipped when no server answers (fails instead when
``HEPATRIAL_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.store.test_e2e_cli import PG_ADMIN_URL, _pg_admin, _pg_url

#: the store tests rerun here; this file sits in tests/_engines so that it is collected first
#: and xdist starts this long test at once, beside the rest of the suite
HERE = Path(__file__).resolve().parents[1] / "store"
REPO = HERE.parents[1]


#: the store tests where the engine makes a difference (raw SQL and the hash chain, row locks
#: and concurrent saves, text lengths and NUL, constraints, the admin's transactions): rerun on
#: PostgreSQL. The workflow tests above the services (queries, SDV, product lifecycle, safety)
#: run on SQLite only here, to keep the suite within CI's 30 minutes on 2 cores; the CLI,
#: backup, migration and concurrency tests run on both engines in the main run.
ENGINE_SENSITIVE = (
    "test_audit.py", "test_audit_verify.py", "test_tamper.py", "test_locks.py",
    "test_signatures.py", "test_accounts_audit.py", "test_concurrent_edits.py",
    "test_services.py", "test_rules_labs.py", "test_rules_participants.py",
    "test_rules_visits.py", "test_admin.py", "test_product_custody.py", "test_roles.py",
)


@pytest.mark.postgres
def test_store_suite_on_postgresql() -> None:
    try:
        _pg_admin().close()
    except Exception as exc:
        msg = f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc}); run .ci/postgres.sh"
        if os.environ.get("HEPATRIAL_REQUIRE_POSTGRES", "").strip() not in ("", "0"):
            pytest.fail(f"HEPATRIAL_REQUIRE_POSTGRES is set but {msg}")
        pytest.skip(msg)
    env = dict(os.environ)
    env["HEPATRIAL_DATABASE_URL"] = _pg_url(f"hepatrial_inproc_{uuid.uuid4().hex[:10]}")
    r = subprocess.run(
        [
            sys.executable, "-m", "pytest", *[str(HERE / f) for f in ENGINE_SENSITIVE],
            "-q", "-p", "no:cacheprovider",
            "--create-db",
            f"--ignore={HERE / 'test_e2e_cli.py'}",
            # tests parametrised by engine already ran on both in the main run
            "-k", "not sqlite and not postgresql",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and " failed" not in r.stdout, tail
