"""The report as a Word document (python-docx): the same text, tables and figures as the HTML.

Tables are three-line (booktabs) tables: a rule above and below the header, a rule at the
bottom, no vertical lines; label rows bold, level rows indented, header rows repeated on every
page, footnotes in small type below the table. Figures are PNG.

Determinism: the ZIP entries carry a fixed timestamp (1980-01-01) and the document properties
no creation or modification date, so the same report gives the same bytes; the run time is a
paragraph of the document, as in the HTML.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor

from hepatrial.report.table import Table

__all__ = ["build_docx"]

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def _border(cell: Any, edge: str, size: int = 8) -> None:
    tc_pr = cell._tc.get_or_add_tcPr()
    borders = tc_pr.find(qn("w:tcBorders"))
    if borders is None:
        borders = OxmlElement("w:tcBorders")
        tc_pr.append(borders)
    el = borders.find(qn(f"w:{edge}"))
    if el is None:
        el = OxmlElement(f"w:{edge}")
        borders.append(el)
    el.set(qn("w:val"), "single")
    el.set(qn("w:sz"), str(size))
    el.set(qn("w:space"), "0")
    el.set(qn("w:color"), "000000")


def _repeat_header(row: Any) -> None:
    tr_pr = row._tr.get_or_add_trPr()
    el = OxmlElement("w:tblHeader")
    el.set(qn("w:val"), "true")
    tr_pr.append(el)


def _write(cell: Any, text: str, *, bold: bool = False, align: str = "center",
           indent: int = 0, size: float = 8.5) -> None:
    p = cell.paragraphs[0]
    p.alignment = WD_ALIGN_PARAGRAPH.LEFT if align == "left" else WD_ALIGN_PARAGRAPH.CENTER
    pf = p.paragraph_format
    pf.space_before = Pt(0)
    pf.space_after = Pt(0)
    if indent:
        pf.left_indent = Cm(0.4 * indent)
    run = p.add_run(text)
    run.bold = bold
    run.font.size = Pt(size)


def _weights(t: Table) -> tuple[float, list[float]]:
    def longest(texts: list[str]) -> float:
        return float(max((len(x) for x in texts), default=4))

    stub = max(longest([("  " * r.indent) + r.label for r in t.rows] + [t.stub]), 10.0)
    cols = [max(longest([r.cells[j] for r in t.rows]), longest(c.split()), 3.0) + 2.0
            for j, c in enumerate(t.columns)]
    return stub, cols


def _is_wide(t: Table) -> bool:
    """Landscape when the table's natural width (≈ 0.16 cm a character at 8.5 pt) exceeds
    the 17 cm of a portrait A4 text width."""
    stub, cols = _weights(t)
    return (stub + sum(cols)) * 0.16 > 17.0


def _widths(t: Table, avail_cm: float) -> list[float]:
    """Column widths (cm) filling the text width: proportional to the longest text of each
    column (of a header only its longest word: headers wrap), the stub at most 40 %."""
    stub, cols = _weights(t)
    total = stub + sum(cols)
    stub_cm = min(stub / total * avail_cm, 0.4 * avail_cm)
    rest = avail_cm - stub_cm
    return [stub_cm, *(w / sum(cols) * rest for w in cols)]


def _set_widths(tab: Any, widths: list[float]) -> None:
    tab.autofit = False
    for j, w in enumerate(widths):
        tab.columns[j].width = Cm(w)
        for cell in tab.columns[j].cells:
            cell.width = Cm(w)


def add_table(doc: Any, t: Table, avail_cm: float = 17.0) -> None:
    """Append caption, three-line table and footnotes of ``t``."""
    cap = doc.add_paragraph()
    cap.paragraph_format.keep_with_next = True
    cap.paragraph_format.space_before = Pt(10)
    r = cap.add_run(t.caption)
    r.bold = True
    r.font.size = Pt(10)
    ncol = len(t.columns) + 1
    head_rows = 2 if t.spanners else 1
    tab = doc.add_table(rows=head_rows + len(t.rows), cols=ncol)
    tab.alignment = WD_TABLE_ALIGNMENT.LEFT
    tab.autofit = True
    hdr = tab.rows[head_rows - 1]
    if t.spanners:
        top = tab.rows[0]
        for label, a, b in t.spanners:
            cell = top.cells[a + 1].merge(top.cells[b + 1]) if b > a else top.cells[a + 1]
            _write(cell, label, bold=True)
            for j in range(a + 1, b + 2):
                _border(top.cells[j], "bottom", 4)
        _repeat_header(top)
        for c in top.cells:
            _border(c, "top", 12)
    _write(hdr.cells[0], t.stub, bold=True, align="left")
    for j, c in enumerate(t.columns):
        _write(hdr.cells[j + 1], c, bold=True)
    _repeat_header(hdr)
    for c in hdr.cells:
        if not t.spanners:
            _border(c, "top", 12)
        _border(c, "bottom", 8)
    for i, row in enumerate(t.rows):
        cells = tab.rows[head_rows + i].cells
        _write(cells[0], row.label, bold=row.heading, align="left", indent=row.indent)
        for j, v in enumerate(row.cells):
            _write(cells[j + 1], v)
    if t.rows:
        for c in tab.rows[-1].cells:
            _border(c, "bottom", 12)
    _set_widths(tab, _widths(t, avail_cm))
    for n in t.notes:
        p = doc.add_paragraph()
        p.paragraph_format.space_before = Pt(0)
        p.paragraph_format.space_after = Pt(0)
        run = p.add_run(n)
        run.font.size = Pt(7.5)
    doc.add_paragraph()


def _landscape(doc: Any, on: bool) -> None:
    sec = doc.sections[-1]
    want = WD_ORIENT.LANDSCAPE if on else WD_ORIENT.PORTRAIT
    if sec.orientation == want:
        return
    from docx.enum.section import WD_SECTION

    new = doc.add_section(WD_SECTION.NEW_PAGE)
    w, h = new.page_width, new.page_height
    new.orientation = want
    if (on and h > w) or (not on and w > h):
        new.page_width, new.page_height = h, w


def _figure(doc: Any, png: bytes | None, caption: str, width_cm: float = 16.0) -> None:
    if not png:
        return
    if caption:
        p = doc.add_paragraph()
        p.paragraph_format.keep_with_next = True
        r = p.add_run(caption)
        r.bold = True
        r.font.size = Pt(10)
    doc.add_picture(io.BytesIO(png), width=Cm(width_cm))


def _deterministic(data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=_FIXED_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            dst.writestr(zi, src.read(info.filename))
    return out.getvalue()


def build_docx(*, title: str, protocol_line: str, synthetic_label: str | None,
               methods: str, results: str, tables: list[Table], figures: dict[str, Any],
               sections: dict[str, list[str]], provenance: list[tuple[str, str]],
               run_time: str, paragraphs: dict[str, str] | None = None) -> bytes:
    """The Word document (bytes).

    ``sections`` maps a heading to its items, in order: table ids, ``figure:<key>`` (PNG bytes
    in ``figures[key]``, caption ``figures[key + "_title"]``) or keys of ``paragraphs`` (a
    paragraph, printed before the table of the same id). A heading with no item present is
    left out. ``figures["flow"]`` is the flow diagram under "Participant flow".
    """
    doc = Document()
    st = doc.styles["Normal"]
    st.font.name = "Calibri"
    st.font.size = Pt(10)
    sec = doc.sections[0]
    sec.page_width, sec.page_height = Cm(21.0), Cm(29.7)
    for side in ("left_margin", "right_margin"):
        setattr(sec, side, Cm(2.0))
    cp = doc.core_properties
    cp.title = title
    cp.author = "hepatrial"
    cp.comments = "generated by hepatrial"
    for tag in ("dcterms:created", "dcterms:modified"):
        el = cp._element.find(qn(tag))
        if el is not None:
            cp._element.remove(el)
    if synthetic_label:
        p = doc.add_paragraph()
        run = p.add_run(f"{synthetic_label}. Every individual value in this report is invented; "
                        "only the published summary statistics are real.")
        run.bold = True
        run.font.color.rgb = RGBColor(0x8A, 0x5A, 0x00)
    doc.add_heading(title, level=1)
    doc.add_paragraph(protocol_line)
    doc.add_heading("Methods", level=2)
    doc.add_paragraph(methods)
    doc.add_heading("Results", level=2)
    doc.add_paragraph(results)
    doc.add_heading("Participant flow", level=2)
    _figure(doc, figures.get("flow"), "", 14.0)
    by_id = {t.id: t for t in tables}
    extra = paragraphs or {}
    for heading, ids in sections.items():
        items = [i for i in ids if i in by_id or i in extra
                 or (i.startswith("figure:") and figures.get(i[len("figure:"):]))]
        if not items:
            continue
        doc.add_heading(heading, level=2)
        for i in items:
            if i in extra:
                doc.add_paragraph(extra[i])
            if i.startswith("figure:"):
                key = i[len("figure:"):]
                _figure(doc, figures.get(key), figures.get(f"{key}_title") or "")
                continue
            if i not in by_id:
                continue
            t = by_id[i]
            wide = _is_wide(t)
            if wide:
                _landscape(doc, True)
            add_table(doc, t, 25.7 if wide else 17.0)
            if wide:
                _landscape(doc, False)
    doc.add_heading("Provenance", level=2)
    for k, v in provenance:
        p = doc.add_paragraph()
        p.paragraph_format.space_after = Pt(0)
        r = p.add_run(f"{k}: ")
        r.bold = True
        p.add_run(v)
    doc.add_paragraph(f"Run time: {run_time}")
    buf = io.BytesIO()
    doc.save(buf)
    return _deterministic(buf.getvalue())
