"""Stream a CSV of unit-named lab columns through :func:`hepatrial.scores.score_columns`.

The file is read in blocks with pyarrow's streaming CSV reader (bounded memory whatever the
file size), every input column is kept exactly as entered (read as text and written back
unchanged), and the scores are appended. Output is written to a temporary file beside the
target and renamed only when the whole file has been scored, so a bad row never leaves a
partial output behind.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from hepatrial.scores import ScoreInputError, score_columns
from hepatrial.scores._core import MISSING_TEXT, Codes, category
from hepatrial.scores.table import (
    CATEGORIES,
    INPUT_COLUMNS,
    INTEGER_COLUMNS,
    SCORE_COLUMNS,
    TEXT_COLUMNS,
)

BLOCK_SIZE = 8 << 20  # bytes per streamed block (~100k rows of a typical lab file)


class ScoreFileError(ValueError):
    """A row of the input file that cannot be scored; names row, line, column and reason."""

    def __init__(self, row: int | None, column: str, value: object, reason: str) -> None:
        self.row, self.column, self.value, self.reason = row, column, value, reason
        where = f"row {row} (line {row + 1}), " if row is not None else ""
        super().__init__(f"{where}column {column!r}: {value!r} {reason}")


@dataclass
class ScoreSummary:
    """What a scoring run did."""

    rows: int
    scores: list[str]


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        try:
            return next(csv.reader(fh))
        except StopIteration:
            raise ScoreFileError(None, "<header>", "", "the file is empty") from None


_MISSING = pa.array(sorted(MISSING_TEXT), type=pa.string())


def _numeric(
    col: pa.Array, name: str, offset: int, errors: str, problems: list[ScoreFileError]
) -> np.ndarray:
    """Text column -> float64 numpy array (NaN for missing).

    Text that is not a number gives NaN; under ``errors="raise"`` its first occurrence is
    appended to ``problems`` so that the caller can report the earliest bad row of the batch.
    """
    trimmed = pc.utf8_trim_whitespace(col)
    missing = pc.fill_null(pc.is_in(pc.utf8_lower(trimmed), value_set=_MISSING), True)
    cleaned = pc.if_else(missing, pa.scalar(None, pa.string()), trimmed)
    try:
        values = pc.cast(cleaned, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        texts = cleaned.to_pylist()
        out = np.full(len(texts), np.nan)
        for i, t in enumerate(texts):
            if t is None:
                continue
            try:
                out[i] = float(t)
            except ValueError:
                if errors == "raise" and not any(p.column == name for p in problems):
                    problems.append(ScoreFileError(offset + i + 1, name, t, "is not a number"))
        return out
    return values.to_numpy(zero_copy_only=False)


def _coded(col: pa.Array, name: str, offset: int, errors: str) -> Codes:
    """Text category column -> float codes, coding each distinct value once.

    The column is dictionary-encoded; only the (few) dictionary entries go through the
    calculators' category lookup, and an unknown entry is reported at its first row.
    """
    encoded = pc.dictionary_encode(pc.fill_null(col, ""))
    dictionary = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    mapping = CATEGORIES[name]
    try:
        codes = category(dictionary, mapping, name, "raise")
    except ScoreInputError as exc:
        if errors == "coerce":
            codes = category(dictionary, mapping, name, "coerce")
        else:
            assert exc.row is not None
            first = int(np.flatnonzero(indices == exc.row)[0])
            raise ScoreFileError(offset + first + 1, name, exc.value, exc.reason) from None
    return np.asarray(codes, dtype=np.float64)[indices].view(Codes)


def _to_arrow(name: str, values: Any) -> pa.Array:
    if name == "child_pugh_class":
        arr = np.asarray(values, dtype=object)
        return pa.array([v if v else None for v in arr], type=pa.string())
    arr = np.asarray(values, dtype=np.float64)
    if name in INTEGER_COLUMNS:
        mask = np.isnan(arr)
        return pa.array(np.where(mask, 0, arr).astype(np.int64), mask=mask, type=pa.int64())
    return pa.array(arr, mask=np.isnan(arr), type=pa.float64())


def _batches(
    path: Path, names: list[str], progress: Callable[[int], None]
) -> Iterator[pa.RecordBatch]:
    fh = path.open("rb")
    try:
        reader = pacsv.open_csv(
            fh,
            read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            progress(fh.tell())
            yield batch
    finally:
        fh.close()


def score_file(
    src: Path,
    dst: Path,
    *,
    errors: str = "raise",
    progress: Callable[[int], None] = lambda _pos: None,
) -> ScoreSummary:
    """Score every row of ``src`` and write ``dst`` (input columns + score columns).

    Raises :class:`ScoreFileError` for the first bad row (``errors="raise"``); no output file
    is left behind then. ``progress`` is called with the byte position read so far.
    """
    names = _header(src)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ScoreFileError(None, dupes[0], "", "appears more than once in the header")
    clash = [n for n in names if n in SCORE_COLUMNS]
    if clash:
        raise ScoreFileError(
            None, clash[0], "", "is an output score column; remove or rename it in the input"
        )
    if not any(n in INPUT_COLUMNS for n in names):
        raise ScoreFileError(
            None, "<header>", ",".join(names),
            "has no score input columns (expected e.g. bilirubin_umol_l, creatinine_mg_dl, inr)",
        )
    dst = Path(dst)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent or ".")
    os.close(fd)
    tmp = Path(tmp_name)
    rows = 0
    produced: list[str] = []
    writer: pacsv.CSVWriter | None = None
    try:
        for batch in _batches(src, names, progress):
            data: dict[str, Any] = {}
            problems: list[ScoreFileError] = []
            for name in names:
                if name not in INPUT_COLUMNS:
                    continue
                col = batch.column(name)
                try:
                    if name in TEXT_COLUMNS:
                        data[name] = _coded(col, name, rows, errors)
                    else:
                        data[name] = _numeric(col, name, rows, errors, problems)
                except ScoreFileError as exc:
                    problems.append(exc)
                    data[name] = np.full(batch.num_rows, np.nan)
            try:
                result = score_columns(data, errors="coerce" if errors == "coerce" else "raise")
            except ScoreInputError as exc:
                if exc.row is None or exc.input_name not in names:
                    raise ScoreFileError(None, exc.input_name, exc.value, exc.reason) from None
                entered = batch.column(exc.input_name)[exc.row].as_py()
                problems.append(ScoreFileError(rows + exc.row + 1, exc.input_name, entered,
                                               exc.reason))
            if problems:
                raise min(problems, key=lambda p: (p.row or 0, names.index(p.column)))
            produced = list(result)
            table = pa.Table.from_batches([batch])
            for name in produced:
                table = table.append_column(name, _to_arrow(name, result[name]))
            if writer is None:
                writer = pacsv.CSVWriter(
                    str(tmp), table.schema,
                    write_options=pacsv.WriteOptions(quoting_style="needed"),
                )
            writer.write_table(table)
            rows += batch.num_rows
        if writer is None:  # header only: still write the header with the score columns
            empty = {n: np.array([], dtype=np.float64) for n in names if n in INPUT_COLUMNS}
            produced = list(score_columns(empty, errors="coerce"))
            with tmp.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh, lineterminator="\n").writerow(names + produced)
        else:
            writer.close()
            writer = None
        os.replace(tmp, dst)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return ScoreSummary(rows=rows, scores=produced)
