"""The ``hepatrial`` command.

Each area registers its own commands in its own module so that the command tree is assembled
here and nowhere else.
"""

from __future__ import annotations

import typer

from hepatrial import __version__
from hepatrial.cli import data as _data
from hepatrial.cli import grade as _grade
from hepatrial.cli import ingest as _ingest
from hepatrial.cli import protocol as _protocol
from hepatrial.cli import report as _report
from hepatrial.cli import scores as _scores
from hepatrial.cli import stats as _stats
from hepatrial.cli import store as _store

app = typer.Typer(
    name="hepatrial",
    help="Run and analyse clinical trials of cell therapy in end-stage liver disease.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _version(value: bool) -> None:
    if value:
        typer.echo(f"hepatrial {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run and analyse clinical trials of cell therapy in end-stage liver disease."""


for _module in (_scores, _grade, _protocol, _store, _stats, _ingest, _report, _data):
    _module.register(app)


def main() -> None:  # pragma: no cover - console entry point
    app()
