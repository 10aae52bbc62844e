"""The last-resort handler of the ``hepatrial`` command: no traceback reaches a user.

Every command turns the refusals it expects into a message and an exit code itself
(:mod:`hepatrial.cli._errors`). Whatever still escapes a command is judged here, by
:func:`judge`, which :func:`hepatrial.cli.main` (the console entry point) and the fuzz test
(``tests/cli/test_fuzz.py``) both use, so the test checks exactly what a user would see:

============================== ======= ==========================================================
what escaped                   exit    message (standard error)
============================== ======= ==========================================================
``HepatrialError``             1-5     ``error: <message>`` (code: :mod:`hepatrial.cli._errors`)
``OSError`` (disk full, no     74      ``error: <file>: <reason>`` (``EX_IOERR`` of sysexits.h)
permission, not a directory)
database not usable            2       ``error: database: <what failed>`` (cannot connect, locked,
(``OperationalError``, no              no hepatrial tables: then ``run hepatrial init``)
schema)
``KeyboardInterrupt``          130     ``interrupted``
anything else                  70      ``internal error: <type>: <message>; please report it``
                                       (``EX_SOFTWARE``); the traceback only with
                                       ``HEPATRIAL_DEBUG=1``
============================== ======= ==========================================================

A ``DataError``/``IntegrityError`` from the database is *internal*: the rules run before
anything is written, so a value the database refuses is a missing rule (please report it).

This module imports no Django (it looks at the exception's class names and modules).
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass

from hepatrial import errors

__all__ = ["EX_INTERNAL", "EX_IOERR", "Verdict", "database_problem", "judge", "report"]

#: exit code of an internal error (sysexits.h ``EX_SOFTWARE``)
EX_INTERNAL = 70
#: exit code of an input/output error of the file system (sysexits.h ``EX_IOERR``)
EX_IOERR = 74

_MISSING_SCHEMA = ("no such table", "does not exist", "undefinedtable")


@dataclass(frozen=True)
class Verdict:
    """What the user sees for an exception that escaped a command."""

    code: int
    message: str
    internal: bool


#: what SQLite (SQLITE_FULL) and PostgreSQL (ENOSPC: "could not extend file", "No space left
#: on device") say when the disk is full
_DISK_FULL = ("database or disk is full", "no space left on device", "could not extend file")


def _classes(exc: BaseException) -> list[str]:
    return [f"{c.__module__}.{c.__name__}" for c in type(exc).__mro__]


def database_problem(exc: BaseException) -> str | None:
    """``"database: <what failed>"`` when ``exc`` says the database cannot be used (cannot
    connect, locked, read-only, no hepatrial tables), else ``None``.

    Only ``OperationalError`` (the server, the file, the connection) and a missing table
    qualify; a refused value (``DataError``, ``IntegrityError``) does not: that is a rule the
    store should have checked first.
    """
    names = _classes(exc)
    is_db = any(n.startswith(("django.db.", "sqlite3.", "psycopg.")) for n in names)
    if not is_db:
        return None
    text = " ".join(str(exc).split())
    low = text.lower()
    missing_schema = any(m in low for m in _MISSING_SCHEMA) and (
        "table" in low or "relation" in low)
    if missing_schema:
        return (f"database: {text} - the database has no hepatrial tables (or an older "
                "schema): run `hepatrial init` on it first")
    if any(n.endswith(".OperationalError") for n in names):
        if any(m in low for m in _DISK_FULL):
            return (f"database: {text} - the disk that holds the store is full: the write "
                    "that failed was rolled back; free space there, then run the command "
                    "again")
        return f"database: {text}"
    return None


def judge(exc: BaseException) -> Verdict:
    """The exit code and message for ``exc`` (see the module docstring)."""
    from hepatrial.cli._errors import exit_code

    if isinstance(exc, KeyboardInterrupt):
        return Verdict(130, "interrupted", False)
    if isinstance(exc, errors.HepatrialError):
        return Verdict(exit_code(exc), f"error: {exc}", False)
    db = database_problem(exc)
    if db is not None:
        return Verdict(2, f"error: {db}", False)
    if isinstance(exc, OSError) and not type(exc).__module__.startswith(("django", "psycopg")):
        where = exc.filename if exc.filename is not None else ""
        why = exc.strerror or str(exc) or type(exc).__name__
        return Verdict(EX_IOERR, f"error: {where}: {why}" if where else f"error: {why}", False)
    text = " ".join(str(exc).split())[:500]
    return Verdict(EX_INTERNAL, f"internal error: {type(exc).__name__}: {text}; please report "
                   "it (HEPATRIAL_DEBUG=1 shows the traceback)", True)


def report(exc: BaseException) -> int:
    """Print the verdict on ``exc`` to standard error (and the traceback of an internal error
    when ``HEPATRIAL_DEBUG=1``); return the exit code."""
    verdict = judge(exc)
    if os.environ.get("HEPATRIAL_DEBUG", "").strip() not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    try:
        print(verdict.message, file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the exit code still says it
        pass
    return verdict.code
