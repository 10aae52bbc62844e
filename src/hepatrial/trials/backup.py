"""Online backup and verified restore of the trial store (``hepatrial backup`` / ``restore``).

A backup is one zip file holding the database copy and ``manifest.json``:

* ``format`` ``hepatrial-backup/1``, ``engine`` (``sqlite`` | ``postgresql``), ``created_at``
  (UTC), the hepatrial version, the ``checkpoint`` ``SEQ:HASH`` of the ledger head at backup
  time (:mod:`hepatrial.trials.audit.checkpoint`), and ``sha256``/``size`` of the database copy;
* SQLite: ``store.sqlite3`` made with SQLite's online backup API (a consistent snapshot while
  other connections keep reading and writing; https://www.sqlite.org/backup.html);
* PostgreSQL: ``store.pgdump`` made by ``pg_dump --format=custom`` (a consistent snapshot of
  one transaction; the client must be installed: Debian ``postgresql-client``).

Restore refuses a file whose checksum does not match, refuses to overwrite a store that holds
any table unless ``force``, restores, and then verifies the restored store: ``audit verify``
must find no problem and the ledger must contain the backup's checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection

from hepatrial.errors import ConfigurationError, InputError

__all__ = ["BackupError", "BackupInfo", "backup", "read_manifest", "restore", "store_is_empty"]

FORMAT = "hepatrial-backup/1"
_MEMBER = {"sqlite": "store.sqlite3", "postgresql": "store.pgdump"}


class BackupError(InputError):
    """A backup cannot be made, read or restored (the message says why)."""


@dataclass(frozen=True)
class BackupInfo:
    """What a backup holds (its manifest)."""

    path: Path
    engine: str
    created_at: str
    checkpoint: str
    sha256: str
    size: int
    version: str


def _engine() -> str:
    return "sqlite" if connection.vendor == "sqlite" else "postgresql"


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _pg_env_args() -> tuple[dict[str, str], list[str]]:
    cfg = connection.settings_dict
    env = dict(os.environ)
    if cfg.get("PASSWORD"):
        env["PGPASSWORD"] = str(cfg["PASSWORD"])
    args: list[str] = []
    if cfg.get("HOST"):
        args += ["--host", str(cfg["HOST"])]
    if cfg.get("PORT"):
        args += ["--port", str(cfg["PORT"])]
    if cfg.get("USER"):
        args += ["--username", str(cfg["USER"])]
    return env, args


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise ConfigurationError(
            f"{what}: {cmd[0]} is not installed (Debian: apt-get install postgresql-client)"
        )
    res = subprocess.run([exe, *cmd[1:]], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise BackupError(f"{what}: {cmd[0]} failed: {res.stderr.strip() or res.stdout.strip()}")


def backup(output: str | Path) -> BackupInfo:
    """Write a backup of the configured store to ``output`` (a new zip file; written to a
    temporary name first and renamed, so a failed backup leaves nothing behind)."""
    from hepatrial import __version__
    from hepatrial.trials.audit.checkpoint import format_checkpoint

    out = Path(output)
    if out.exists() and out.is_dir():
        raise BackupError(f"backup: {out} is a directory; give a file name")
    engine = _engine()
    checkpoint = format_checkpoint()
    created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="hepatrial-backup-") as tmp:
        copy = Path(tmp) / _MEMBER[engine]
        if engine == "sqlite":
            connection.ensure_connection()
            src = connection.connection
            dst = sqlite3.connect(copy)
            try:
                src.backup(dst)
            finally:
                dst.close()
        else:
            env, args = _pg_env_args()
            _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", *args,
                  "--file", str(copy), str(connection.settings_dict["NAME"])], env, "backup")
        digest, size = _sha256(copy)
        manifest = {
            "format": FORMAT, "engine": engine, "created_at": created, "version": __version__,
            "checkpoint": checkpoint, "sha256": digest, "size": size,
            "member": _MEMBER[engine],
        }
        partial = out.with_name(out.name + ".partial")
        try:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
                z.write(copy, _MEMBER[engine])
            os.replace(partial, out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise BackupError(f"backup: cannot write {out}: {exc.strerror or exc}") from None
    return BackupInfo(out, engine, created, checkpoint, digest, size, __version__)


def read_manifest(path: str | Path) -> BackupInfo:
    """The manifest of a backup file; :class:`BackupError` when it is not one."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as z:
            m = json.loads(z.read("manifest.json").decode("utf-8"))
    except FileNotFoundError:
        raise BackupError(f"restore: no file {p}") from None
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError, OSError):
        raise BackupError(
            f"restore: {p} is not a hepatrial backup (no readable manifest)"
        ) from None
    if m.get("format") != FORMAT or m.get("engine") not in _MEMBER:
        raise BackupError(f"restore: {p}: unknown backup format {m.get('format')!r}")
    return BackupInfo(p, m["engine"], m["created_at"], m["checkpoint"], m["sha256"],
                      int(m["size"]), m.get("version", ""))


def store_is_empty() -> bool:
    """True when the configured database holds no table at all."""
    return not connection.introspection.table_names()


def _extract(path: Path, info: BackupInfo, tmp: Path) -> Path:
    member = _MEMBER[info.engine]
    with zipfile.ZipFile(path) as z:
        z.extract(member, tmp)
    copy = tmp / member
    digest, size = _sha256(copy)
    if digest != info.sha256 or size != info.size:
        raise BackupError(
            f"restore: {path}: the database copy does not match the manifest's checksum "
            f"(sha256 {digest[:12]}… vs {info.sha256[:12]}…): the file is damaged or altered"
        )
    return copy


def restore(path: str | Path, *, force: bool = False) -> tuple[BackupInfo, list[Any]]:
    """Restore a backup into the configured store and verify it.

    Returns ``(manifest, problems)``: ``problems`` is what ``audit verify --checkpoint`` finds
    in the restored store (empty when it verifies). Refuses a non-empty store unless ``force``,
    a backup of the other engine, and a file whose checksum does not match.
    """
    from hepatrial.trials.audit.checkpoint import check_checkpoints
    from hepatrial.trials.audit.verify import verify

    info = read_manifest(path)
    engine = _engine()
    if info.engine != engine:
        raise BackupError(
            f"restore: {path} is a {info.engine} backup; the target store is {engine}"
        )
    with tempfile.TemporaryDirectory(prefix="hepatrial-restore-") as tmpdir:
        copy = _extract(Path(path), info, Path(tmpdir))  # checked before the target is touched
        if not force and not store_is_empty():
            raise BackupError(
                "restore: the target store is not empty; restore into a new database, or pass "
                "--force to replace everything in it"
            )
        if engine == "sqlite":
            target = Path(str(connection.settings_dict["NAME"]))
            connection.close()
            src = sqlite3.connect(copy)
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)  # page-by-page copy into the target (also removes old content)
            finally:
                src.close()
                dst.close()
        else:
            env, args = _pg_env_args()
            connection.close()
            _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
                  "--single-transaction", *args, "--dbname",
                  str(connection.settings_dict["NAME"]), str(copy)], env, "restore")
    problems = verify() + check_checkpoints([info.checkpoint])
    return info, problems
