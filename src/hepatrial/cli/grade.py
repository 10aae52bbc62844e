"""``hepatrial grade``: CTCAE v5.0 grades for a CSV of lab values.

Input columns (header names matched case-insensitively): ``term`` and ``value`` (required),
``unit``, ``uln``, ``lln``, ``baseline``, ``anticoagulated`` (optional; empty cells mean
missing). Every input column, including any others, is copied to the output unchanged, as the
text that was entered; the column ``ctcae_grade`` (0–4, empty where the grade cannot be
derived) is appended. The rules are those of :func:`hepatrial.scores.ctcae.ctcae_grade`.
"""

from __future__ import annotations

import csv
import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

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


CHUNK_ROWS = 200_000  # rows graded at a time: memory stays bounded whatever the file size


def _records(fh: TextIO) -> Iterator[tuple[list[str], int]]:
    """Each record of an open CSV file with the file line on which it starts (blank lines
    skipped); the header is the first record."""
    reader = csv.reader(fh, strict=True)
    start = 1
    for record in reader:
        if record:
            yield record, start
        start = reader.line_num + 1


def _check_header(infile: Path, header: list[str]) -> list[str]:
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
    return keys


def _grade_chunk(
    infile: Path, header: list[str], keys: list[str], rows: list[list[str]], lines: list[int],
    offset: int, errors: str, inr_rule: str,
) -> list[str]:
    """Grades (as output text) for one chunk of rows; ``offset`` = data rows before it."""
    import numpy as np  # imported here: `hepatrial --help` must start fast

    from hepatrial.scores._core import ScoreInputError
    from hepatrial.scores.ctcae import ctcae_grade

    for i, (rec, line) in enumerate(zip(rows, lines, strict=True), start=offset + 1):
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

    cols = {name: column(name) for name in (*REQUIRED, *OPTIONAL)}
    nums = _checked_numbers(infile, header, keys, cols, lines, offset, errors)
    try:
        grades = np.asarray(
            ctcae_grade(
                cols["term"],
                nums["value"],
                uln=nums["uln"],
                lln=nums["lln"],
                baseline=nums["baseline"],
                unit=cols["unit"],
                anticoagulated=cols["anticoagulated"] if cols["anticoagulated"] is not None
                else False,
                inr_rule=inr_rule,  # type: ignore[arg-type]
                errors=errors,  # type: ignore[arg-type]
            ),
            dtype=np.float64,
        ).reshape(len(rows))
    except ScoreInputError as exc:
        col = header[keys.index(exc.input_name)] if exc.input_name in keys else exc.input_name
        if exc.row is None:  # pragma: no cover - every input is an array here
            where = ""
        else:
            where = f" data row {offset + exc.row + 1} (line {lines[exc.row]}),"
        raise GradeFileError(
            f"{infile}:{where} column {col!r}: {exc.value!r} {exc.reason}"
        ) from None
    return ["" if np.isnan(g) else str(int(g)) for g in grades]


NUMBER_COLUMNS = ("value", "uln", "lln", "baseline")


def _checked_numbers(infile: Path, header: list[str], keys: list[str],
                     cols: dict[str, np.ndarray | None], lines: list[int], offset: int,
                     errors: str) -> dict[str, np.ndarray | None]:
    """The numeric columns of a chunk, read by the one number rule and checked against the
    analyte registry (:mod:`hepatrial.cli._plausible`): the unit, when given, must be one the
    term's analyte accepts, and every value, ULN, LLN and baseline must lie inside the
    analyte's hard limits (in that unit; without a unit, inside them in at least one unit the
    analyte can be given in). Under ``errors="raise"`` the first problem (row, then column) is
    a :class:`GradeFileError`; under ``"coerce"`` the row's value is emptied (no grade)."""
    import numpy as np

    from hepatrial.cli._plausible import TERM_ANALYTES, limit_reasons, registry
    from hepatrial.scores._core import MISSING_TEXT
    from hepatrial.scores.ctcae import TERM_SYNONYMS, _normalise_text, _per_distinct
    from hepatrial.scores.numbers import number_problem

    n = len(lines)
    problems: list[tuple[int, int, str, str, str]] = []  # row, column order, name, text, why

    def note(i: int, name: str, text: str, why: str) -> None:
        problems.append((i, keys.index(name), name, text, why))

    def read(t: str) -> tuple[float, str | None]:  # (value, why it is not a number)
        if t.lower() in MISSING_TEXT:
            return np.nan, None
        why = number_problem(t)
        return (float(t), None) if why is None else (np.nan, f"is not a number: {why}")

    # each distinct text is judged once (a ULN column repeats one value on every row)
    out: dict[str, np.ndarray | None] = {}
    for name in NUMBER_COLUMNS:
        raw = cols[name]
        if raw is None:
            out[name] = None
            continue
        _arr, read_all = _per_distinct(raw, read)
        for i, (_x, why) in enumerate(read_all):
            if why is not None:
                note(i, name, raw[i], why)
        out[name] = np.fromiter((x for x, _why in read_all), dtype=np.float64, count=n)
    reg = registry()
    terms = cols["term"] if cols["term"] is not None else np.array([""] * n, dtype=object)
    units = cols["unit"]
    _arr, codes = _per_distinct(terms, lambda t: TERM_ANALYTES.get(
        TERM_SYNONYMS.get(_normalise_text(t) or "", "")))
    accepted: dict[tuple[str, str], bool] = {}
    unit_of: list[str | None] = [None] * n
    for i, code in enumerate(codes):
        if code is None or units is None or units[i].lower() in MISSING_TEXT:
            continue
        a = reg.analyte(code)
        ok = accepted.get((code, units[i]))
        if ok is None:
            ok = accepted[(code, units[i])] = a.accepts(units[i])
        if ok:
            unit_of[i] = units[i]
        else:
            note(i, "unit", units[i], f"is not a unit of {code} for {terms[i]!r} (accepted: "
                 f"{', '.join(a.units)})")
            codes[i] = None  # its values cannot be judged in that unit
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, code in enumerate(codes):
        if code is not None:
            groups.setdefault((code, unit_of[i]), []).append(i)
    for (code, unit), rows in groups.items():
        at = np.asarray(rows)
        for name in NUMBER_COLUMNS:
            vals = out[name]
            if vals is None:
                continue
            bad, reason = limit_reasons(code, unit, vals[at])
            bad &= vals[at] > 0  # zero and below: ctcae_grade's own rule says why
            for j in np.flatnonzero(bad):
                i = int(at[j])
                assert cols[name] is not None
                note(i, name, str(cols[name][i]), reason(int(j)))
    if problems:
        if errors == "raise":
            i, _o, name, text, why = min(problems)
            col = header[keys.index(name)]
            raise GradeFileError(f"{infile}: data row {offset + i + 1} (line {lines[i]}), "
                                 f"column {col!r}: {text!r} {why}")
        value = out["value"]
        if value is not None:
            value = value.copy()
            value[sorted({p[0] for p in problems})] = np.nan
            out["value"] = value
    return out


def grade_csv(
    infile: Path,
    outfile: Path,
    *,
    errors: str = "raise",
    inr_rule: str = "ctcae",
    progress: Callable[[int], None] = lambda _rows: None,
) -> int:
    """Grade every row of ``infile`` and write ``outfile`` atomically; return the row count.

    The file is read and graded in chunks of :data:`CHUNK_ROWS` rows, so memory stays bounded
    whatever its size; the output goes to a temporary file renamed only at the end. Raises
    :class:`GradeFileError` (and writes nothing) for a file that cannot be read or has a bad
    row under ``errors="raise"``. ``progress`` is called with the rows graded so far.
    """
    infile, outfile = Path(infile), Path(outfile)
    if not infile.is_file():
        raise GradeFileError(f"{infile}: no such file")
    # a temporary file beside the output (same file system, so the rename is atomic; opened
    # with mode "x" so that it gets the usual permissions)
    tmp = outfile.with_name(f".{outfile.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    n = 0
    try:
        with infile.open(newline="", encoding="utf-8-sig") as fh:
            records = _records(fh)
            first = next(records, None)
            if first is None:
                raise GradeFileError(f"{infile}: empty file (no header)")
            header = first[0]
            keys = _check_header(infile, header)
            with tmp.open("x", newline="", encoding="utf-8") as out:
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow([*header, OUTPUT_COLUMN])
                while True:
                    chunk = list(itertools.islice(records, CHUNK_ROWS))
                    if not chunk:
                        break
                    rows = [rec for rec, _ in chunk]
                    lines = [line for _, line in chunk]
                    grades = _grade_chunk(infile, header, keys, rows, lines, n, errors,
                                          inr_rule)
                    for rec, g in zip(rows, grades, strict=True):
                        writer.writerow([*rec, g])
                    n += len(rows)
                    progress(n)
        os.replace(tmp, outfile)
    except (csv.Error, UnicodeDecodeError) as exc:
        tmp.unlink(missing_ok=True)
        raise GradeFileError(f"{infile}: not a readable UTF-8 CSV file ({exc})") from exc
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
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    err = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("grading: {task.completed:,} rows"),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("grade", total=None)
        try:
            n = grade_csv(infile, output, errors=errors.value, inr_rule=inr_rule.value,
                          progress=lambda rows: bar.update(task, completed=rows))
        except GradeFileError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"{infile.name}: graded {n} rows -> {output}")


def register(app: typer.Typer) -> None:
    """Add the top-level ``grade`` command to ``app``."""
    app.command("grade")(grade)
