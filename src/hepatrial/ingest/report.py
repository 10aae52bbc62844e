"""Import outcome: counts, rejects CSV, and the terminal rendering (rich)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from hepatrial import errors as _errors
from hepatrial.ingest.validate import REJECT_COLUMNS

__all__ = ["ImportRefused", "ImportResult", "render_rejects", "write_rejects"]

#: How many reject lines are shown in the terminal (the CSV always has all of them).
DISPLAY_CAP = 50


@dataclass
class ImportResult:
    """What an import did (or, for a dry run, would do).

    ``created``/``changed``/``unchanged`` count lab values (measurements); ``participants_created``
    and ``visits_created`` count the rows the import had to add, ``visits_dated`` the scheduled
    visits whose actual date it recorded (earliest specimen date); ``clinical_*`` count the
    visits' clinical assessments (``import visits`` with ``[[clinical]]`` columns).
    """

    rows: int
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    participants_created: int = 0
    visits_created: int = 0
    visits_dated: int = 0
    clinical_created: int = 0
    clinical_changed: int = 0
    clinical_unchanged: int = 0
    dry_run: bool = False
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    rejects_path: Path | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return self.rejects.empty

    def summary(self) -> str:
        """One line: ``N created, N changed, N unchanged`` (+ participants/visits created)."""
        head = "dry run, nothing written: would be " if self.dry_run else ""
        s = f"{head}{self.created} created, {self.changed} changed, {self.unchanged} unchanged"
        extra = []
        if self.participants_created:
            extra.append(f"{self.participants_created} participants")
        if self.visits_created:
            extra.append(f"{self.visits_created} visits")
        if extra:
            s += f" ({' and '.join(extra)} {'to create' if self.dry_run else 'created'})"
        if self.clinical_created or self.clinical_changed:
            parts = [f"{n} {w}" for n, w in ((self.clinical_created, "created"),
                                             (self.clinical_changed, "changed")) if n]
            s += f"; clinical assessments: {', '.join(parts)}"
        if self.visits_dated:
            s += (f" ({self.visits_dated} scheduled visit dates "
                  f"{'to record' if self.dry_run else 'recorded'})")
        return s


class ImportRefused(_errors.ImportRefused):
    """The import was refused; nothing was written. Carries the rejects table.

    ``rejects_path`` is where the rejects CSV was written (None: not written - a dry run
    without ``--rejects``, or the file could not be written: then ``rejects_error`` is the
    ``OSError``).
    """

    def __init__(self, message: str, rejects: pd.DataFrame, result: ImportResult | None = None):
        super().__init__(message)
        self.rejects = rejects
        self.result = result
        self.rejects_path: Path | None = None
        self.rejects_error: OSError | None = None


def shown(value: object, limit: int | None = None) -> str:
    """A cell as shown in the rejects table and CSV: control characters written as escapes
    (``\\x00``), so that a NUL or an escape sequence from the file is visible and harmless;
    cut to ``limit`` characters (with ``...`` and the full length) when given."""
    import re

    from hepatrial.textrules import CONTROL_PATTERN

    text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    text = re.sub(CONTROL_PATTERN, lambda m: m.group(0).encode("unicode_escape",
                                                               "backslashreplace").decode(),
                  text)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text


def write_rejects(rejects: pd.DataFrame, path: str | Path) -> Path:
    """Write every reject (row, column, value, reason) to ``path`` as CSV: text cells as
    :func:`shown` and neutralised for spreadsheets (:func:`hepatrial.textrules.csv_cell`: an
    id such as ``=HYPERLINK(...)`` from a refused file is written ``'=HYPERLINK(...)``).
    Raises ``OSError`` when the file cannot be written (nothing is left behind then)."""
    from hepatrial.textrules import csv_cell

    path = Path(path)
    out = rejects.loc[:, list(REJECT_COLUMNS)].copy()
    for col in ("column", "value", "reason"):
        out[col] = [csv_cell(shown(v)) for v in out[col]]
    try:
        out.to_csv(path, index=False, lineterminator="\n")
    except OSError:
        try:  # no partial rejects file: it would look complete
            if path.is_file():
                path.unlink()
        except OSError:
            pass
        raise
    return path


def render_rejects(rejects: pd.DataFrame, console: Console, *, title: str,
                   cap: int = DISPLAY_CAP,
                   more_hint: str = "see the rejects CSV for all of them") -> None:
    """Print the rejects as a rich table, at most ``cap`` lines, then how many were not shown
    (``more_hint`` says where to find them)."""
    n_rows = rejects["row"].nunique()
    console.print(f"{title}: {n_rows} row(s) rejected, {len(rejects)} problem(s) "
                  "(row = 1-based data row; row 1 is the line after the header)")
    table = Table()
    table.add_column("row", justify="right")
    table.add_column("column")
    table.add_column("value")
    table.add_column("reason")
    from rich.markup import escape

    for r in rejects.head(cap).itertuples(index=False):
        table.add_row(str(r.row), escape(shown(r.column)), escape(shown(r.value, 60)),
                      escape(shown(r.reason, 300)))
    console.print(table)
    if len(rejects) > cap:
        console.print(f"... and {len(rejects) - cap} more problem(s) not shown "
                      f"({more_hint})")
