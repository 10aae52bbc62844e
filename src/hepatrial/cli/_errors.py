"""Exit codes of the ``hepatrial`` command: one mapping from :mod:`hepatrial.errors` classes.

A command turns a refusal into a message on standard error and an exit code with
:func:`fail` (or the :func:`handled` context manager), so a script can tell what happened
without parsing the message:

==== ====================================================================================
code meaning
==== ====================================================================================
0    done
1    refused: bad input or a write the store's rules refuse (``InputError``, ``StoreError``,
     ``ChangeReasonRequired``, ``ImportRefused``, ``AuditIntegrityError``, any other
     ``HepatrialError``)
2    not found or not usable: no such participant/visit/user/file, store not initialised
     (``NotFoundError``, ``ConfigurationError``); also typer's usage errors
3    ``PermissionDenied``: the user's role or sites do not allow it
4    ``AuthenticationFailed``: wrong password, deactivated account
5    ``RecordLocked``: the visit, casebook or trial is locked
==== ====================================================================================

The most specific class in an error's MRO that :data:`EXIT_CODES` names decides. This module
imports no Django (it is loaded by commands before they open the store).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from hepatrial import errors

__all__ = ["EXIT_CODES", "exit_code", "fail", "handled"]

#: error class -> exit code (see the module docstring)
EXIT_CODES: dict[type[BaseException], int] = {
    errors.HepatrialError: 1,
    errors.InputError: 1,
    errors.StoreError: 1,
    errors.ChangeReasonRequired: 1,
    errors.ConcurrentEditError: 1,
    errors.ImportRefused: 1,
    errors.AuditIntegrityError: 1,
    errors.NotFoundError: 2,
    errors.ConfigurationError: 2,
    errors.PermissionDenied: 3,
    errors.AuthenticationFailed: 4,
    errors.RecordLocked: 5,
}


def exit_code(exc: BaseException) -> int:
    """The exit code of ``exc``: its most specific class named in :data:`EXIT_CODES` (1 for a
    ``HepatrialError`` not named, 1 for anything else)."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def fail(exc: BaseException, prefix: str = "error") -> NoReturn:
    """Print ``prefix: message`` on standard error and exit with :func:`exit_code`."""
    typer.secho(f"{prefix}: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(exit_code(exc))


@contextmanager
def handled(prefix: str = "error") -> Iterator[None]:
    """Turn a :class:`~hepatrial.errors.HepatrialError` raised inside into :func:`fail`."""
    try:
        yield
    except errors.HepatrialError as exc:
        fail(exc, prefix)
