"""``hepatrial report``, ``hepatrial analyze`` and ``hepatrial demo``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

DbOpt = Annotated[Path | None, typer.Option(
    "--db", help="SQLite file of the trial store (HEPATRIAL_DATABASE_URL takes precedence).")]
MeldOpt = Annotated[str | None, typer.Option(
    "--meld-variant", help="Override the protocol's MELD variant (kamath2001, continuous, "
    "optn2002).")]


def _bundle(db: Path | None) -> object:
    from hepatrial.ingest.export import trial_data

    if db is not None and not db.exists():
        typer.secho(f"error: database {db} does not exist", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    return trial_data(db)


def report(
    db: DbOpt = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory for the HTML report.")] = Path(
        "."),
    meld_variant: MeldOpt = None,
) -> None:
    """Write the trial report: one self-contained HTML file (tables, figures, text)."""
    from hepatrial.report import analyze, build_report

    td = _bundle(db)
    results = analyze(td, meld_variant=meld_variant)
    out.mkdir(parents=True, exist_ok=True)
    name = (results.get("protocol") or {}).get("name") or "trial"
    path = out / f"{name}_report.html"
    path.write_text(build_report(td, results), encoding="utf-8")
    typer.echo(f"report written to {path}")


def analyze_cmd(
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    meld_variant: MeldOpt = None,
) -> None:
    """Run the protocol's analysis plan on the store; ``--json`` prints every result."""
    from hepatrial.report import analyze
    from hepatrial.report.html import fmt_mean_sd, fmt_p

    td = _bundle(db)
    results = analyze(td, meld_variant=meld_variant)
    if as_json:
        sys.stdout.write(json.dumps(results, indent=1, sort_keys=True, allow_nan=False) + "\n")
        return
    last = results["post_baseline_visits"][-1] if results["post_baseline_visits"] else None
    for o in results["outcomes"]:
        rows = {r["visit"]: r for r in results["describe"] if r["outcome"] == o["analyte"]}
        pr = next((r for r in results["paired"] if r["outcome"] == o["analyte"]
                   and r["visit"] == last), None)
        b, f = rows.get(results["baseline_visit"]), rows.get(last)
        if b and f and pr:
            typer.echo(f"{o['label']}: {fmt_mean_sd(b['mean'], b['sd'], 2)} -> "
                       f"{fmt_mean_sd(f['mean'], f['sd'], 2)} at {last} "
                       f"(paired t P {fmt_p(pr['p_t'])}, Wilcoxon P {fmt_p(pr['p_wilcoxon'])}, "
                       f"{pr['n_pairs']} pairs)")


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path(
        "hepatrial-demo"),
    seed: Annotated[int, typer.Option("--seed", help="Reconstruction seed.")] = 20090901,
) -> None:
    """Rebuild Kharaziha 2009 as a SYNTHETIC cohort from its published statistics, load it into
    a fresh SQLite store, analyse it and write the report (synthetic, not patient data)."""
    from hepatrial.demo.pipeline import run_demo

    t0 = time.perf_counter()
    res = run_demo(out, seed=seed)
    fz = res.cohort.feasibility
    ok = [k for k, v in fz.items() if v["feasible"]]
    typer.echo("SYNTHETIC reconstruction, not patient data")
    typer.echo(f"labs:         {res.labs_csv}")
    typer.echo(f"participants: {res.participants_csv}")
    typer.echo(f"database:     {res.db}")
    typer.echo(f"results:      {res.results_json}")
    typer.echo(f"report:       {res.report}")
    typer.echo(f"MELD variant reproducing the published MELD: {', '.join(ok) or 'none'}")
    typer.echo(f"done in {time.perf_counter() - t0:.1f} s")


def register(app: typer.Typer) -> None:
    """Add ``report``, ``analyze`` and ``demo`` to the ``hepatrial`` command."""
    app.command("report")(report)
    app.command("analyze")(analyze_cmd)
    app.command("demo")(demo)
