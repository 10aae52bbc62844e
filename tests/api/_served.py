"""A real ``hepatrial serve`` (waitress) on a free port, on a fresh SQLite file or a fresh
PostgreSQL database, with the test trial of :mod:`tests.api.conftest` and API tokens made by
``hepatrial user token`` (the token is the last word it prints).

PostgreSQL: ``postgresql://postgres@127.0.0.1:5432/test`` or ``HEPATRIAL_TEST_PG_URL``; a
database is created for the fixture and dropped after it. Without a server the PostgreSQL
cases are skipped with the reason, or fail when ``HEPATRIAL_REQUIRE_POSTGRES=1`` (CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests._serving import cli, cli_env, free_port, start
from tests._serving import stop as _stop

PG_ADMIN_URL = os.environ.get("HEPATRIAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

#: builds the test trial in the store named by argv[1] (SQLite) or HEPATRIAL_DATABASE_URL
WORLD_SCRIPT = r"""
import sys
from hepatrial.trials import setup
setup(sys.argv[1] if len(sys.argv) > 1 else None)
from hepatrial.trials import services
from tests.api.conftest import enrol
services.create_site(code="S02", name="second site")
enrol(services, "K01", "S01")
enrol(services, "K02", "S02")
services.create_user(username="coord_a", password=None, role="coordinator", site_codes=["S01"])
services.create_user(username="dm", password=None, role="data-manager")
"""


@dataclass
class Served:
    """A running server: ``base`` URL, ``tokens[username]``, the store's ``env``."""

    base: str
    env: dict[str, str]
    db_args: list[str]
    tokens: dict[str, str] = field(default_factory=dict)
    log: Path | None = None

    def request(self, method: str, path: str, token: str | None = None,
                body: bytes | None = None) -> tuple[int, Any, bytes]:
        """``(status, headers, body)`` of one request (headers: case-insensitive)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()


#: the environment of a ``hepatrial`` subprocess (its own store)
_env = cli_env


def run(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    """``hepatrial ARGS``; its standard output (fails the test on a non-zero exit)."""
    return cli(*args, env=env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_env(request: Any, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """``(backend, env, --db args)`` of a fresh, empty store of each kind."""
    env = _env()
    if request.param == "sqlite":
        db = tmp_path_factory.mktemp("api-store") / "store.sqlite3"
        yield "sqlite", env, ["--db", str(db)]
        return
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:  # no server
        msg = f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc}); run .ci/postgres.sh"
        if os.environ.get("HEPATRIAL_REQUIRE_POSTGRES", "").strip() not in ("", "0"):
            pytest.fail(f"HEPATRIAL_REQUIRE_POSTGRES is set but {msg}")
        pytest.skip(msg)
    name = f"hepatrial_api_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    env["HEPATRIAL_DATABASE_URL"] = urlunsplit(urlsplit(PG_ADMIN_URL)._replace(path="/" + name))
    try:
        yield "postgresql", env, []
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def serve(env: dict[str, str], db_args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start ``hepatrial serve`` on a free port; ``(process, base URL)`` once it answers."""
    s = start([*db_args, "--threads", "4"], log, env={**env, "HEPATRIAL_SECRET_KEY": "s" * 64},
              path="/api/v1/openapi.json", timeout=120)
    return s.proc, s.base


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started by :func:`serve`."""
    _stop(proc, timeout=15)


@pytest.fixture(scope="module")
def served(store_env: tuple[str, dict[str, str], list[str]],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The test trial in a fresh store of each kind, served by ``hepatrial serve``, with a
    token for ``coord_a`` (coordinator of S01) and ``dm`` (data manager)."""
    from tests.conftest import REPO_ROOT

    backend, env, db_args = store_env
    run(env, "init", "--protocol", "kharaziha2009", *db_args)
    script = [sys.executable, "-c", WORLD_SCRIPT, *(db_args[1:] if db_args else [])]
    r = subprocess.run(script, env={**env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True,
                       text=True, timeout=300, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr
    s = Served(base="", env=env, db_args=db_args)
    for name in ("coord_a", "dm"):
        out = run(env, "user", "token", name, "--reason", "API fuzz", *db_args)
        s.tokens[name] = out.split()[-1]
    s.log = tmp_path_factory.mktemp(f"serve-{backend}") / "serve.log"
    proc, s.base = serve(env, db_args, s.log)
    try:
        yield s
    finally:
        stop(proc)


__all__ = ["Served", "free_port", "json", "run", "serve", "served", "stop", "store_env"]
