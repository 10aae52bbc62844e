"""Write the whole report into one directory: HTML, Word, and every table as CSV.

``<stem>.html`` (self-contained), ``<stem>.docx`` (same text, tables and figures),
``<stem>_<table id>.csv`` per table (the table as displayed; UTF-8 with BOM) and
``<stem>_tables.csv`` (index: number, title, file and footnotes of every table). Same data,
same bytes, except the run-time line of the HTML and the Word document.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from hepatrial.report import html as _h
from hepatrial.report import tables as _t
from hepatrial.report.table import Table, to_csv

__all__ = ["build_word", "write_report"]

SECTIONS = {
    "Baseline characteristics": ["table1"],
    "Cell product": ["product"],
    "Outcomes": ["outcomes", "multiplicity", "ancova", "lmm", "figure:trajectories",
                 "figure:waterfall"],
    "Safety": ["text:no_events", "ae_overview", "ae_by_soc", "lab_shifts"],
    "Synthetic reconstruction of the published trial": ["text:variant", "reconstruction",
                                                        "meld_variants"],
    "Supportive MELD variants": ["meld_supportive"],
}


def _provenance(results: dict[str, Any]) -> list[tuple[str, str]]:
    from hepatrial import __version__

    proto = results.get("protocol") or {}
    return [("Software", f"hepatrial {__version__}"),
            ("Protocol", f"{proto.get('name')} v{proto.get('version')}, content hash "
                         f"{proto.get('content_hash')}"),
            ("Database content", "SHA-256 of the exported analysis dataset (CSV) "
                                 f"{results['dataset_sha256']}"),
            ("Analysis plan", _h.plan_text(results))]


def build_word(td: Any, results: dict[str, Any], tables: list[Table], *,
               run_time: str) -> bytes:
    """The Word version of the report (bytes)."""
    from hepatrial.report.word import build_docx

    proto = results.get("protocol") or {}
    demo = results.get("demo")
    figs = _h.figure_set(td, results, out="png")
    paragraphs = {}
    if not results["safety"]["n_events"]:
        paragraphs["text:no_events"] = "No adverse events were recorded."
    if demo:
        paragraphs["text:variant"] = _h.variant_sentence(demo)
    return build_docx(
        title=str(proto.get("title") or proto.get("name") or "Trial report"),
        protocol_line=f"Protocol {proto.get('name')} v{proto.get('version')} "
                      f"({proto.get('registration')}). {proto.get('reference') or ''}".strip(),
        synthetic_label=(demo or {}).get("label"),
        methods=_h.methods_text(results), results=_h.results_text(results), tables=tables,
        figures=figs, sections=SECTIONS, provenance=_provenance(results), run_time=run_time,
        paragraphs=paragraphs)


def _index(tables: list[Table], stem: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "title", "file", "footnotes"])
    for t in tables:
        w.writerow([f"Table {t.number}", t.title, f"{stem}_{t.id}.csv", " | ".join(t.notes)])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def write_report(td: Any, results: dict[str, Any], out_dir: str | Path, stem: str, *,
                 run_time: str | None = None) -> dict[str, Path]:
    """Write ``<stem>.html``, ``<stem>.docx``, one CSV per table and the table index into
    ``out_dir``; returns ``{"html": …, "docx": …, "tables": …, <table id>: …}``."""
    import datetime as _dt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if run_time is None:
        run_time = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tables = _t.report_tables(td, results)
    paths: dict[str, Path] = {}
    html = _h.build_report(td, results, run_time=run_time, tables=tables)
    paths["html"] = out / f"{stem}.html"
    paths["html"].write_text(html, encoding="utf-8")
    paths["docx"] = out / f"{stem}.docx"
    paths["docx"].write_bytes(build_word(td, results, tables, run_time=run_time))
    for t in tables:
        p = out / f"{stem}_{t.id}.csv"
        p.write_bytes(to_csv(t))
        paths[t.id] = p
    paths["tables"] = out / f"{stem}_tables.csv"
    paths["tables"].write_bytes(_index(tables, stem))
    return paths
