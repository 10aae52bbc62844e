"""Backup → restore → verify on SQLite and PostgreSQL; checkpoints catch what plain verify
cannot (a consistent rewrite, an older backup restored)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_ADMIN_URL = os.environ.get("HEPATRIAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
CLI = [sys.executable, "-c", "from hepatrial.cli import app; app()"]

WRITE = r"""
import sys
from hepatrial.trials import setup
setup(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None)
from hepatrial.trials import services as s
n = int(sys.argv[2])
s.create_site(code=f"X{n:02d}", name=f"site {n}")
"""


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("DJANGO_SETTINGS_MODULE", "HEPATRIAL_DATABASE_URL", "HEPATRIAL_DB")}


class Store:
    """One fresh database (SQLite file or PostgreSQL database) and how to reach it."""

    def __init__(self, env: dict[str, str], db_args: list[str], path: str) -> None:
        self.env, self.db_args, self.path = env, db_args, path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args, *self.db_args], env=self.env, capture_output=True,
                              text=True, timeout=300)

    def ok(self, *args: str) -> str:
        r = self.cli(*args)
        assert r.returncode == 0, f"hepatrial {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def write(self, n: int) -> None:
        r = subprocess.run([sys.executable, "-c", WRITE, self.path, str(n)], env=self.env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores(request: Any, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two fresh, empty stores of the same engine (source, target)."""
    if request.param == "sqlite":
        a, b = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
        yield (Store(_base_env(), ["--db", str(a)], str(a)),
               Store(_base_env(), ["--db", str(b)], str(b)))
        return
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        msg = f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc}); run .ci/postgres.sh"
        if os.environ.get("HEPATRIAL_REQUIRE_POSTGRES", "").strip() not in ("", "0"):
            pytest.fail(f"HEPATRIAL_REQUIRE_POSTGRES is set but {msg}")
        pytest.skip(msg)
    names = [f"hepatrial_bk_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    out = []
    for name in names:
        admin.execute(f'CREATE DATABASE "{name}"')
        env = _base_env()
        env["HEPATRIAL_DATABASE_URL"] = urlunsplit(urlsplit(PG_ADMIN_URL)._replace(path="/" + name))
        out.append(Store(env, [], ""))
    try:
        yield out[0], out[1]
    finally:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_backup_restore_verify_and_checkpoints(stores: tuple[Store, Store],
                                               tmp_path: Path) -> None:
    src, dst = stores
    src.ok("init", "--protocol", "kharaziha2009")
    src.write(1)
    early = src.ok("audit", "checkpoint").strip()
    seq_early = int(early.split(":")[0])
    bak = tmp_path / "early.hepatrial-backup"
    out = src.ok("backup", "-o", str(bak))
    assert f"checkpoint {early}" in out
    src.write(2)
    src.write(3)
    late = src.ok("audit", "checkpoint").strip()
    assert int(late.split(":")[0]) > seq_early
    # the live store keeps both checkpoints after legitimate writes
    src.ok("audit", "verify", "--checkpoint", early, "--checkpoint", late)

    out = dst.ok("restore", str(bak))
    assert "audit trail verified" in out and early in out
    dst.ok("audit", "verify", "--checkpoint", early)
    # an older backup restored in place of the current store: plain verify passes, the later
    # checkpoint does not
    dst.ok("audit", "verify")
    r = dst.cli("audit", "verify", "--checkpoint", late)
    assert r.returncode == 1
    assert f"the ledger has no entry {late.split(':')[0]}" in r.stderr
    # restoring over a store that holds data needs --force
    r = dst.cli("restore", str(bak))
    assert r.returncode == 1 and "the target store is not empty" in r.stderr
    dst.ok("restore", str(bak), "--force")


def test_damaged_or_foreign_files_are_refused(tmp_path: Path) -> None:
    a = tmp_path / "a.sqlite3"
    s = Store(_base_env(), ["--db", str(a)], str(a))
    s.ok("init")
    bak = tmp_path / "a.zip"
    s.ok("backup", "-o", str(bak))
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bak) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "store.sqlite3":
                data = data[:-1] + bytes([data[-1] ^ 1])
            zout.writestr(item, data)
    t = Store(_base_env(), ["--db", str(tmp_path / "t.sqlite3")], "")
    r = t.cli("restore", str(bad))
    assert r.returncode == 1 and "does not match the manifest's checksum" in r.stderr
    (tmp_path / "notes.txt").write_text("hello")
    r = t.cli("restore", str(tmp_path / "notes.txt"))
    assert r.returncode == 1 and "is not a hepatrial backup" in r.stderr
    assert not (tmp_path / "t.sqlite3").exists()  # a refused restore creates no store
    r = s.cli("audit", "verify", "--checkpoint", "12:abc")
    assert r.returncode == 2 and "is not SEQ:HASH" in r.stderr


def test_checkpoint_catches_a_consistent_rewrite(tmp_path: Path) -> None:
    """Rewrite a stored value, its history row, its ledger digest and every later chain hash:
    plain verify cannot see it; a checkpoint taken before can."""
    a = tmp_path / "a.sqlite3"
    s = Store(_base_env(), ["--db", str(a)], str(a))
    s.ok("init")
    s.write(1)
    cp = s.ok("audit", "checkpoint").strip()
    s.write(2)
    rewrite = r"""
import sys
from hepatrial.trials import setup
setup(sys.argv[1])
from django.db import connection, transaction
from hepatrial.trials.audit.chain import GENESIS, canonical_time, entry_hash, row_digest
from hepatrial.trials.models import AuditLedger, Site
H = Site.history.model
with transaction.atomic():
    site = Site.objects.get(code="X01")
    with connection.cursor() as cur:
        cur.execute("UPDATE trials_site SET name = 'forged' WHERE id = %s", [site.pk])
        cur.execute("UPDATE trials_historicalsite SET name = 'forged' WHERE id = %s", [site.pk])
    prev = GENESIS
    for row in AuditLedger.objects.order_by("seq"):
        digest = row.digest
        if row.history_model == "trials.historicalsite":
            digest = row_digest(H.objects.get(history_id=row.history_pk))
        chain = entry_hash(row.format, row.seq, row.history_model, row.history_pk,
                           row.object_pk, row.history_type, canonical_time(row.recorded_at),
                           digest, prev)
        with connection.cursor() as cur:
            cur.execute("UPDATE trials_auditledger SET digest=%s, prev_hash=%s, chain_hash=%s "
                        "WHERE seq=%s", [digest, prev, chain, row.seq])
        prev = chain
print("rewritten")
"""
    r = subprocess.run([sys.executable, "-c", rewrite, str(a)], env=_base_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "rewritten" in r.stdout, r.stderr
    with sqlite3.connect(a) as con:
        assert con.execute("SELECT name FROM trials_site WHERE code='X01'").fetchone()[0] == \
            "forged"
    s.ok("audit", "verify")  # consistent: the chain alone cannot tell
    r = s.cli("audit", "verify", "--checkpoint", cp)
    assert r.returncode == 1 and "was rewritten" in r.stderr
