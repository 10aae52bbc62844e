"""Printable documents of the cell product: labels, certificate of analysis, vein-to-vein
timeline — rendered from plain dataclasses (this module reads no store).

* :func:`render_label_html` — a label page per container: the chain-of-identity id in text
  (check character boxed, as ISBT 128 prints the DIN's) and as a QR code (ISO/IEC 18004,
  drawn with ``segno``), at least two patient identifiers, "FOR AUTOLOGOUS USE ONLY"
  (21 CFR 1271.90(c)), the investigational-use statement (21 CFR 312.6(a); EU CTR 536/2014
  Annex VI), contents, formulation and expiry, storage. Labels with fewer than two patient
  identifiers are refused (FDA draft guidance "Considerations for the Development of CAR T
  Cell Products", 2022; FACT-JACIE labelling standards).
* :func:`render_coa_html` / :func:`render_coa_pdf` — the certificate of analysis of a batch:
  every release test with its method, sample point, specification, result, analyst, date and
  verdict (judged by :meth:`hepatrial.protocol.models.Product.release_assessment`, the one
  rule), the conclusion, the release signature (printed name, date/time, meaning: 21 CFR
  11.50) and any exceptional release with its justification and deviation.
* :func:`vein_to_vein` / :func:`render_timeline_html` — a participant's timeline from harvest
  to infusion with the duration of each leg.

Output is deterministic: the same data give the same bytes (the PDF's dates come from the
data, never from the clock). Jinja2 autoescaping is on: nothing entered is ever markup.
"""

from __future__ import annotations

import datetime as _dt
import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from hepatrial.protocol.models import Product, TestAssessment

__all__ = [
    "CertificateData",
    "CoaRow",
    "LabelData",
    "Leg",
    "PatientIdentifier",
    "QcResult",
    "ReleaseRecord",
    "TimelineEvent",
    "coa_rows",
    "qr_svg",
    "render_coa_html",
    "render_coa_pdf",
    "render_label_html",
    "render_timeline_html",
    "vein_to_vein",
]

AUTOLOGOUS = "FOR AUTOLOGOUS USE ONLY"
INVESTIGATIONAL = "Investigational product: for clinical trial use only"


# ---------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class PatientIdentifier:
    """One patient identifier printed on a label: what it is and its value."""

    label: str
    value: str


@dataclass(frozen=True)
class LabelData:
    """What a product label shows."""

    coi: str
    batch_id: str
    product_name: str
    identifiers: tuple[PatientIdentifier, ...]
    protocol: str
    cells_total: float | None = None
    volume_ml: float | None = None
    vehicle: str = ""
    formulated_at: _dt.datetime | None = None
    expires_at: _dt.datetime | None = None
    storage: str = ""
    container: str = ""
    site: str = ""


@dataclass(frozen=True)
class QcResult:
    """A recorded QC result: the value as entered, who tested it, when, and how."""

    result: Any
    analyst: str = ""
    tested_on: _dt.date | None = None
    method: str = ""


@dataclass(frozen=True)
class ReleaseRecord:
    """The release as signed: who, when, the signature's meaning, exceptional or not."""

    released_by: str
    released_at: _dt.datetime
    meaning: str = "release"
    exceptional: bool = False
    justification: str = ""
    investigator: str = ""
    deviation: str = ""


@dataclass(frozen=True)
class CertificateData:
    """The facts of a certificate of analysis (the specification comes from the protocol)."""

    batch_id: str
    coi: str
    participant: str
    protocol: str
    results: Mapping[str, QcResult]
    weight_kg: float | None = None
    volume_ml: float | None = None
    manufactured_by: tuple[str, ...] = ()
    formulated_at: _dt.datetime | None = None
    expires_at: _dt.datetime | None = None
    release: ReleaseRecord | None = None
    issued_at: _dt.datetime | None = None


@dataclass(frozen=True)
class CoaRow:
    """One line of the certificate."""

    test: str
    method: str
    sample_point: str
    specification: str
    result: str
    analyst: str
    tested_on: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class TimelineEvent:
    """One point of the vein-to-vein timeline (``kind``: harvest, receipt, formulation,
    release, dispatch, bedside, infusion, ...)."""

    kind: str
    label: str
    at: _dt.datetime


@dataclass(frozen=True)
class Leg:
    """The time between two consecutive events."""

    start: str
    end: str
    hours: float

    @property
    def text(self) -> str:
        """``21 d 23 h 05 min``, ``3 h 00 min``."""
        return _duration(self.hours)


@dataclass(frozen=True)
class Timeline:
    """A participant's events in time order, the legs between them and the total."""

    participant: str
    events: tuple[TimelineEvent, ...]
    legs: tuple[Leg, ...]
    total_hours: float | None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def total_text(self) -> str:
        """The vein-to-vein time as text (empty when there is no infusion yet)."""
        return "" if self.total_hours is None else _duration(self.total_hours)


# ---------------------------------------------------------------------- helpers
def _duration(hours: float) -> str:
    minutes = round(hours * 60)
    sign = "-" if minutes < 0 else ""
    minutes = abs(minutes)
    d, rem = divmod(minutes, 24 * 60)
    h, m = divmod(rem, 60)
    return f"{sign}{d} d {h} h {m:02d} min" if d else f"{sign}{h} h {m:02d} min"


def _ts(t: _dt.datetime | None) -> str:
    if t is None:
        return ""
    if t.tzinfo is not None and t.utcoffset() is not None:
        return t.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return t.strftime("%Y-%m-%d %H:%M")


def _cells(n: float | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:g} x10^6 cells"


def _result_text(r: Any) -> str:
    if isinstance(r, Mapping):
        v, u = r.get("value"), r.get("unit")
        return f"{_result_text(v)} {u}".strip() if u else _result_text(v)
    if isinstance(r, float):
        return f"{r:g}"
    return str(r)


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("hepatrial.report", "templates"),
        autoescape=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def qr_svg(text: str, *, scale: int = 4) -> str:
    """An inline SVG QR code of ``text`` (segno; error correction at least M; deterministic)."""
    import segno

    return str(segno.make(text, error="m", micro=False).svg_inline(scale=scale, dark="#000"))


# ---------------------------------------------------------------------- label
def render_label_html(label: LabelData) -> str:
    """A printable HTML label page (refuses a label with fewer than two patient identifiers,
    or an invalid chain-of-identity id)."""
    from hepatrial.protocol.coi import validate_coi

    ids = [i for i in label.identifiers if i.value.strip()]
    if len(ids) < 2:
        raise ValueError(f"label of batch {label.batch_id}: {len(ids)} patient identifier(s); "
                         "a label carries at least two")
    check = validate_coi(label.coi)
    if not check.ok:
        raise ValueError(f"label of batch {label.batch_id}: {check.reason}")
    return _env().get_template("product_label.html.j2").render(
        label=label, identifiers=ids, coi_body=label.coi[:-1], coi_check=label.coi[-1],
        qr=qr_svg(label.coi), autologous=AUTOLOGOUS, investigational=INVESTIGATIONAL,
        cells=_cells(label.cells_total), formulated=_ts(label.formulated_at),
        expires=_ts(label.expires_at),
    )


# ---------------------------------------------------------------------- certificate
def coa_rows(product: Product, data: CertificateData) -> list[CoaRow]:
    """The certificate's lines: every release test of the protocol, judged by the product's
    release assessment (the same rule the store and the release step use)."""
    results = {k: v.result for k, v in data.results.items()}
    verdicts: dict[str, TestAssessment] = {
        a.name: a for a in product.release_assessment(results, weight_kg=data.weight_kg,
                                                      volume_ml=data.volume_ml)
    }
    rows = []
    for t in product.release_spec:
        a = verdicts[t.name]
        qc = data.results.get(t.name)
        rows.append(CoaRow(
            test=t.name, method=(qc.method if qc is not None and qc.method else t.method),
            sample_point=t.sample_point, specification=t.full_criterion,
            result="" if qc is None else (_result_text(qc.result)
                                          + (f" {t.unit}" if t.unit and not isinstance(
                                              qc.result, Mapping) else "")),
            analyst="" if qc is None else qc.analyst,
            tested_on="" if qc is None or qc.tested_on is None else qc.tested_on.isoformat(),
            verdict=a.outcome.upper(), reason=a.reason,
        ))  # fmt: skip
    return rows


def _conclusion(rows: Sequence[CoaRow]) -> str:
    verdicts = {r.verdict for r in rows}
    if verdicts <= {"PASS"}:
        return "The batch meets its release specification."
    if verdicts <= {"PASS", "PENDING"}:
        pend = ", ".join(r.test for r in rows if r.verdict == "PENDING")
        return (f"The batch meets its release specification on the rapid tests; result "
                f"pending: {pend}. A later failing result is investigated and the "
                "investigator informed.")
    bad = ", ".join(r.test for r in rows if r.verdict not in ("PASS", "PENDING"))
    return f"The batch does NOT meet its release specification: {bad}."


def _coa_context(product: Product, data: CertificateData) -> dict[str, Any]:
    rows = coa_rows(product, data)
    rel = data.release
    return {
        "d": data, "product": product, "rows": rows, "conclusion": _conclusion(rows),
        "release": rel, "released_at": _ts(rel.released_at) if rel else "",
        "formulated": _ts(data.formulated_at), "expires": _ts(data.expires_at),
        "issued": _ts(data.issued_at or (rel.released_at if rel else None)),
        "weight": "" if data.weight_kg is None else f"{data.weight_kg:g} kg",
        "autologous": AUTOLOGOUS,
    }


def render_coa_html(product: Product, data: CertificateData) -> str:
    """The certificate of analysis of a batch as an HTML page."""
    return _env().get_template("product_coa.html.j2").render(**_coa_context(product, data))


def _font_path() -> Path:
    """DejaVu Sans (shipped with matplotlib, a dependency): a Unicode font for °, ≥, ×."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def render_coa_pdf(product: Product, data: CertificateData) -> bytes:
    """The certificate of analysis of a batch as a PDF (fpdf2; same data, same bytes)."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    ctx = _coa_context(product, data)
    stamp = data.issued_at or (data.release.released_at if data.release else None) or \
        _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_dt.UTC)
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_creation_date(stamp)
    pdf.set_title(f"Certificate of analysis {data.batch_id}")
    pdf.set_author("hepatrial")
    pdf.set_creator("hepatrial")
    pdf.set_producer("hepatrial")
    font = str(_font_path())
    pdf.add_font("DejaVu", "", font)
    pdf.add_font("DejaVu", "B", str(_font_path().with_name("DejaVuSans-Bold.ttf")))
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    nl = {"new_x": XPos.LMARGIN, "new_y": YPos.NEXT}
    pdf.set_font("DejaVu", "B", 14)
    pdf.cell(0, 8, f"Certificate of analysis — batch {data.batch_id}", **nl)
    pdf.set_font("DejaVu", "", 9)
    for k, v in [
        ("Product", product.name), ("Protocol", data.protocol),
        ("Participant", data.participant), ("Chain of identity", data.coi),
        ("Formulated", ctx["formulated"]), ("Expires", ctx["expires"]),
        ("Weight", ctx["weight"]),
        ("Manufactured by", ", ".join(data.manufactured_by)),
    ]:  # fmt: skip
        pdf.cell(0, 5, f"{k}: {v}", **nl)
    pdf.set_font("DejaVu", "B", 9)
    pdf.cell(0, 5, AUTOLOGOUS, **nl)
    pdf.ln(2)
    widths = (26, 62, 42, 42, 30, 22, 20, 20)
    head = ("Test", "Method", "Sample point", "Specification", "Result", "Analyst", "Date",
            "Verdict")
    with pdf.table(col_widths=widths, text_align="LEFT", line_height=4.5,
                   first_row_as_headings=True) as table:
        pdf.set_font("DejaVu", "", 7.5)
        row = table.row()
        for h in head:
            row.cell(h)
        for r in ctx["rows"]:
            row = table.row()
            for v in (r.test, r.method, r.sample_point, r.specification, r.result, r.analyst,
                      r.tested_on, r.verdict + (f": {r.reason}" if r.reason else "")):
                row.cell(v)
    pdf.ln(3)
    pdf.set_font("DejaVu", "B", 9)
    pdf.multi_cell(0, 5, ctx["conclusion"], **nl)
    pdf.set_font("DejaVu", "", 9)
    rel = data.release
    if rel is None:
        pdf.multi_cell(0, 5, "Not released.", **nl)
    else:
        pdf.multi_cell(0, 5, f"{'Exceptional release' if rel.exceptional else 'Released'} "
                       f"by {rel.released_by} on {ctx['released_at']} (signature meaning: "
                       f"{rel.meaning}).", **nl)
        if rel.exceptional:
            pdf.multi_cell(0, 5, f"Medical justification ({rel.investigator}): "
                           f"{rel.justification}", **nl)
            if rel.deviation:
                pdf.multi_cell(0, 5, f"Major deviation: {rel.deviation}", **nl)
    buf = io.BytesIO()
    pdf.output(buf)
    return buf.getvalue()


# ---------------------------------------------------------------------- timeline
def vein_to_vein(participant: str, events: Sequence[TimelineEvent]) -> Timeline:
    """The participant's events in time order (stable for equal times), the legs between
    consecutive events, and the total from the harvest to the first infusion (None without
    both)."""
    evs = tuple(sorted(events, key=lambda e: e.at))
    legs = tuple(Leg(a.label, b.label, (b.at - a.at).total_seconds() / 3600)
                 for a, b in itertools.pairwise(evs))
    harvest = next((e for e in evs if e.kind == "harvest"), None)
    infusion = next((e for e in evs if e.kind == "infusion"), None)
    total = None
    if harvest is not None and infusion is not None:
        total = (infusion.at - harvest.at).total_seconds() / 3600
    return Timeline(participant, evs, legs, total)


def render_timeline_html(participant: str, events: Sequence[TimelineEvent]) -> str:
    """The vein-to-vein timeline of a participant as an HTML page."""
    tl = vein_to_vein(participant, events)
    return _env().get_template("product_timeline.html.j2").render(
        tl=tl, when=[_ts(e.at) for e in tl.events])


def write_text(path: str | Path, text: str) -> None:
    """Write a rendered page (UTF-8, LF)."""
    Path(path).write_text(text, encoding="utf-8", newline="\n")


def template_names() -> list[str]:
    """The product templates shipped with the package."""
    root = resources.files("hepatrial.report").joinpath("templates")
    return sorted(f.name for f in root.iterdir() if f.name.startswith("product_"))
