"""The bundled CTCAE v5.0 term list and its loader (hepatrial.protocol.ctcae_terms).

Expected values were read from three independent public copies of NCI's CTCAE v5.0
spreadsheet that agree cell by cell (src/hepatrial/data/ctcae_v5.README.md): the xlsx copy in
ehrforce/ctcae-extractor-transformer, R data ``ctcae5`` of ajbarrows/tcoRs and
``ctcaev5.js`` of oncohub/CTCAE5.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hepatrial.errors import InputError, NotFoundError
from hepatrial.protocol import ctcae_terms as ct

CSV = Path(ct.__file__).resolve().parents[1] / "data" / "ctcae_v5.csv"


def test_file_is_the_converted_nci_list() -> None:
    # the sha256 stated in the README: the file is the documented conversion, byte for byte
    digest = hashlib.sha256(CSV.read_bytes()).hexdigest()
    assert digest == "37fca751475ca047a278897c7924e09ea0918fe184153153f76fe96cb13f76b0"


def test_counts() -> None:
    terms = ct.all_terms()
    assert len(terms) == 837
    assert len({t.meddra_code for t in terms}) == 837
    assert len(ct.socs()) == 26
    assert sum(t.is_other_specify for t in terms) == 26
    per_soc = {s: len(ct.terms_in_soc(s)) for s in ct.socs()}
    assert per_soc["Gastrointestinal disorders"] == 122
    assert per_soc["Hepatobiliary disorders"] == 18
    assert per_soc["Infections and infestations"] == 88
    assert per_soc["Injury, poisoning and procedural complications"] == 79
    assert per_soc["Investigations"] == 42
    assert per_soc["Vascular disorders"] == 17
    assert per_soc["Social circumstances"] == 1
    assert sum(per_soc.values()) == 837
    # grade 5 exists for 494 terms and not for 343; grade 1 is '-' for 192 terms
    assert sum(t.grades[4] is not None for t in terms) == 494
    assert sum(t.grades[0] is None for t in terms) == 192


@pytest.mark.parametrize(
    ("name", "code", "soc"),
    [
        ("Portal vein thrombosis", 10036206, "Hepatobiliary disorders"),
        ("Hepatic hemorrhage", 10019678, "Hepatobiliary disorders"),
        ("Hepatic failure", 10019663, "Hepatobiliary disorders"),
        ("Infusion related reaction", 10051792, "Injury, poisoning and procedural complications"),
        ("Fever", 10016558, "General disorders and administration site conditions"),
        ("Death NOS", 10011914, "General disorders and administration site conditions"),
        ("Sudden death NOS", 10042435, "General disorders and administration site conditions"),
        ("Thromboembolic event", 10043565, "Vascular disorders"),
        ("Hematoma", 10019428, "Vascular disorders"),
        ("Intra-abdominal hemorrhage", 10055291, "Gastrointestinal disorders"),
        ("Anaphylaxis", 10002218, "Immune system disorders"),
        ("Sepsis", 10040047, "Infections and infestations"),
        ("Alanine aminotransferase increased", 10001551, "Investigations"),
        ("Blood bilirubin increased", 10005364, "Investigations"),
        ("INR increased", 10022402, "Investigations"),
        ("Hypoalbuminemia", 10020943, "Metabolism and nutrition disorders"),
        ("Anemia", 10002272, "Blood and lymphatic system disorders"),
        ("Blood and lymphatic system disorders - Other, specify", 10005329,
         "Blood and lymphatic system disorders"),
    ],
)
def test_terms_codes_and_socs(name: str, code: int, soc: str) -> None:
    t = ct.term(name)
    assert (t.meddra_code, t.soc, t.term) == (code, soc, name)
    assert ct.by_code(code) is t
    assert ct.by_code(str(code)) is t


def test_grade_definitions_and_missing_grades() -> None:
    pvt = ct.term("Portal vein thrombosis")
    assert pvt.allowed_grades == (2, 3, 4, 5)
    assert pvt.grade_definition(2) == "Intervention not indicated"
    assert pvt.grade_definition(3) == "Medical intervention indicated"
    assert pvt.grade_definition(5) == "Death"
    with pytest.raises(ct.CtcaeTermError, match="no grade 1"):
        pvt.grade_definition(1)
    assert ct.term("Death NOS").allowed_grades == (5,)
    assert ct.term("Bruising").allowed_grades == (1, 2)
    assert ct.term("Alanine aminotransferase increased").allowed_grades == (1, 2, 3, 4)
    assert ct.grade_definition("Fever", 3) == ">40.0 degrees C (>104.0 degrees F) for <=24 hrs"
    irr = ct.term("Infusion related reaction")
    assert irr.grade_definition(3).startswith(
        "Prolonged (e.g., not rapidly responsive to symptomatic medication and/or brief "
        "interruption of infusion)")
    assert ct.grade_definition("Anemia", 1) == (
        "Hemoglobin (Hgb) <LLN - 10.0 g/dL; <LLN - 6.2 mmol/L; <LLN - 100 g/L")
    # multi-part criteria keep NCI's line breaks
    assert "\n" in ct.grade_definition("Hypertension", 1)
    for bad in (0, 6, 2.0, True, "3"):
        with pytest.raises(ct.CtcaeTermError, match="not a CTCAE grade"):
            pvt.grade_definition(bad)  # type: ignore[arg-type]


def test_lookup_is_exact_but_case_insensitive() -> None:
    assert ct.term("  portal   VEIN thrombosis ").term == "Portal vein thrombosis"
    with pytest.raises(ct.UnknownTermError, match="'Portal vein thrombos' is not a CTCAE"):
        ct.term("Portal vein thrombos")
    with pytest.raises(NotFoundError):
        ct.term("Thrombocytopenia")  # the CTCAE v6.0 name; v5.0 says Platelet count decreased
    with pytest.raises(ct.UnknownTermError, match="MedDRA code 10037660"):
        ct.by_code(10037660)  # MedDRA PT "Pyrexia" is not a CTCAE v5.0 term (LLT "Fever" is)
    with pytest.raises(ct.CtcaeTermError, match="not an integer"):
        ct.by_code("1003620a")
    with pytest.raises(InputError):
        ct.term("")


def test_soc_lists_and_other_specify() -> None:
    hep = ct.terms_in_soc("hepatobiliary disorders")
    assert hep[0].term == "Bile duct stenosis"
    assert "Portal vein thrombosis" in [t.term for t in hep]
    o = ct.other_specify("Hepatobiliary disorders")
    assert o.term == "Hepatobiliary disorders - Other, specify"
    assert o.meddra_code == 10019805  # the SOC's own MedDRA code
    assert o.allowed_grades == (1, 2, 3, 4, 5)
    assert o.definition is None
    for soc in ct.socs():
        assert ct.other_specify(soc).soc == soc
    with pytest.raises(ct.UnknownTermError, match="system organ class"):
        ct.terms_in_soc("Liver disorders")
    assert [t.term for t in ct.search("vein thromb")] == ["Portal vein thrombosis"]


def test_code_event_rules() -> None:
    e = ct.code_event("fever", 2, verbatim="temp 39.4 after infusion")
    assert (e.term, e.meddra_code, e.grade) == ("Fever", 10016558, 2)
    assert e.grade_definition == ">39.0 - 40.0 degrees C (102.3 - 104.0 degrees F)"
    assert e.verbatim == "temp 39.4 after infusion" and e.label == "Fever"
    o = ct.code_event("Hepatobiliary disorders - Other, specify", 3,
                      specify="  biloma after portal puncture ")
    assert o.specify == "biloma after portal puncture"
    assert o.label == "Hepatobiliary disorders - Other, specify: biloma after portal puncture"
    assert ct.code_event("Death NOS", 5, meddra_code=10011914).grade_definition == "Death"

    with pytest.raises(ct.CtcaeTermError, match="needs the name of the event"):
        ct.code_event("Hepatobiliary disorders - Other, specify", 2)
    with pytest.raises(ct.CtcaeTermError, match="only an 'Other, specify' term"):
        ct.code_event("Fever", 1, specify="high fever")
    with pytest.raises(ct.CtcaeTermError, match="has no grade 3"):
        ct.code_event("Death NOS", 3)
    with pytest.raises(ct.CtcaeTermError, match="10016558 is 'Fever', not 'Death NOS'"):
        ct.code_event("Death NOS", 5, meddra_code=10016558)
    # every problem at once
    with pytest.raises(ct.CtcaeTermError) as ei:
        ct.code_event("Bruising", 4, specify="x", meddra_code="99")
    msg = str(ei.value)
    assert "has no grade 4" in msg and "specify:" in msg and "meddra_code:" in msg


def test_lab_terms_match_the_lab_grader() -> None:
    from hepatrial.scores import ctcae as lab

    assert set(ct.LAB_TERMS.values()) == set(lab.CTCAE_TERMS)
    assert ct.lab_term("platelets").term == "Platelet count decreased"
    assert ct.lab_term("inr").meddra_code == 10022402
    with pytest.raises(ct.UnknownTermError, match="sodium"):
        ct.lab_term("sodium")
