"""Stream a CSV of unit-named lab columns through :func:`hepatrial.scores.score_columns`.

The file is read in blocks with pyarrow's streaming CSV reader (bounded memory whatever the
file size), every input column is kept exactly as entered (read as text and written back
unchanged), and the scores are appended. Output is written to a temporary file beside the
target and renamed only when the whole file has been scored, so a bad row never leaves a
partial output behind.

Speed (``benchmarks/bench_scores.py`` compares it with DuckDB and a bare pyarrow + numpy
script): no per-row Python work on the normal path; pyarrow's CSV writer formats and writes
a batch in a second thread (it releases the GIL) while the next batch is read and scored;
and pandas is never imported. pyarrow imports pandas (~0.2 s) the first time
``pa.array()``, ``pa.scalar()``, a compute function given a Python scalar, or
``Array.to_numpy()`` runs, so data moves between numpy and Arrow through buffers here
(:func:`_to_numpy`, :func:`_from_numpy`).
"""

from __future__ import annotations

import csv
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from hepatrial.cli._plausible import SCORE_INPUT_ANALYTES, limit_reasons
from hepatrial.scores import ScoreInputError, score_columns
from hepatrial.scores._core import MISSING_TEXT, Codes, category
from hepatrial.scores.child_pugh import CLASS_LABELS
from hepatrial.scores.numbers import number_problem
from hepatrial.scores.table import (
    CATEGORIES,
    INPUT_COLUMNS,
    INTEGER_COLUMNS,
    SCORE_COLUMNS,
    TEXT_COLUMNS,
)

#: bytes per block read; pyarrow reads up to 32 blocks ahead of the consumer, so this bounds
#: the memory held by the reader (8 MiB blocks held 256 MiB)
BLOCK_SIZE = 1 << 20
#: rows scored and formatted at a time (blocks read are joined up to this)
BATCH_ROWS = 100_000


class ScoreFileError(ValueError):
    """A row of the input file that cannot be scored; names row, line, column and reason.

    ``column=None``: the problem is the record itself (e.g. its number of fields).
    """

    def __init__(self, row: int | None, column: str | None, value: object, reason: str,
                 *, line: int | None = None) -> None:
        self.row, self.column, self.value, self.reason = row, column, value, reason
        where = f"row {row} (line {line or row + 1})" if row is not None else ""
        if column is None:
            super().__init__(f"{where}: {reason}" if where else reason)
        else:
            where = f"{where}, " if where else ""
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
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _not_utf8(exc, path) from None


def _not_utf8(exc: Exception, path: Path | None = None) -> ScoreFileError:
    from hepatrial.textrules import utf8_problem

    where = utf8_problem(path) if path is not None and isinstance(exc, UnicodeDecodeError) \
        else None
    return ScoreFileError(None, None, "", where or f"not a readable UTF-8 CSV file ({exc})")


# --- numpy <-> Arrow through buffers (no pandas) ---------------------------------------------

def _valid(arr: pa.Array) -> np.ndarray | None:
    """The validity of ``arr`` as a bool array (None when it has no nulls)."""
    if arr.null_count == 0:
        return None
    bits = np.frombuffer(arr.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little", count=arr.offset + len(arr))[
        arr.offset:].astype(bool)


def _to_numpy(arr: pa.Array, dtype: Any) -> np.ndarray:
    """A primitive Arrow array as numpy (zero-copy when it has no nulls; nulls become NaN
    for floats)."""
    dt = np.dtype(dtype)
    values = np.frombuffer(arr.buffers()[1], dtype=dt, count=len(arr),
                           offset=arr.offset * dt.itemsize)
    valid = _valid(arr)
    if valid is None:
        return values
    out = values.astype(np.float64)
    out[~valid] = np.nan
    return out


def _from_numpy(values: np.ndarray, arrow_type: pa.DataType,
                null: np.ndarray | None = None) -> pa.Array:
    """A 1-D numpy array as an Arrow array of ``arrow_type`` (``null``: True = null)."""
    values = np.ascontiguousarray(values)
    if null is None or not null.any():
        return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])
    validity = np.packbits(~null, bitorder="little")
    return pa.Array.from_buffers(arrow_type, len(values),
                                 [pa.py_buffer(validity), pa.py_buffer(values)],
                                 null_count=int(null.sum()))


def _strings(texts: list[str]) -> pa.Array:
    """A small Arrow string array (built from buffers: ``pa.array`` imports pandas)."""
    data = [t.encode() for t in texts]
    offsets = np.cumsum([0, *map(len, data)], dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), len(data),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


_MISSING = _strings(sorted(MISSING_TEXT))
_NULL_TEXT = pa.nulls(1, pa.string())[0]
_EMPTY_TEXT = _strings([""])[0]
_CLASSES = _strings([str(c) for c in CLASS_LABELS[1:]])  # child_pugh_class labels, "" = none


# --- input columns ----------------------------------------------------------------------------

def _numeric(
    col: pa.Array, name: str, offset: int, errors: str, problems: list[ScoreFileError]
) -> np.ndarray:
    """Text column -> float64 numpy array (NaN for missing).

    Every number is read by the one number rule (:mod:`hepatrial.scores.numbers`: ASCII
    digits, one point, an optional exponent; no ``4_6``, no ``1,5``, no ``inf``, nothing that
    overflows a double). Text that is not a number gives NaN; under ``errors="raise"`` its first
    occurrence is appended to ``problems`` so that the caller can report the earliest bad row
    of the batch.
    """
    try:  # fast path: every cell a plain number (Arrow's parser takes no blanks or NA text)
        out = _to_numpy(pc.cast(col, pa.float64()), np.float64)
        if not np.isinf(out).any():  # "inf", "1e999": the careful path names them
            return out
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    trimmed = pc.utf8_trim_whitespace(col)
    missing = pc.is_in(pc.utf8_lower(trimmed), value_set=_MISSING)
    cleaned = pc.if_else(missing, _NULL_TEXT, trimmed)
    texts = cleaned.to_pylist()
    out = np.full(len(texts), np.nan)
    for i, t in enumerate(texts):
        if t is None:
            continue
        problem = number_problem(t)
        if problem is None:
            out[i] = float(t)
        elif errors == "raise" and not any(p.column == name for p in problems):
            problems.append(ScoreFileError(offset + i + 1, name, t,
                                           f"is not a number: {problem}"))
    return out


def _plausible(values: np.ndarray, col: pa.Array, name: str, offset: int, errors: str,
               problems: list[ScoreFileError]) -> np.ndarray:
    """``values`` of a lab column with those outside the analyte's hard limits (the analyte
    registry, :mod:`hepatrial.cli._plausible`) reported (``raise``) or emptied (``coerce``)."""
    target = SCORE_INPUT_ANALYTES.get(name)
    if target is None:
        return values
    bad, reason = limit_reasons(target[0], target[1], values)
    bad &= values > 0  # zero and below: the score functions' own rule says why
    if not bad.any():
        return values
    if errors == "raise":
        i = int(np.flatnonzero(bad)[0])
        problems.append(ScoreFileError(offset + i + 1, name, col[i].as_py(), reason(i)))
        return values
    out = values.copy()
    out[bad] = np.nan
    return out


def _coded(col: pa.Array, name: str, offset: int, errors: str) -> Codes:
    """Text category column -> float codes, coding each distinct value once.

    The column is dictionary-encoded; only the (few) dictionary entries go through the
    calculators' category lookup, and an unknown entry is reported at its first row.
    """
    if col.null_count:
        col = pc.fill_null(col, _EMPTY_TEXT)
    encoded = pc.dictionary_encode(col)
    dictionary = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    indices = _to_numpy(encoded.indices, np.int32)
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


# --- score columns ----------------------------------------------------------------------------

def _to_arrow(name: str, values: Any) -> pa.Array:
    if name == "child_pugh_class":  # "A"/"B"/"C", "" (no score) -> empty cell
        labels = np.asarray(values, dtype=object)
        index = np.full(len(labels), -1, dtype=np.int8)
        for j, label in enumerate(_CLASSES.to_pylist()):
            index[labels == label] = j
        return _CLASSES.take(_from_numpy(np.maximum(index, 0), pa.int8(), index < 0))
    arr = np.asarray(values, dtype=np.float64)
    missing = np.isnan(arr)
    if name in INTEGER_COLUMNS:
        return _from_numpy(np.where(missing, 0, arr).astype(np.int64), pa.int64(), missing)
    return _from_numpy(arr, pa.float64(), missing)


def _batches(
    path: Path, names: list[str], progress: Callable[[int], None]
) -> Iterator[pa.RecordBatch]:
    source = pa.OSFile(str(path), "rb")
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=True),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        parts: list[pa.RecordBatch] = []
        n = 0
        for batch in reader:
            progress(source.tell())
            parts.append(batch)
            n += batch.num_rows
            if n >= BATCH_ROWS:
                yield parts[0] if len(parts) == 1 else pa.concat_batches(parts)
                parts, n = [], 0
        if parts:
            yield parts[0] if len(parts) == 1 else pa.concat_batches(parts)
    except pa.ArrowInvalid as exc:
        raise _unreadable(path, len(names), exc) from None
    finally:
        source.close()


def _unreadable(path: Path, n_fields: int, exc: Exception) -> ScoreFileError:
    """The error for a file that pyarrow cannot parse, naming the first bad record (found
    again with the csv module: this is the error path only)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            next(reader, None)
            start = 2
            for i, record in enumerate(reader, start=1):
                if record and len(record) != n_fields:
                    return ScoreFileError(
                        i, None, record, f"has {len(record)} fields, the header has {n_fields}",
                        line=start)
                start = reader.line_num + 1
    except (csv.Error, UnicodeDecodeError) as err:
        return _not_utf8(err, path)
    return ScoreFileError(None, None, "", f"not a readable CSV file ({exc})")


_WRITE = pacsv.WriteOptions(quoting_style="needed")


def _score_batch(batch: pa.RecordBatch, names: list[str], rows: int,
                 errors: str) -> tuple[pa.Table, list[str]]:
    """The batch with its score columns appended; raises the earliest bad row."""
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
                data[name] = _plausible(_numeric(col, name, rows, errors, problems), col,
                                        name, rows, errors, problems)
        except ScoreFileError as exc:
            problems.append(exc)
            data[name] = np.full(batch.num_rows, np.nan)
    result: dict[str, Any] = {}
    try:
        result = score_columns(data, errors="coerce" if errors == "coerce" else "raise")
    except ScoreInputError as exc:
        if exc.row is None or exc.input_name not in names:
            raise ScoreFileError(None, exc.input_name, exc.value, exc.reason) from None
        entered = batch.column(exc.input_name)[exc.row].as_py()
        problems.append(ScoreFileError(rows + exc.row + 1, exc.input_name, entered,
                                       exc.reason))
    if problems:
        raise min(problems, key=lambda p: (p.row or 0, names.index(p.column or names[0])))
    table = pa.Table.from_batches([batch])
    for name in result:
        table = table.append_column(name, _to_arrow(name, result[name]))
    return table, list(result)


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
    # a temporary file beside the output (same file system, so the rename is atomic; created
    # with mode "x" so that it gets the usual permissions, as the output of `grade` does)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.open("xb").close()
    rows = 0
    produced: list[str] = []
    # one thread writes (pyarrow's CSV writer formats without the GIL) while this one reads
    # and scores the next batch; at most two batches in flight, so memory stays bounded
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-csv")
    pending: deque[Future[None]] = deque()
    sink: pa.NativeFile | None = None
    writer: pacsv.CSVWriter | None = None
    try:
        for batch in _batches(src, names, progress):
            if batch.num_rows == 0:
                continue
            table, produced = _score_batch(batch, names, rows, errors)
            if writer is None:
                sink = pa.OSFile(str(tmp), "wb")
                writer = pacsv.CSVWriter(sink, table.schema, write_options=_WRITE)
            pending.append(pool.submit(writer.write_table, table))
            rows += batch.num_rows
            while len(pending) > 1:
                pending.popleft().result()
        while pending:
            pending.popleft().result()
        if writer is None:  # header only: still write the header with the score columns
            empty = {n: np.array([], dtype=np.float64) for n in names if n in INPUT_COLUMNS}
            produced = list(score_columns(empty, errors="coerce"))
            tmp.write_bytes(_plain_header(names + produced))
        else:
            writer.close()
            writer = None
            assert sink is not None
            sink.close()
        os.replace(tmp, dst)
    except BaseException as exc:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
        tmp.unlink(missing_ok=True)
        if isinstance(exc, UnicodeDecodeError):  # text that pyarrow passed through undecoded
            raise _not_utf8(exc, src) from None
        raise
    finally:
        pool.shutdown(wait=True)
    return ScoreSummary(rows=rows, scores=produced)


def _plain_header(fields: list[str]) -> bytes:
    """The header line of a file without data rows (written by the csv module, as before)."""
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue().encode("utf-8")
