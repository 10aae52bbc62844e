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


def _meld_variant(value: str | None) -> str | None:
    from hepatrial.scores.meld import MELD_VARIANTS

    if value is not None and value not in MELD_VARIANTS:
        raise typer.BadParameter(f"{value!r} is not a MELD variant (one of "
                                 f"{', '.join(MELD_VARIANTS)})")
    return value


MeldOpt = Annotated[str | None, typer.Option(
    "--meld-variant", callback=_meld_variant,
    help="Override the protocol's MELD variant (kamath2001, continuous, optn2002).")]


def _bundle(db: Path | None) -> object:
    from hepatrial.ingest.export import trial_data

    if db is not None and not db.exists():
        typer.secho(f"error: database {db} does not exist", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    return trial_data(db)


CutOpt = Annotated[str | None, typer.Option(
    "--data-cut", help="Interim data cut: analyse the store as it stood on this date "
    "(YYYY-MM-DD; measurements and events up to that day).")]


def _cut(td: object, data_cut: str | None) -> object:
    if data_cut is None:
        return td
    import datetime as _dt

    try:
        day = _dt.date.fromisoformat(data_cut)
    except ValueError:
        typer.secho(f"error: --data-cut {data_cut!r} is not a date (YYYY-MM-DD)",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    return td.as_of(day)  # type: ignore[attr-defined]


def report(
    db: DbOpt = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory for the report.")] = Path(
        "."),
    meld_variant: MeldOpt = None,
    data_cut: CutOpt = None,
) -> None:
    """Write the trial report: one self-contained HTML file, the same report as a Word
    document, and every table as CSV (all in --out)."""
    from hepatrial.report import analyze, write_report

    td = _cut(_bundle(db), data_cut)
    results = analyze(td, meld_variant=meld_variant)
    name = (results.get("protocol") or {}).get("name") or "trial"
    files = write_report(td, results, out, f"{name}_report")
    n_csv = sum(1 for k in files if k not in ("html", "docx", "tables"))
    typer.echo(f"report written to {files['html']}")
    typer.echo(f"Word version:    {files['docx']}")
    typer.echo(f"tables as CSV:   {n_csv} files, index {files['tables']}")


def analyze_cmd(
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    meld_variant: MeldOpt = None,
    data_cut: CutOpt = None,
) -> None:
    """Run the protocol's analysis plan on the store; ``--json`` prints every result."""
    from hepatrial.report import analyze
    from hepatrial.report.format import fmt_mean_sd, fmt_p, outcome_label, p_text, visit_word

    td = _cut(_bundle(db), data_cut)
    results = analyze(td, meld_variant=meld_variant)
    if as_json:
        sys.stdout.write(json.dumps(results, indent=1, sort_keys=True, allow_nan=False) + "\n")
        return
    labels, base = results.get("visit_labels"), results["baseline_visit"]
    alpha = float(results["plan"].get("alpha") or 0.05)
    primary = results["plan"].get("primary_test") or "t"
    pcol = {"t": "p_t", "wilcoxon": "p_wilcoxon"}.get(primary, "p_t")
    test_name = {"t": "paired t test", "wilcoxon": "exact Wilcoxon signed-rank test"}.get(
        primary, primary)
    with_data = [r["visit"] for r in results["paired"] if (r.get("n_pairs") or 0) > 0]
    last = next((v for v in reversed(results["post_baseline_visits"]) if v in with_data), None)
    if last is None:
        typer.echo("no follow-up data yet: no participant has a value after baseline")
    for o in results["outcomes"] if last else []:
        for r in results["paired"]:
            if r["outcome"] != o["analyte"] or r["visit"] != last:
                continue
            rows = {d["visit"]: d for d in results["describe"] if d["outcome"] == o["analyte"]
                    and d.get("arm") == r.get("arm")}
            b, f = rows.get(base), rows.get(last)
            arm = f" ({r['arm']})" if r.get("arm") else ""
            typer.echo(f"{outcome_label(o)}{arm}: {fmt_mean_sd(b['mean'], b['sd'], 2)} -> "
                       f"{fmt_mean_sd(f['mean'], f['sd'], 2)} at {visit_word(last, labels)} "
                       f"({p_text(r.get(pcol), alpha=alpha)}, {test_name}; "
                       f"n = {r['n_pairs']})")
    conf = results["multiplicity"].get("confirmatory")
    if conf:
        typer.echo(f"fixed sequence ({conf['test_label']}, alpha = {alpha}):")
        names = {o["analyte"]: outcome_label(o, with_unit=False) for o in results["outcomes"]}
        for h in conf["hypotheses"]:
            typer.echo(f"  {h['order']}. {names.get(h['analyte'], h['analyte'])} at "
                       f"{visit_word(h['visit'], labels)}: {h['status']}"
                       + ("" if h["p"] is None else f" (p = {fmt_p(h['p'], alpha=alpha)})"))


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
    if res.files:
        typer.echo(f"Word version: {res.files['docx']}")
        typer.echo(f"tables (CSV): {res.files['tables']}")
    typer.echo(f"MELD variant reproducing the published MELD: {', '.join(ok) or 'none'}")
    typer.echo(f"done in {time.perf_counter() - t0:.1f} s")


def register(app: typer.Typer) -> None:
    """Add ``report``, ``analyze`` and ``demo`` to the ``hepatrial`` command."""
    app.command("report")(report)
    app.command("analyze")(analyze_cmd)
    app.command("demo")(demo)
