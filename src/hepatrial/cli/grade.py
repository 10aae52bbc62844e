"""``hepatrial grade``: CTCAE v5.0 grades for a CSV of lab values.

Input columns (header names matched case-insensitively): ``term`` and ``value`` (required),
``unit``, ``uln``, ``lln``, ``baseline``, ``anticoagulated`` (optional; empty cells mean
missing). Every input column, including any others, is copied to the output unchanged, as the
text that was entered; the column ``ctcae_grade`` (0–4, empty where the grade cannot be
derived) is appended. The rules are those of :func:`hepatrial.scores.ctcae.ctcae_grade`.
"""

from __future__ import annotations

import csv
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import numpy as np

__all__ = ["GradeFileError", "grade_csv", "register"]

REQUIRED = ("term", "value")
OPTIONAL = ("unit", "uln", "lln", "baseline", "anticoagulated")
OUTPUT_COLUMN = "ctcae_grade"


class ErrorsChoice(StrEnum):
    """How to treat a bad row."""

    raise_ = "raise"
    coerce = "coerce"


class InrRuleChoice(StrEnum):
    """Which INR rule to apply (see ``ctcae_grade``)."""

    ctcae = "ctcae"
    admiral = "admiral"


class GradeFileError(ValueError):
    """The input file cannot be graded; the message names the row, line, column and reason."""


def _read(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows (text exactly as entered) and the file line on which each row starts."""
    if not path.is_file():
        raise GradeFileError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            rows: list[list[str]] = []
            lines: list[int] = []
            header: list[str] | None = None
            start = 1
            for record in reader:
                if header is None:
                    header = record
                elif record:  # blank lines are skipped
                    rows.append(record)
                    lines.append(start)
                start = reader.line_num + 1
    except (csv.Error, UnicodeDecodeError) as exc:
        raise GradeFileError(f"{path}: not a readable UTF-8 CSV file ({exc})") from exc
    if not header:
        raise GradeFileError(f"{path}: empty file (no header)")
    return header, rows, lines


def grade_csv(
    infile: Path, outfile: Path, *, errors: str = "raise", inr_rule: str = "ctcae"
) -> int:
    """Grade every row of ``infile`` and write ``outfile`` atomically; return the row count.

    Raises :class:`GradeFileError` (and writes nothing) for a file that cannot be read or
    has a bad row under ``errors="raise"``.
    """
    import numpy as np  # imported here: `hepatrial --help` must start fast

    from hepatrial.scores._core import ScoreInputError
    from hepatrial.scores.ctcae import ctcae_grade

    header, rows, lines = _read(infile)
    keys = [h.strip().lower() for h in header]
    dups = sorted({k for k in keys if keys.count(k) > 1})
    if dups:
        raise GradeFileError(f"{infile}: duplicate column(s) in header: {', '.join(dups)}")
    missing = [c for c in REQUIRED if c not in keys]
    if missing:
        raise GradeFileError(
            f"{infile}: missing required column(s): {', '.join(missing)} "
            f"(found: {', '.join(header)})"
        )
    if OUTPUT_COLUMN in keys:
        raise GradeFileError(f"{infile}: already has a column {OUTPUT_COLUMN!r}")
    for i, (rec, line) in enumerate(zip(rows, lines, strict=True), start=1):
        if len(rec) != len(header):
            raise GradeFileError(
                f"{infile}: data row {i} (line {line}): has {len(rec)} fields, "
                f"the header has {len(header)}"
            )

    def column(name: str) -> np.ndarray | None:
        if name not in keys:
            return None
        j = keys.index(name)
        return np.array([rec[j].strip() for rec in rows], dtype=object)

    n = len(rows)
    cols = {name: column(name) for name in (*REQUIRED, *OPTIONAL)}
    try:
        grades = np.asarray(
            ctcae_grade(
                cols["term"],
                cols["value"],
                uln=cols["uln"],
                lln=cols["lln"],
                baseline=cols["baseline"],
                unit=cols["unit"],
                anticoagulated=cols["anticoagulated"] if cols["anticoagulated"] is not None
                else False,
                inr_rule=inr_rule,  # type: ignore[arg-type]
                errors=errors,  # type: ignore[arg-type]
            ),
            dtype=np.float64,
        ).reshape(n)
    except ScoreInputError as exc:
        col = header[keys.index(exc.input_name)] if exc.input_name in keys else exc.input_name
        if exc.row is None:  # pragma: no cover - every input is an array here
            where = ""
        else:
            where = f" data row {exc.row + 1} (line {lines[exc.row]}),"
        raise GradeFileError(
            f"{infile}:{where} column {col!r}: {exc.value!r} {exc.reason}"
        ) from None

    out_text = ["" if np.isnan(g) else str(int(g)) for g in grades]
    outfile = Path(outfile)
    # a temporary file beside the output (same file system, so the rename is atomic; opened
    # with mode "x" so that it gets the usual permissions)
    tmp = outfile.with_name(f".{outfile.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("x", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow([*header, OUTPUT_COLUMN])
            for rec, g in zip(rows, out_text, strict=True):
                writer.writerow([*rec, g])
        os.replace(tmp, outfile)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def grade(
    infile: Annotated[Path, typer.Argument(
        metavar="IN.csv",
        help="CSV with columns term, value [, unit, uln, lln, baseline, anticoagulated].")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", metavar="OUT.csv",
        help="Where to write the input columns plus ctcae_grade.")],
    errors: Annotated[ErrorsChoice, typer.Option(
        "--errors", help="raise: a bad row stops the run (exit 2, no output); "
        "coerce: a bad row gets an empty grade.")] = ErrorsChoice.raise_,
    inr_rule: Annotated[InrRuleChoice, typer.Option(
        "--inr-rule", help="ctcae: absolute INR unless anticoagulated (then x baseline); "
        "admiral: worst of both for everyone.")] = InrRuleChoice.ctcae,
) -> None:
    """Grade lab values by CTCAE v5.0 (bilirubin, ALT, AST, INR, creatinine, albumin,
    platelets)."""
    try:
        n = grade_csv(infile, output, errors=errors.value, inr_rule=inr_rule.value)
    except GradeFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{infile.name}: graded {n} rows -> {output}")


def register(app: typer.Typer) -> None:
    """Add the top-level ``grade`` command to ``app``."""
    app.command("grade")(grade)
