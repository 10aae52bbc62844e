"""A publication table as data, and its renderings (HTML, plain text, CSV).

A :class:`Table` is what a journal prints (gtsummary's layout): a stub column of row labels
(variable label rows, indented level rows), value columns whose headers may sit under a
spanner, and footnotes whose marks (¹ ² ³) are written into headers or labels by the builder
(:class:`Notes`).  The same object renders to

* :func:`to_html` — a booktabs-style ``<table>`` (styles in the report template);
* :func:`to_text` — a Markdown pipe table (used for the golden files of the tests);
* :func:`to_csv` — the table as displayed (stub + columns; level rows indented by two spaces),
  UTF-8 with a byte-order mark so that spreadsheet programs read µ, × and − correctly;
* :mod:`hepatrial.report.word` — a Word table.

Everything is deterministic: same table, same bytes.
"""

from __future__ import annotations

import csv
import html as _html
import io
from dataclasses import dataclass, field

from hepatrial.report.format import superscript

__all__ = ["Notes", "Row", "Table", "to_csv", "to_html", "to_text"]


@dataclass
class Row:
    """One table row: stub ``label``, one string per value column, indent level (0 or 1) and
    whether it is a label-only heading row (e.g. a categorical variable above its levels)."""

    label: str
    cells: list[str]
    indent: int = 0
    heading: bool = False


@dataclass
class Table:
    """A publication table (see the module docstring)."""

    id: str
    title: str
    stub: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: (label, first column index, last column index), indices into ``columns``
    spanners: list[tuple[str, int, int]] = field(default_factory=list)
    number: str | None = None  # "2" or "S1" — set when the report numbers its tables

    @property
    def caption(self) -> str:
        """``Table 2. Title`` (or the bare title when unnumbered)."""
        return f"Table {self.number}. {self.title}" if self.number else self.title

    def add(self, label: str, cells: list[str] | None = None, *, indent: int = 0,
            heading: bool = False) -> None:
        """Append a row (label-only heading rows get empty cells)."""
        cells = [""] * len(self.columns) if cells is None else [str(c) for c in cells]
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.id}: row {label!r} has {len(cells)} cells for "
                             f"{len(self.columns)} columns")
        self.rows.append(Row(label, cells, indent, heading))

    def column(self, name: str) -> list[str]:
        """Values of one column, by header (for tests)."""
        i = self.columns.index(name)
        return [r.cells[i] for r in self.rows]

    def cell(self, label: str, column: str, *, within: str | None = None) -> str:
        """The cell in the row labelled ``label`` (below the heading ``within`` if given)."""
        i = self.columns.index(column)
        current = None
        for r in self.rows:
            if r.indent == 0:
                current = r.label
            if r.label == label and (within is None or current == within):
                return r.cells[i]
        raise KeyError(f"{self.id}: no row {label!r}" + (f" under {within!r}" if within else ""))


class Notes:
    """Footnotes with marks: ``mark(text)`` returns ``¹`` (the same mark for the same text)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, text: str) -> str:
        """Register ``text`` and return its superscript mark."""
        if text not in self.items:
            self.items.append(text)
        return superscript(self.items.index(text) + 1)

    def lines(self) -> list[str]:
        """``¹ text`` lines in mark order."""
        return [f"{superscript(i + 1)} {t}" for i, t in enumerate(self.items)]


def _e(s: str) -> str:
    return _html.escape(s, quote=False)


def to_html(t: Table) -> str:
    """Booktabs-style HTML table with caption, spanners, indented rows and footnotes."""
    ncol = len(t.columns) + 1
    out = [f'<table class="pub" id="{t.id}">', f"<caption>{_e(t.caption)}</caption>", "<thead>"]
    if t.spanners:
        cells = ['<th class="stub"></th>']
        i = 0
        while i < len(t.columns):
            sp = next((s for s in t.spanners if s[1] == i), None)
            if sp:
                span = sp[2] - sp[1] + 1
                cells.append(f'<th class="spanner" colspan="{span}">{_e(sp[0])}</th>')
                i += span
            else:
                cells.append("<th></th>")
                i += 1
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append(f'<tr><th class="stub">{_e(t.stub)}</th>'
               + "".join(f"<th>{_e(c)}</th>" for c in t.columns) + "</tr>")
    out.append("</thead>")
    out.append("<tbody>")
    for r in t.rows:
        cls = [f"indent{r.indent}"] + (["heading"] if r.heading else [])
        out.append(f'<tr class="{" ".join(cls)}"><td class="stub">{_e(r.label)}</td>'
                   + "".join(f"<td>{_e(c)}</td>" for c in r.cells) + "</tr>")
    out.append("</tbody>")
    if t.notes:
        out.append("<tfoot>")
        for n in t.notes:
            out.append(f'<tr><td colspan="{ncol}">{_e(n)}</td></tr>')
        out.append("</tfoot>")
    out.append("</table>")
    return "\n".join(out)


def _md(s: str) -> str:
    return s.replace("|", "\\|")


def to_text(t: Table) -> str:
    """Markdown pipe table (caption line, spanner line, header, rows, footnotes)."""
    lines = [t.caption, ""]
    if t.spanners:
        sp = [f"{s[0]}: {', '.join(t.columns[s[1]:s[2] + 1])}" for s in t.spanners]
        lines.append("Spanning headers: " + "; ".join(sp))
        lines.append("")
    lines.append("| " + " | ".join(_md(c) for c in [t.stub, *t.columns]) + " |")
    lines.append("|" + "|".join(["---"] + [":---:"] * len(t.columns)) + "|")
    for r in t.rows:
        label = ("    " * r.indent) + (f"**{r.label}**" if r.heading else r.label)
        lines.append("| " + " | ".join(_md(c) for c in [label, *r.cells]) + " |")
    if t.notes:
        lines.append("")
        lines.extend(t.notes)
    return "\n".join(lines) + "\n"


def _csv_header(t: Table) -> list[str]:
    head = list(t.columns)
    for label, a, b in t.spanners:
        for i in range(a, b + 1):
            head[i] = f"{label}: {head[i]}"
    return [t.stub, *head]


def to_csv(t: Table) -> bytes:
    """The table as displayed, as CSV (UTF-8 with BOM, ``\\n`` line ends); footnotes are not
    part of the CSV (they are in the report and the Word document)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_csv_header(t))
    for r in t.rows:
        w.writerow([("  " * r.indent) + r.label, *r.cells])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
