"""The ``hepatrial`` command: the command tree is assembled here and nowhere else.

Start-up is lazy. ``hepatrial --help`` imports no command module: it lists the commands from
:data:`COMMANDS`. A command module is imported only when one of its commands runs or shows its
own ``--help``, so every command pays for its own libraries and for no other command's
(``benchmarks/bench_startup.py`` measures this; ``tests/cli/test_startup.py`` guards it).

Adding a command module
-----------------------
1. Write ``src/hepatrial/cli/<area>.py`` with ``register(app: typer.Typer) -> None``, which adds
   the area's commands or groups to ``app`` (``app.command("name")(fn)``,
   ``app.add_typer(group_app, name="name")``). Import numpy, pandas, pydantic, django,
   ``hepatrial.protocol`` and the like inside the command functions, never at module level:
   ``hepatrial <name> --help`` must stay fast.
2. Add one line per top-level command (or group) that it registers to :data:`COMMANDS`::

       "name": ("area", "One-line help that `hepatrial --help` shows."),

   The one-line help is written here only (it is the command's ``short_help``); the function's
   docstring is the full help of ``hepatrial name --help``. Several modules may add commands to
   one group (e.g. ``export``): name them all, comma-separated (``"ingest,report"``).

A command that a module registers but :data:`COMMANDS` does not name still runs (an unknown
name makes the group import every command module before it gives up), but ``hepatrial --help``
does not list it, and ``tests/cli/test_startup.py`` fails until its line is added.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

#: Every top-level command or group: name -> (command module(s) under ``hepatrial.cli``,
#: one-line help). ``hepatrial --help`` lists them in this order.
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("scores", "Compute every liver score the input columns allow."),
    "grade": ("grade", "Grade lab values by CTCAE v5.0."),
    "init": ("store", "Create or upgrade the database and load the protocol."),
    "serve": ("store", "Serve the eCRF, the API and the admin (production server)."),
    "report": ("report", "Write the trial report: one self-contained HTML file."),
    "analyze": ("report", "Run the protocol's analysis plan on the store."),
    "demo": ("report", "Rebuild Kharaziha 2009 as a synthetic cohort, load, analyse, report."),
    "example": ("data", "Write a bundled example dataset (public data) as CSV."),
    "protocol": ("protocol", "List, show and validate trial protocols (protocol as code)."),
    "user": ("store", "Manage accounts and their roles."),
    "site": ("store", "Manage sites."),
    "audit": ("store,locks", "Read and verify the audit trail and the e-signatures."),
    "lock": ("locks", "Lock a visit, a casebook or the trial."),
    "unlock": ("locks", "Unlock a visit, a casebook or the trial (with a reason)."),
    "sign": ("locks", "E-sign a visit or a casebook (password re-entered)."),
    "stats": ("stats", "Statistics on a tidy CSV: paired tests, linear mixed models."),
    "import": ("ingest", "Import data files into the trial store (all-or-nothing)."),
    "export": ("ingest", "Export data from the trial store."),
    "backup": ("backup", "Back up the store while it runs (with its ledger checkpoint)."),
    "restore": ("backup", "Restore a backup into a new store and verify it."),
    "product": ("product", "The cell product vein to vein: harvest, QC, release, custody, "
                "infusion."),
    "ae": ("safety", "Record and follow up adverse events (CTCAE v5.0)."),
    "sae": ("safety", "The SAE chain: signed reports, causality, worklist, CIOMS form."),
    "safety": ("safety", "Stopping rules: status, signed DSMB resume, lab-derived AE scan."),
    "dsmb": ("safety", "Write the DSMB's open and closed reports."),
}


def _modules_of(name: str) -> list[str]:
    return [m.strip() for m in COMMANDS[name][0].split(",") if m.strip()]


def command_modules() -> list[str]:
    """Every command module: those :data:`COMMANDS` names, in its order, then any other
    public module of this package that has a ``register`` function."""
    named = list(dict.fromkeys(m for name in COMMANDS for m in _modules_of(name)))
    others = sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_") and info.name not in named
    )
    return named + [
        m for m in others if hasattr(importlib.import_module(f"{__name__}.{m}"), "register")
    ]


def _help_default_false(cmd: Any) -> None:
    """Give ``--help`` of ``cmd`` and of its sub-commands the default ``False``.

    typer passes the value of an ``--help`` that was not given (``None``) through a pydantic
    TypeAdapter, so that ``hepatrial GROUP COMMAND --help`` imported pydantic (~0.06 s CPU) for
    the ``--help`` of ``hepatrial`` and of ``GROUP``; a bool value is passed through as is.
    """
    settings = dict(cmd.context_settings or {})
    settings["default_map"] = {**(settings.get("default_map") or {}), "help": False}
    cmd.context_settings = settings
    for sub in getattr(cmd, "commands", {}).values():
        _help_default_false(sub)


class LazyGroup(TyperGroup):
    """The root group: lists :data:`COMMANDS` without importing them; imports a command's
    module(s) when the command is looked up to run or to show its own help."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listing = False  # True while the group formats its own help
        self._scratch = typer.Typer()  # the loaded modules register into this app
        self._registered: list[str] = []
        _help_default_false(self)

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(dict.fromkeys([*COMMANDS, *self.commands]))

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        cmd = self.commands.get(cmd_name)
        if cmd is not None:
            return cmd
        if cmd_name in COMMANDS:
            if self._listing:  # the listing needs the name and one-line help only
                return TyperCommand(cmd_name, short_help=COMMANDS[cmd_name][1])
            self._load(_modules_of(cmd_name))
        elif not self._listing:  # not declared: maybe a module registers it anyway
            self._load(command_modules())
        return self.commands.get(cmd_name)

    def _load(self, modules: list[str]) -> None:
        new = [m for m in modules if m not in self._registered]
        for m in new:
            importlib.import_module(f"{__name__}.{m}").register(self._scratch)
            self._registered.append(m)
        if not new:
            return
        for name, cmd in typer.main.get_group(self._scratch).commands.items():
            if name in COMMANDS and not set(_modules_of(name)) <= set(self._registered):
                continue  # a group that other modules still add to: built when asked for
            if name not in self.commands:
                if name in COMMANDS and not cmd.short_help:
                    cmd.short_help = COMMANDS[name][1]
                _help_default_false(cmd)
                self.commands[name] = cmd

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False



app = typer.Typer(
    name="hepatrial",
    cls=LazyGroup,
    help="Run and analyse clinical trials of cell therapy in end-stage liver disease.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from hepatrial import __version__

        typer.echo(f"hepatrial {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run and analyse clinical trials of cell therapy in end-stage liver disease."""


def main(argv: list[str] | None = None) -> None:
    """The console entry point (``[project.scripts] hepatrial``, ``python -m hepatrial``).

    Runs :data:`app` and never lets a traceback reach the user: an error that escapes a
    command is reported by :func:`hepatrial.cli._guard.report` - a ``HepatrialError`` as its
    message with its exit code (:mod:`hepatrial.cli._errors`), a file-system error as
    ``error: FILE: reason`` (exit 74), a database that cannot be used as ``error: database:
    ...`` (exit 2), anything else as one line ``internal error: ...; please report it`` (exit
    70; the traceback only with ``HEPATRIAL_DEBUG=1``). Exits with the command's exit code.
    """
    import sys

    try:
        app(args=argv, prog_name="hepatrial")
    except SystemExit:
        raise
    except BaseException as exc:  # the last resort: judged and reported
        from hepatrial.cli._guard import report

        sys.exit(report(exc))
