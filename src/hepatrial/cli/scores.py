"""``hepatrial score``: score a CSV of lab values."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def score(
    input_csv: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                              help="CSV with unit-named input columns.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output CSV.")],
    errors: Annotated[str, typer.Option(
        "--errors", help="raise: stop at the first bad row; coerce: leave its scores empty.")
    ] = "raise",
) -> None:
    """Compute every liver score the input columns allow.

    Input columns carry their unit in the name: bilirubin_mg_dl|bilirubin_umol_l,
    creatinine_mg_dl|creatinine_umol_l, albumin_g_dl|albumin_g_l, inr, sodium_mmol_l,
    sex (F/M), age, age_at_registration, dialysis (true/false), ascites
    (none/slight/moderate), encephalopathy (none/grade_1_2/grade_3_4), ast_u_l, alt_u_l,
    ast_uln_u_l, platelets_10e9_l, pt_seconds_prolonged, cholestatic_disease. Other columns
    are carried through unchanged. An absent dialysis column means no dialysis; an empty cell
    gives empty scores for that row.

    Output: the input columns exactly as entered plus meld_kamath2001, meld_continuous,
    meld_optn2002, meld_na_kim2008, meld_na_optn2016, meld3_optn2023, child_pugh_points,
    child_pugh_class, albi, albi_grade, fib4, apri, meld_xi, ukeld (those the inputs allow).
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from hepatrial.cli._score_file import ScoreFileError, score_file

    err = Console(stderr=True)
    if errors not in ("raise", "coerce"):
        raise typer.BadParameter("must be 'raise' or 'coerce'", param_hint="--errors")
    size = input_csv.stat().st_size
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]scoring[/]"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("score", total=size)
        try:
            summary = score_file(input_csv, output, errors=errors,
                                 progress=lambda pos: bar.update(task, completed=pos))
        except ScoreFileError as exc:
            err.print(f"[red]error:[/] {input_csv}: {exc}", highlight=False, soft_wrap=True)
            err.print("Nothing was written. Fix the row, or use --errors coerce to leave its "
                      "scores empty.", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            err.print(f"[red]error:[/] cannot write {output}: {exc.strerror or exc}",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    seconds = time.perf_counter() - start
    err.print(
        f"scored {summary.rows:,} rows in {seconds:.2f} s -> {output} "
        f"({', '.join(summary.scores) or 'no score: inputs missing'})",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``score`` to the command tree."""
    app.command("score")(score)


__all__ = ["register", "score"]
