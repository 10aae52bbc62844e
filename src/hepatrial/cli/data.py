"""``hepatrial example``: write a bundled public example dataset to a file."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer


def example(
    name: Annotated[str, typer.Argument(help="Dataset name (e.g. pbcseq).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CSV file to write (default NAME.csv).")
    ] = Path(""),
) -> None:
    """Write a bundled example dataset (public data) as CSV, e.g. `hepatrial example pbcseq`."""
    from hepatrial import data

    if name not in data.DATASETS:
        known = "; ".join(f"{k}: {v}" for k, v in sorted(data.DATASETS.items()))
        typer.secho(f"no example dataset {name!r} (known: {known})", fg="red", err=True)
        raise typer.Exit(2)
    target = output if str(output) not in ("", ".") else Path(f"{name}.csv")
    try:
        shutil.copyfile(data.path(name), target)
    except OSError as exc:
        typer.secho(f"cannot write {target}: {exc.strerror or exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {target} ({data.DATASETS[name]})")


def register(app: typer.Typer) -> None:
    """Add ``example`` to the root command."""
    app.command("example")(example)
