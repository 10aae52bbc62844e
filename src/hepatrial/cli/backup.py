"""``hepatrial backup`` and ``hepatrial restore``: online backup and verified restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hepatrial.cli.store import DbOpt, _err, _open


def backup_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Backup file to write.")],
    db: DbOpt = None,
) -> None:
    """Back up the store while it runs (SQLite backup API / pg_dump); the file carries the
    ledger checkpoint and a checksum."""
    where = _open(db)
    from hepatrial.trials.backup import BackupError, backup

    try:
        info = backup(output)
    except BackupError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"{where}: backup written to {info.path} ({info.size} bytes, sha256 "
               f"{info.sha256}); checkpoint {info.checkpoint}")


def restore_cmd(
    file: Annotated[Path, typer.Argument(help="Backup file made by `hepatrial backup`.")],
    db: DbOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a store that is not empty.")
    ] = False,
) -> None:
    """Restore a backup into a store (a new one unless --force), then verify it."""
    from hepatrial.trials import setup

    where = setup(db)
    from hepatrial.trials.backup import BackupError, restore

    try:
        info, problems = restore(file, force=force)
    except BackupError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(1) from None
    if problems:
        _err(f"{where}: restored from {file}, but verification FAILED ({len(problems)}):")
        for p in problems:
            _err(f"  {p}")
        raise typer.Exit(1)
    typer.echo(f"{where}: restored from {file} (made {info.created_at}); audit trail verified; "
               f"checkpoint {info.checkpoint} present")


def register(app: typer.Typer) -> None:
    """Add ``backup`` and ``restore``."""
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)
