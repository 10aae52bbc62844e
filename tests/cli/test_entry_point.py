"""The ``hepatrial`` entry point's last-resort handler (hepatrial.cli.main, cli/_guard.py)."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hepatrial import errors
from hepatrial.cli._guard import EX_INTERNAL, EX_IOERR, judge

ROOT = Path(__file__).resolve().parents[2]

BOOM = """
import sys
import typer
from hepatrial import errors
from hepatrial.cli import app, main

@app.command("boom")
def boom(kind: str) -> None:
    if kind == "bug":
        raise RuntimeError("a bug\\nover two lines")
    if kind == "locked":
        raise errors.RecordLocked("visit W1 of K01 is locked")
    if kind == "disk":
        raise OSError(28, "No space left on device", "/full/out.csv")
    raise typer.Exit(0)

main(sys.argv[1:])
"""


def _boom(*args: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HEPATRIAL_DEBUG"}
    if debug:
        env["HEPATRIAL_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-c", BOOM, "boom", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_console_script_points_at_main() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["hepatrial"] == "hepatrial.cli:main"
    assert "main()" in (ROOT / "src/hepatrial/__main__.py").read_text()


def test_internal_error_is_one_line_exit_70_traceback_only_with_debug() -> None:
    r = _boom("bug")
    assert r.returncode == EX_INTERNAL == 70
    assert r.stderr.strip() == ("internal error: RuntimeError: a bug over two lines; please "
                                "report it (HEPATRIAL_DEBUG=1 shows the traceback)")
    assert "Traceback" not in r.stdout + r.stderr
    r = _boom("bug", debug=True)
    assert r.returncode == 70
    assert "Traceback (most recent call last)" in r.stderr and "RuntimeError: a bug" in r.stderr
    assert r.stderr.rstrip().endswith("please report it (HEPATRIAL_DEBUG=1 shows the traceback)")


def test_hepatrial_error_gives_its_message_and_exit_code() -> None:
    r = _boom("locked")
    assert r.returncode == 5, r.stderr
    assert r.stderr.strip() == "error: visit W1 of K01 is locked"
    r = _boom("disk")
    assert r.returncode == EX_IOERR
    assert r.stderr.strip() == "error: /full/out.csv: No space left on device"
    assert _boom("ok").returncode == 0


def test_python_dash_m_runs_main() -> None:
    r = subprocess.run([sys.executable, "-m", "hepatrial", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("hepatrial ")


@pytest.mark.parametrize(("exc", "code", "internal", "text"), [
    (errors.PermissionDenied("import_data: user 'x' is monitor"), 3, False,
     "error: import_data: user 'x' is monitor"),
    (errors.NotFoundError("no account 'alcie'"), 2, False, "error: no account 'alcie'"),
    (errors.ImportRefused("3 rows rejected"), 1, False, "error: 3 rows rejected"),
    (PermissionError(errno.EACCES, "Permission denied", "/ro/x.csv"), 74, False,
     "error: /ro/x.csv: Permission denied"),
    (KeyboardInterrupt(), 130, False, "interrupted"),
    (KeyError("x"), 70, True, "internal error: KeyError: 'x'; please report it "
     "(HEPATRIAL_DEBUG=1 shows the traceback)"),
])
def test_judge(exc: BaseException, code: int, internal: bool, text: str) -> None:
    v = judge(exc)
    assert (v.code, v.internal, v.message) == (code, internal, text)


def test_judge_database_errors() -> None:
    from django.db import utils

    v = judge(utils.OperationalError("unable to open database file"))
    assert (v.code, v.internal) == (2, False)
    assert v.message == "error: database: unable to open database file"
    v = judge(utils.OperationalError("no such table: trials_participant"))
    assert v.code == 2 and "run `hepatrial init` on it first" in v.message
    v = judge(sqlite3.OperationalError("database is locked"))
    assert v.message == "error: database: database is locked"
    # a value the database refuses is a missing rule: internal
    v = judge(utils.DataError("value too long for type character varying(40)"))
    assert v.internal and v.code == 70
    v = judge(utils.IntegrityError("UNIQUE constraint failed"))
    assert v.internal
