"""``hepatrial protocol``: list, show and validate trial protocols (and import maps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from hepatrial.protocol import Protocol

# hepatrial.protocol (pydantic, numpy) is imported inside the functions: `hepatrial protocol
# --help` must start fast

protocol_app = typer.Typer(
    name="protocol",
    help="List, show and validate trial protocols (TOML, protocol as code).",
    no_args_is_help=True,
)


def _fmt_day(d: int) -> str:
    return f"{d:+d}" if d else "0"


def _summary_lines(p: Protocol) -> list[str]:
    """Human-readable summary of a protocol."""
    lines = [
        f"{p.name} {p.version}: {p.title}",
        f"  registration: {p.registration or '-'}",
        f"  reference:    {p.reference or '-'}",
        f"  content hash: {p.content_hash()}",
        f"  design:       {p.design}; arms: "
        + ", ".join(f"{a.code} ({a.label}, ratio {a.ratio})" for a in p.arms),
        "  sites:        " + ", ".join(f"{s.code} ({s.name})" for s in p.sites),
        "  etiologies:   " + ", ".join(p.etiologies),
        f"  visits ({len(p.visits)}):",
    ]
    for v in p.visits:
        flag = "  [baseline]" if v.baseline else ""
        lines.append(
            f"    {v.code:<5} day {v.target_day:>5}  window {_fmt_day(v.window_lower)}/"
            f"{_fmt_day(v.window_upper)} (days {v.earliest_day}..{v.latest_day}){flag}"
        )
    lines.append(f"  eligibility inputs ({len(p.eligibility_inputs)}):")
    for i in p.eligibility_inputs:
        if i.kind == "number":
            what = f"number, {i.unit}" + (f" (analyte {i.analyte}: any unit it accepts)"
                                          if i.analyte else "")
        elif i.kind == "choice":
            what = "one of " + ", ".join(i.choices)
        else:
            what = i.kind
        src = f"  [from the {i.derived_from} record]" if i.derived_from else ""
        lines.append(f"    {i.name:<20} {what}{src}")
    lines.append(f"  eligibility ({len(p.eligibility)}):")
    for c in p.eligibility:
        lines.append(f"    {c.id:<14} {c.kind:<9} {c.check.describe()}")
    lines.append(f"  outcomes ({len(p.outcomes)}):")
    for o in p.outcomes:
        tr = ", log" if o.transform == "log" else ""
        lines.append(f"    {o.analyte:<17} {o.unit}{tr} (reported in {o.reported_unit})")
    pe = p.primary_endpoint
    lines.append(
        f"  primary:      {pe.analyte}, {pe.comparison}" + (f" at {pe.visit}" if pe.visit else "")
    )
    a = p.analysis
    lines.append(
        f"  analysis:     MELD {a.meld_variant}; tests {', '.join(a.paired_tests) or '-'}"
        f" (Wilcoxon {a.wilcoxon_method}); multiplicity {a.multiplicity}; alpha {a.alpha}"
    )
    if a.sequence:
        lines.append("  sequence:     " + " -> ".join(f"{s.analyte}@{s.visit}" for s in a.sequence))
    if a.mixed_model is not None:
        m = a.mixed_model
        lines.append(
            f"  mixed model:  time={m.time}, transform={m.transform}, "
            f"random={m.random_effects}, fixed={' + '.join(m.fixed_effects)}, {m.method}"
        )
    if p.product is not None:
        pr = p.product
        lines.append(
            f"  product:      {pr.cells_min / 1e6:g}-{pr.cells_max / 1e6:g} x10^6 cells "
            f"({pr.dose_basis}) in "
            f"{pr.volume_ml:g} mL; routes {', '.join(pr.routes)}"
        )
    n_assumed = len(p.assumptions())
    lines.append(f"  assumed settings: {n_assumed} (show --assumptions lists them)")
    return lines


def _load_or_exit(name_or_file: str) -> Protocol:
    from hepatrial.protocol import ProtocolError, ProtocolNotFoundError, load_protocol

    try:
        return load_protocol(name_or_file)
    except ProtocolNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ProtocolError as exc:
        _print_issues(exc.source, exc.issues)
        raise typer.Exit(2) from None


def _print_issues(source: str, issues: list) -> None:
    typer.echo(f"{source}: {len(issues)} error(s)", err=True)
    for i in issues:
        typer.echo(f"  {i.path}: {i.message}", err=True)


@protocol_app.command("list")
def list_cmd() -> None:
    """List the built-in protocols."""
    from hepatrial.protocol import list_builtin, load_protocol

    for name in list_builtin():
        p = load_protocol(name)
        typer.echo(f"{p.name:<15} {p.version:<7} {p.design:<11} {p.content_hash()[:12]}  {p.title}")


@protocol_app.command("show")
def show_cmd(
    name_or_file: Annotated[str, typer.Argument(help="Built-in protocol name or TOML file.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary dict (contracts §4) as JSON.")
    ] = False,
    assumptions: Annotated[
        bool, typer.Option("--assumptions", help="List every assumed setting with its key path.")
    ] = False,
) -> None:
    """Show a protocol's summary (or its JSON summary / its assumptions)."""
    p = _load_or_exit(name_or_file)
    if as_json:
        typer.echo(json.dumps(p.summary_dict(), indent=2, ensure_ascii=False))
        return
    if assumptions:
        for item in p.assumptions():
            typer.echo(f"{item.path}: {item.note}" if item.note else item.path)
        return
    typer.echo("\n".join(_summary_lines(p)))


@protocol_app.command("validate")
def validate_cmd(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Protocol TOML (or *.map.toml).")
    ],
) -> None:
    """Validate a protocol TOML file (or an import map ``*.map.toml``).

    Prints each error as ``key.path[i].name: reason`` and exits with status 2; a valid file
    prints a summary and exits 0.
    """
    from hepatrial.protocol import validate_file
    from hepatrial.protocol.loader import MAP_SUFFIX

    if file.name.endswith(MAP_SUFFIX):
        _validate_map(file)
        return
    proto, issues = validate_file(file)
    if proto is None:
        _print_issues(str(file), issues)
        raise typer.Exit(2)
    typer.echo(f"{file}: valid")
    typer.echo("\n".join(_summary_lines(proto)))


def _validate_map(file: Path) -> None:
    from hepatrial.protocol import (
        ProtocolError,
        ProtocolNotFoundError,
        VisitImportMap,
        load_protocol,
    )
    from hepatrial.protocol.loader import load_model_file

    try:
        m = load_model_file(file, VisitImportMap)
    except ProtocolError as exc:
        _print_issues(exc.source, exc.issues)
        raise typer.Exit(2) from None
    assert isinstance(m, VisitImportMap)
    target = m.protocol
    candidate = file.parent / target
    try:
        proto = load_protocol(candidate if candidate.is_file() else target)
    except (ProtocolNotFoundError, ProtocolError) as exc:
        typer.echo(f"{file}: protocol {target!r} could not be loaded: {exc}", err=True)
        raise typer.Exit(2) from None
    issues = m.check_against(proto)
    if issues:
        _print_issues(str(file), issues)
        raise typer.Exit(2)
    typer.echo(f"{file}: valid import map for {proto.name}")
    typer.echo(f"  participant id column: {m.participant.id}; day column: {m.visit.day}")
    for a in m.analytes:
        typer.echo(f"  {a.column:<10} -> {a.analyte} [{a.unit}]")
    for c in m.clinical:
        typer.echo(f"  {c.column:<10} -> {c.field} ({c.type})")


def register(app: typer.Typer) -> None:
    """Add the ``protocol`` sub-command group to the main app."""
    app.add_typer(protocol_app, name="protocol")
