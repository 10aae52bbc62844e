"""``hepatrial import participants|labs|visits`` and ``hepatrial export dataset|participants``."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["register"]

import_app = typer.Typer(help="Import data files into the trial store (all-or-nothing).",
                         no_args_is_help=True)
export_app = typer.Typer(help="Export data from the trial store.", no_args_is_help=True)

DbOpt = Annotated[Path | None, typer.Option("--db", help="SQLite file of the trial store "
                                            "(HEPATRIAL_DATABASE_URL takes precedence).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate and count; write nothing.")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", help="Reason for change, required when a value already stored differs.")]
RejectsOpt = Annotated[Path | None, typer.Option(
    "--rejects", help="Where to write rejected rows (default <FILE>.rejects.csv).")]
UserOpt = Annotated[str | None, typer.Option(
    "--user", help="User name recorded in the history (default: the system account).")]


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # logs and pipes: do not wrap reasons at 80 columns
        console = Console(highlight=False, soft_wrap=True, width=200)
    return console


def _run_import(kind: str, file: Path, db: Path | None, dry_run: bool, reason: str | None,
                rejects: Path | None, user: str | None, map_name: str | None = None,
                day0: str | None = None) -> None:
    from django.db import DatabaseError

    from hepatrial.errors import PermissionDenied
    from hepatrial.ingest import importer
    from hepatrial.ingest.report import ImportRefused, render_rejects
    from hepatrial.ingest.validate import ImportFileError

    console = _console()
    rejects_path = rejects or file.with_name(file.name + ".rejects.csv")
    try:
        if kind == "participants":
            from hepatrial.ingest.participants import import_participants

            result = import_participants(file, db=db, dry_run=dry_run, user=user,
                                         rejects_path=rejects_path)
        elif kind == "labs":
            result = importer.import_labs(file, db=db, dry_run=dry_run, reason=reason,
                                          user=user, rejects_path=rejects_path)
        else:
            try:
                anchor = _dt.date.fromisoformat(day0) if day0 else None
            except ValueError:
                raise ImportFileError(f"--day0 {day0!r} is not a date (YYYY-MM-DD)") from None
            from hepatrial.ingest.visits import import_visits

            result = import_visits(file, map_name or "", db=db, dry_run=dry_run,
                                   reason=reason, user=user, rejects_path=rejects_path,
                                   day0=anchor)
    except ImportFileError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except PermissionDenied as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except DatabaseError as exc:
        console.print(f"[red]error:[/red] database: {exc} (run `hepatrial init` first?)")
        raise typer.Exit(2) from None
    except ImportRefused as exc:
        render_rejects(exc.rejects, console, title=f"{file.name}: import refused")
        console.print(f"[red]{exc}[/red]")
        console.print(f"rejects written to {rejects_path}")
        raise typer.Exit(1) from None
    console.print(f"{file.name}: {result.rows} rows: {result.summary()} "
                  f"in {result.seconds:.2f} s")
    for note in result.notes:
        console.print(f"note: {note}")


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
    from django.db import DatabaseError

    try:
        frame = export.write_dataset(output, db=db, derived=not no_derived)
    except DatabaseError as exc:
        console.print(f"[red]error:[/red] database: {exc} (run `hepatrial init` first?)")
        raise typer.Exit(2) from None
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
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
    from django.db import DatabaseError

    from hepatrial.ingest import export

    console = _console()
    try:
        frame = export.write_participants(output, db=db)
    except DatabaseError as exc:
        console.print(f"[red]error:[/red] database: {exc} (run `hepatrial init` first?)")
        raise typer.Exit(2) from None
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
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
