"""``hepatrial import participants|labs|visits`` and ``hepatrial export dataset|participants``."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["register"]

import_app = typer.Typer(help="Import data files into the trial store (all-or-nothing).",
                         no_args_is_help=True)
export_app = typer.Typer(help="Export data from the trial store.", no_args_is_help=True)

DbOpt = Annotated[Path | None, typer.Option("--db", help="SQLite file of the trial store "
                                            "(HEPATRIAL_DATABASE_URL takes precedence).")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Validate and count; write nothing: not to the store, and no rejects "
    "file unless --rejects FILE is given (the rejects are always printed).")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", help="Reason for change, required when a value already stored differs.")]
RejectsOpt = Annotated[Path | None, typer.Option(
    "--rejects", help="Where to write rejected rows (default <FILE>.rejects.csv; with "
    "--dry-run only when given).")]
UserOpt = Annotated[str | None, typer.Option(
    "--user", help="Existing account recorded in the history, with a role that may import "
    "(data-manager, admin); default: the system account.")]


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # logs and pipes: do not wrap reasons at 80 columns
        console = Console(highlight=False, soft_wrap=True, width=200)
    return console


def _database_failed(console: Console, exc: Exception, what: str) -> None:
    """Say what failed when the database refused or could not be reached (exit 2), instead
    of guessing; a value refused by the database is an internal error (re-raised)."""
    from hepatrial.cli._guard import database_problem

    problem = database_problem(exc)
    if problem is None:
        raise exc
    hint = ""
    if "locked" in problem.lower():
        hint = (" (another process held the store's write lock for longer than the 30 s "
                "timeout; run the command again when it has finished)")
    console.print(f"[red]error:[/red] {what}: {escape(problem)}{hint}")
    raise typer.Exit(2) from None


def _run_import(kind: str, file: Path, db: Path | None, dry_run: bool, reason: str | None,
                rejects: Path | None, user: str | None, map_name: str | None = None,
                day0: str | None = None) -> None:
    from django.db import DatabaseError

    from hepatrial.cli._errors import exit_code
    from hepatrial.cli._guard import EX_IOERR
    from hepatrial.errors import HepatrialError
    from hepatrial.ingest import importer
    from hepatrial.ingest.report import ImportRefused, render_rejects
    from hepatrial.ingest.validate import ImportFileError

    console = _console()
    target = importer.rejects_target(file, rejects, dry_run)
    try:
        if kind == "participants":
            from hepatrial.ingest.participants import import_participants

            result = import_participants(file, db=db, dry_run=dry_run, user=user,
                                         rejects_path=target)
        elif kind == "labs":
            result = importer.import_labs(file, db=db, dry_run=dry_run, reason=reason,
                                          user=user, rejects_path=target)
        else:
            try:
                anchor = _dt.date.fromisoformat(day0) if day0 else None
            except ValueError:
                raise ImportFileError(f"--day0 {day0!r} is not a date (YYYY-MM-DD)") from None
            from hepatrial.ingest.visits import import_visits

            result = import_visits(file, map_name or "", db=db, dry_run=dry_run,
                                   reason=reason, user=user, rejects_path=target,
                                   day0=anchor)
    except ImportRefused as exc:
        hint = ("see the rejects CSV for all of them" if exc.rejects_path is not None else
                "pass --rejects FILE to write all of them to a CSV file")
        render_rejects(exc.rejects, console, title=f"{file.name}: import refused",
                       more_hint=hint)
        console.print(f"[red]{escape(str(exc))}[/red]")
        if exc.rejects_error is not None:
            err = exc.rejects_error
            console.print(f"[red]error:[/red] the rejects file {target} cannot be written "
                          f"({escape(err.strerror or str(err))}); the import was refused and "
                          "nothing was imported, for the reasons listed above")
            raise typer.Exit(EX_IOERR) from None
        if exc.rejects_path is not None:
            console.print(f"rejects written to {exc.rejects_path}")
        else:
            console.print("no rejects file written (a dry run writes nothing; --rejects FILE "
                          "writes one)")
        raise typer.Exit(1) from None
    except ImportFileError as exc:  # the file or the store as a whole (StoreMissing too)
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except HepatrialError as exc:  # locked (5), not allowed (3), no such user (2), ...
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(exit_code(exc)) from None
    except DatabaseError as exc:
        _database_failed(console, exc, f"import {kind} {file.name}")
    console.print(f"{escape(file.name)}: {result.rows} rows: {result.summary()} "
                  f"in {result.seconds:.2f} s")
    for note in result.notes:
        console.print(f"note: {escape(note)}")


@import_app.command("participants")
def import_participants_cmd(
    file: Annotated[Path, typer.Argument(help="CSV: study_id, site, sex, year_of_birth, "
                                         "etiology, screening_date, consent_version, "
                                         "consent_date, enrolment_date and one column per "
                                         "eligibility input of the protocol.")],
    db: DbOpt = None,
    dry_run: DryRunOpt = False,
    rejects: RejectsOpt = None,
    user: UserOpt = None,
) -> None:
    """Import participants: screening, consent, eligibility evaluation and enrolment.

    One row per participant. The eligibility inputs are named as the protocol names them
    (`hepatrial protocol show NAME`): labs with their unit in the name as `hepatrial score`
    reads them (bilirubin_umol_l or bilirubin_mg_dl, creatinine_umol_l or creatinine_mg_dl,
    inr, ...), booleans true/false. Empty enrolment_date: screened only; empty consent
    columns: no consent yet (no eligibility assessment). A participant whose eligibility
    fails is stored as screen-failed with the failed criteria, never enrolled. Every row goes
    through the store's rules; if any row is refused nothing is written and every problem is
    listed (row, column, reason) on screen and in the rejects CSV. --dry-run runs the same
    checks and writes nothing at all.
    """
    _run_import("participants", file, db, dry_run, None, rejects, user)


@import_app.command("labs")
def import_labs_cmd(
    file: Annotated[Path, typer.Argument(help="Long CSV: participant, visit, analyte, value, "
                                         "unit, date[, lab].")],
    db: DbOpt = None,
    dry_run: DryRunOpt = False,
    reason: ReasonOpt = None,
    rejects: RejectsOpt = None,
    user: UserOpt = None,
) -> None:
    """Import lab results (one row per participant, visit and analyte).

    The whole file is validated first; if any row is rejected nothing is written and every
    problem is listed (row = 1-based data row; row 1 is the line after the header) on screen and
    in the rejects CSV. Re-importing the same file changes nothing; a value that differs from the
    stored one is a change and needs --reason (kept in the audit trail).
    """
    _run_import("labs", file, db, dry_run, reason, rejects, user)


@import_app.command("visits")
def import_visits_cmd(
    file: Annotated[Path, typer.Argument(help="Wide CSV: one row per participant-visit.")],
    map_: Annotated[str, typer.Option("--map", help="Import map TOML file, or the name of a "
                                      "bundled map (mayo-pbc).")],
    db: DbOpt = None,
    dry_run: DryRunOpt = False,
    reason: ReasonOpt = None,
    rejects: RejectsOpt = None,
    user: UserOpt = None,
    day0: Annotated[str | None, typer.Option(
        "--day0", help="Calendar date of day 0 for files that hold only days since enrolment "
        "(default 2000-01-01, an arbitrary anchor; exported actual_day is unaffected).")] = None,
) -> None:
    """Import a wide visit file through an import map (participants/visits created as needed).

    Same rules as `import labs`: whole-file validation, all-or-nothing, idempotent, --reason
    for changes. Rows in no visit window (or a second row in a window) are kept as unscheduled
    visits.
    """
    _run_import("visits", file, db, dry_run, reason, rejects, user, map_name=map_, day0=day0)


def _export(console: Console, what: str, write: Any) -> Any:
    """Run an export; a refusal (bad output name, missing store: exit 2), a file that cannot
    be written (exit 74) or a database that cannot be used (exit 2) is one message."""
    from django.db import DatabaseError

    from hepatrial.cli._guard import EX_IOERR
    from hepatrial.errors import HepatrialError

    try:
        return write()
    except HepatrialError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except DatabaseError as exc:
        _database_failed(console, exc, what)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        console.print(f"[red]error:[/red] {what}: cannot write {where}"
                      f"{escape(exc.strerror or str(exc))}")
        raise typer.Exit(EX_IOERR) from None


@import_app.command("qc")
def import_qc_cmd(
    file: Annotated[Path, typer.Argument(help="CSV: batch, test, result, analyst, date "
                                         "[, unit, method].")],
    db: DbOpt = None,
    dry_run: DryRunOpt = False,
    reason: ReasonOpt = None,
    rejects: RejectsOpt = None,
    user: UserOpt = None,
) -> None:
    """Import QC (release-test) results of cell-product batches from a laboratory file.

    One row per batch and test, kept as entered (the unit must be the specification's). Every
    row goes through the store's QC rule; if any row is refused nothing is written and every
    problem is listed (row, column, reason) on screen and in the rejects CSV. A value that
    differs from the stored one is a change and needs --reason.
    """
    from hepatrial.cli._errors import exit_code
    from hepatrial.errors import HepatrialError
    from hepatrial.ingest.qc import import_qc
    from hepatrial.ingest.report import ImportRefused, render_rejects
    from hepatrial.ingest.validate import ImportFileError

    console = _console()
    try:
        result = import_qc(file, db=db, dry_run=dry_run, reason=reason, user=user,
                           rejects_path=rejects)
    except ImportFileError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except ImportRefused as exc:
        render_rejects(exc.rejects, console, title=f"{file.name}: import refused")
        console.print(f"[red]{exc}[/red]")
        if getattr(exc, "rejects_path", None):
            console.print(f"rejects written to {exc.rejects_path}")
        raise typer.Exit(1) from None
    except HepatrialError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exit_code(exc)) from None
    console.print(f"{file.name}: {result.rows} rows: {result.summary()} "
                  f"in {result.seconds:.2f} s")


@export_app.command("dataset")
def export_dataset_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.csv or FILE.parquet")],
    db: DbOpt = None,
    no_derived: Annotated[bool, typer.Option("--no-derived",
                                             help="Leave out the derived score rows.")] = False,
) -> None:
    """Write the analysis dataset (docs/contracts.md §1), deterministically."""
    from hepatrial.ingest import export

    console = _console()
    frame = _export(console, "export dataset", lambda: export.write_dataset(
        output, db=db, derived=not no_derived))
    n_meas = int((frame["source"] == "measured").sum())
    console.print(f"{output}: {len(frame)} rows ({n_meas} measured, "
                  f"{len(frame) - n_meas} derived), "
                  f"{frame['participant_id'].nunique()} participants")


@export_app.command("participants")
def export_participants_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.csv or FILE.parquet")],
    db: DbOpt = None,
) -> None:
    """Write the participants table (docs/contracts.md §2: age at consent in whole years, dose
    = total cells over all administrations with their count), deterministically."""
    from hepatrial.ingest import export

    console = _console()
    frame = _export(console, "export participants", lambda: export.write_participants(
        output, db=db))
    console.print(f"{output}: {len(frame)} participants")


def _group(app: typer.Typer, name: str) -> typer.Typer | None:
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    return None


def register(app: typer.Typer) -> None:
    """Add ``import`` (participants, labs, visits) and ``export`` (dataset, participants) to the
    ``hepatrial`` command."""
    app.add_typer(import_app, name="import")
    existing = _group(app, "export")
    if existing is None:
        app.add_typer(export_app, name="export")
    else:  # another area already made an ``export`` group: add our command to it
        existing.command("dataset")(export_dataset_cmd)
        existing.command("participants")(export_participants_cmd)
