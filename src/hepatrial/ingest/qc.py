"""``hepatrial import qc FILE.csv``: QC (release-test) results from a laboratory file.

One row per batch and test: ``batch, test, result, analyst, date`` and optionally ``unit``
and ``method`` (column names exactly so; extra columns are refused, never ignored). Every
value is kept as written: the result as entered beside its typed value, the unit must be the
specification's (empty: the specification's unit), never converted.

Each row is judged by the store's QC rule (:func:`hepatrial.trials.services.check_qc_result`,
the one the CLI and the admin use: a test of the protocol's release specification, a valid
result in its unit, analyst, a date not in the future nor before the harvest, a batch in
manufacture or later). **All or nothing**: if any row is refused nothing is written, and
every problem is listed (row = 1-based data row, column, value, reason) on screen and in the
rejects CSV (``<FILE>.rejects.csv`` beside the file). ``--dry-run`` runs the same checks and
writes nothing. A result already stored with the same value is unchanged; a different value
is a change and needs ``--reason`` (kept in the audit trail). Each result's ``source`` is
``import <file name> row <n>``. The whole file is written in one transaction through
:func:`hepatrial.trials.services.record_qc_results` (a row lock per batch, history and
ledger rows in bulk). Needs ``import_data`` (data manager) and ``manage_product`` on each
batch's site.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["OPTIONAL", "REQUIRED", "import_qc"]

#: the columns of a QC file (data columns in this order in the rejects' ``column``)
REQUIRED = ("batch", "test", "result", "analyst", "date")
OPTIONAL = ("unit", "method")
#: validator field -> file column
_COLUMN = {"test": "test", "result": "result", "unit": "unit", "analyst": "analyst",
           "tested_on": "date", "method": "method", "batch": "batch", "source": "batch"}


def _read(path: Path) -> list[dict[str, str]]:
    from hepatrial.ingest.validate import ImportFileError

    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise ImportFileError(f"{path}: the file is empty (expected a header: "
                                      f"{', '.join(REQUIRED + OPTIONAL)})")
            names = [h.strip() for h in header]
            missing = [c for c in REQUIRED if c not in names]
            extra = [c for c in names if c not in REQUIRED + OPTIONAL]
            dupes = sorted({c for c in names if names.count(c) > 1})
            problems = []
            if missing:
                problems.append(f"missing column(s) {', '.join(missing)}")
            if extra:
                problems.append(f"unknown column(s) {', '.join(extra)} (a QC file has "
                                f"{', '.join(REQUIRED + OPTIONAL)})")
            if dupes:
                problems.append(f"column(s) given twice: {', '.join(dupes)}")
            if problems:
                raise ImportFileError(f"{path}: " + "; ".join(problems))
            rows = []
            for i, rec in enumerate(reader, 1):
                if len(rec) != len(names):
                    raise ImportFileError(f"{path}: data row {i} has {len(rec)} fields, the "
                                          f"header {len(names)}")
                rows.append(dict(zip(names, rec, strict=True)))
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start})") from None
    except csv.Error as exc:
        raise ImportFileError(f"{path}: not a CSV file ({exc})") from None
    return rows


def import_qc(
    path: str | Path,
    *,
    db: str | Path | None = None,
    dry_run: bool = False,
    reason: str | None = None,
    user: str | None = None,
    rejects_path: str | Path | None = None,
) -> Any:
    """Import QC results (module docstring); returns an
    :class:`~hepatrial.ingest.report.ImportResult` (``created``/``changed``/``unchanged``
    count results) or raises :class:`~hepatrial.ingest.report.ImportRefused` with every
    reject (its rejects CSV written, nothing stored)."""
    from hepatrial.ingest.report import ImportRefused, ImportResult, write_rejects
    from hepatrial.ingest.validate import REJECT_COLUMNS

    t0 = time.perf_counter()
    path = Path(path)
    rows = _read(path)
    _open(db)
    from django.db import transaction

    from hepatrial.errors import HepatrialError, NotFoundError
    from hepatrial.trials import services
    from hepatrial.trials.models.product import CellProductBatch, QcResult
    from hepatrial.trials.validators import RuleViolation
    from hepatrial.trials.validators._common import changes_needing_reason

    acting = services.system_user() if user is None else _account(user)
    services.require_permission(acting, "import_data")
    result = ImportResult(rows=len(rows), dry_run=dry_run)
    rejects: list[tuple[int, str, str, str]] = []
    by_batch: dict[str, list[dict[str, Any]]] = {}
    seen: dict[tuple[str, str], int] = {}
    stored = {}
    for i, r in enumerate(rows, 1):
        bid = r["batch"].strip()
        values = {"test": r["test"], "result": r["result"], "unit": r.get("unit") or None,
                  "analyst": r["analyst"], "tested_on": r["date"].strip(),
                  "method": r.get("method", ""), "source": f"import {path.name} row {i}"}
        try:
            ok = services.check_qc_result(bid, **values)
        except RuleViolation as exc:
            for p in exc.problems:
                col = _COLUMN.get(p.field, p.field)
                rejects.append((i, col, r.get(col, ""), p.reason))
            continue
        except NotFoundError as exc:
            rejects.append((i, "batch", r["batch"], str(exc)))
            continue
        key = (bid, ok["test"])
        if key in seen:
            rejects.append((i, "test", r["test"], f"batch {bid} {ok['test']} is also in row "
                            f"{seen[key]}: one result per batch and test"))
            continue
        seen[key] = i
        if bid not in stored:
            b = CellProductBatch.objects.get(batch_id=bid)
            stored[bid] = {q.test: q for q in QcResult.objects.filter(batch=b)}
        q = stored[bid].get(ok["test"])
        if q is None:
            result.created += 1
        else:
            fields = ("value", "value_as_entered", "unit", "analyst", "tested_on", "method")
            old = {k: getattr(q, k) for k in fields}
            new = {k: ok[k] for k in fields}
            if old == new:
                result.unchanged += 1
                continue
            need = changes_needing_reason(old, new)
            if need and not (reason or "").strip():
                rejects.append((i, "result", r["result"], f"batch {bid} {ok['test']} is stored "
                                f"as {q.value_as_entered!r}: a change needs --reason"))
                continue
            result.changed += 1
        by_batch.setdefault(bid, []).append(values)
    target = Path(rejects_path) if rejects_path is not None else (
        None if dry_run else path.with_name(path.name + ".rejects.csv"))
    if rejects:
        frame = pd.DataFrame(rejects, columns=list(REJECT_COLUMNS)).sort_values(
            ["row", "column"], kind="mergesort").reset_index(drop=True)
        result.rejects = frame
        exc = ImportRefused(f"{path.name}: import refused: {frame['row'].nunique()} row(s) "
                            f"rejected, {len(frame)} problem(s); nothing was written", frame,
                            result)
        if target is not None:
            write_rejects(frame, target)
            result.rejects_path = target
            exc.rejects_path = target  # type: ignore[attr-defined]
        raise exc
    if not dry_run and by_batch:
        try:
            with transaction.atomic():
                for bid in sorted(by_batch):
                    services.record_qc_results(bid, by_batch[bid], reason=reason, user=acting)
        except HepatrialError as exc:  # refused at write time (a lock, a permission)
            frame = pd.DataFrame([(0, "", "", str(exc))], columns=list(REJECT_COLUMNS))
            result.rejects = frame
            raise ImportRefused(f"{path.name}: import refused: {exc}", frame, result) from exc
    result.seconds = time.perf_counter() - t0
    return result


def _open(db: str | Path | None) -> None:
    from django.conf import settings

    if db is None and settings.configured:
        from django.apps import apps

        if apps.ready:
            return
    from hepatrial.trials import setup

    setup(db)


def _account(name: str) -> Any:
    from hepatrial.trials.services.accounts import account

    return account(name)
