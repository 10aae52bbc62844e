"""Product documents (hepatrial.report.product): label page with QR code and two patient
identifiers, certificate of analysis in HTML and a real PDF (its text read back), the
vein-to-vein timeline; escaping and byte-for-byte determinism."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re

import pytest

from hepatrial.protocol.coi import make_coi
from hepatrial.protocol.loader import load_protocol
from hepatrial.protocol.models import Product
from hepatrial.report.product import (
    CertificateData,
    LabelData,
    PatientIdentifier,
    QcResult,
    ReleaseRecord,
    TimelineEvent,
    coa_rows,
    qr_svg,
    render_coa_html,
    render_coa_pdf,
    render_label_html,
    render_timeline_html,
    vein_to_vein,
)
from tests.protocol.test_product_model import PASSING

UTC = dt.UTC
COI = make_coi("S01", "K01", dt.date(2009, 1, 15), 1)
FORMULATED = dt.datetime(2009, 2, 5, 7, 0, tzinfo=UTC)
LABEL = LabelData(
    coi=COI, batch_id="B-K01", product_name="Autologous BM-MSC",
    identifiers=(PatientIdentifier("Study id", "K01"), PatientIdentifier("Year of birth", "1962")),
    protocol="kharaziha2009 1.0.0 (NCT00420134)", cells_total=40e6, volume_ml=10,
    vehicle="normal saline", formulated_at=FORMULATED,
    expires_at=FORMULATED + dt.timedelta(hours=6), storage="2 to 8 °C", site="S01",
)  # fmt: skip
DAY = dt.date(2009, 2, 5)
CERT = CertificateData(
    batch_id="B-K01", coi=COI, participant="K01", protocol="kharaziha2009 1.0.0",
    results={k: QcResult(v, analyst="lab.a", tested_on=DAY) for k, v in PASSING.items()},
    weight_kg=70, manufactured_by=("mona",), formulated_at=FORMULATED,
    expires_at=FORMULATED + dt.timedelta(hours=6),
    release=ReleaseRecord("quinn", FORMULATED + dt.timedelta(hours=1)),
)  # fmt: skip


def _product() -> Product:
    p = load_protocol("kharaziha2009").product
    assert p is not None
    return p


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# ---------------------------------------------------------------------- label
def test_label_page() -> None:
    html = render_label_html(LABEL)
    text = _text(html)
    assert "FOR AUTOLOGOUS USE ONLY" in text
    assert "Study id K01" in text and "Year of birth 1962" in text
    assert f'{COI[:-1]}<span class="check">{COI[-1]}</span>' in html  # check character boxed
    assert "40 x10^6 cells in 10 mL normal saline" in text
    assert "Expires 2009-02-05 13:00 UTC" in text
    assert "Store 2 to 8 °C" in text
    assert "Investigational product: for clinical trial use only" in text
    assert html.count("<svg") == 1 and qr_svg(COI) in html
    assert render_label_html(LABEL) == html  # deterministic


def test_qr_code_encodes_the_identifier() -> None:
    import segno

    # the QR symbol drawn is the one segno makes for the id (version, error level)
    q = segno.make(COI, error="m", micro=False)
    assert q.designator in ("2-M", "2-Q", "2-H")
    svg = qr_svg(COI)
    assert svg == q.svg_inline(scale=4, dark="#000")
    assert svg != qr_svg(make_coi("S01", "K02", dt.date(2009, 1, 15), 1))


def test_label_refuses_one_identifier_or_a_bad_id() -> None:
    one = dataclasses.replace(LABEL, identifiers=(PatientIdentifier("Study id", "K01"),
                                                  PatientIdentifier("Year of birth", " ")))
    with pytest.raises(ValueError, match="1 patient identifier"):
        render_label_html(one)
    with pytest.raises(ValueError, match="check character 'Q' is wrong: expected 'D'"):
        render_label_html(dataclasses.replace(LABEL, coi=COI[:-1] + "Q"))


def test_label_escapes_entered_text() -> None:
    evil = dataclasses.replace(LABEL, identifiers=(
        PatientIdentifier("Study id", "<script>alert(1)</script>"),
        PatientIdentifier("Year of birth", "1962 & co")))
    html = render_label_html(evil)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "1962 &amp; co" in html


# ---------------------------------------------------------------------- certificate
def test_coa_rows_use_the_release_rule() -> None:
    rows = {r.test: r for r in coa_rows(_product(), CERT)}
    assert len(rows) == 14
    assert all(r.verdict == "PASS" for r in rows.values())
    assert rows["endotoxin"].specification == "<= 0.5 EU/mL; <= 5 EU/kg per dose"
    assert rows["endotoxin"].result == "0.1 EU/mL"
    assert rows["sterility"].method.startswith("aerobic and anaerobic culture, 14 days")
    assert rows["cd73"].sample_point == "final product after formulation"
    assert (rows["viability"].analyst, rows["viability"].tested_on) == ("lab.a", "2009-02-05")
    bad = dataclasses.replace(CERT, results={**CERT.results, "viability": QcResult(41.0)})
    rows = {r.test: r for r in coa_rows(_product(), bad)}
    assert (rows["viability"].verdict, rows["viability"].reason) == (
        "FAIL", "41 % does not meet the specification >= 70 %")


def test_coa_html() -> None:
    html = render_coa_html(_product(), CERT)
    text = _text(html)
    assert "Certificate of analysis — batch B-K01" in text
    assert "The batch meets its release specification." in text
    assert "Released by quinn on 2009-02-05 08:00 UTC (signature meaning: release)." in text
    assert f"Chain of identity {COI}" in text
    assert "FOR AUTOLOGOUS USE ONLY" in text
    assert render_coa_html(_product(), CERT) == html


def test_coa_pending_and_exceptional() -> None:
    res = {k: v for k, v in CERT.results.items() if k != "sterility"}
    text = _text(render_coa_html(_product(), dataclasses.replace(CERT, results=res)))
    assert "PENDING: result pending; released on gram_stain (rapid release)" in text
    assert "result pending: sterility" in text
    exc = dataclasses.replace(
        CERT, results={**CERT.results, "viability": QcResult(65.0)},
        release=ReleaseRecord("quinn", FORMULATED + dt.timedelta(hours=1),
                              meaning="exceptional_release", exceptional=True,
                              justification="no alternative", investigator="ivan",
                              deviation="DEV-12"))  # fmt: skip
    text = _text(render_coa_html(_product(), exc))
    assert "The batch does NOT meet its release specification: viability." in text
    assert "Exceptional release by quinn" in text
    assert "Medical justification (ivan): no alternative" in text
    assert "Major deviation: DEV-12" in text


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


def test_coa_pdf_is_a_real_pdf_with_the_text() -> None:
    pdf = render_coa_pdf(_product(), CERT)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    text = _pdf_text(pdf)
    flat = re.sub(r"\s+", " ", text)
    assert "Certificate of analysis — batch B-K01" in flat  # em dash: a Unicode font
    assert COI in flat
    assert "FOR AUTOLOGOUS USE ONLY" in flat
    assert "The batch meets its release specification." in flat
    for name in ("cd73", "viability", "sterility", "gram_stain", "endotoxin", "mycoplasma",
                 "cell_count"):
        assert name in flat, name
    assert "Released by quinn on 2009-02-05 08:00 UTC" in flat
    # same data, same bytes (dates from the data, not the clock)
    assert render_coa_pdf(_product(), CERT) == pdf


def test_coa_pdf_of_a_failed_batch() -> None:
    bad = dataclasses.replace(CERT, results={**CERT.results, "sterility": QcResult("POSITIVE")},
                              release=None)
    flat = re.sub(r"\s+", " ", _pdf_text(render_coa_pdf(_product(), bad)))
    assert "does NOT meet its release specification: sterility" in flat
    assert "Not released." in flat


# ---------------------------------------------------------------------- timeline
EVENTS = [
    TimelineEvent("infusion", "Infusion (portal vein)", dt.datetime(2009, 2, 5, 10, 0,
                                                                    tzinfo=UTC)),
    TimelineEvent("harvest", "Bone-marrow harvest", dt.datetime(2009, 1, 15, 8, 0, tzinfo=UTC)),
    TimelineEvent("release", "QA release", dt.datetime(2009, 2, 5, 8, 0, tzinfo=UTC)),
]


def test_vein_to_vein_legs() -> None:
    tl = vein_to_vein("K01", EVENTS)
    assert [e.kind for e in tl.events] == ["harvest", "release", "infusion"]
    assert [(leg.start, leg.end, leg.hours) for leg in tl.legs] == [
        ("Bone-marrow harvest", "QA release", 21 * 24), ("QA release", "Infusion (portal vein)", 2)]
    assert [leg.text for leg in tl.legs] == ["21 d 0 h 00 min", "2 h 00 min"]
    assert tl.total_hours == 21 * 24 + 2 and tl.total_text == "21 d 2 h 00 min"
    assert vein_to_vein("K01", EVENTS[1:]).total_hours is None


def test_timeline_html() -> None:
    text = _text(render_timeline_html("K01", EVENTS))
    assert "Vein-to-vein timeline — K01" in text
    assert "QA release 2009-02-05 08:00 UTC 21 d 0 h 00 min" in text
    assert "Vein to vein (harvest to infusion): 21 d 2 h 00 min (21.1 days)" in text
    assert "No infusion yet." in _text(render_timeline_html("K01", EVENTS[1:]))
