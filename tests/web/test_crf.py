"""The visit CRF: lab panel from the protocol with a unit per analyte, hard limits refused,
soft ranges confirmed, first entry vs change with reason, not done with a reason, draft and
complete, live scores, clinical assessment, missed visit, locks and read-only roles."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hepatrial import scores
from hepatrial.trials.web.common import optional_module
from tests.web.conftest import today

W1 = "/participants/A1/visits/W1/"


def _ledger() -> int:
    from hepatrial.trials.models import AuditLedger

    return AuditLedger.objects.count()


def _labs(study_id: str, code: str) -> dict[str, tuple[str, str, float, str]]:
    from hepatrial.trials.models import LabResult

    return {lab.analyte: (lab.value_as_entered, lab.unit_as_entered, lab.value, lab.unit)
            for lab in LabResult.objects.filter(participant__study_id=study_id,
                                                visit__code=code)}


def _w1(**extra: str) -> dict[str, str]:
    return {"actual_date": today().isoformat(),
            "lab-bilirubin": "2.0", "lab-bilirubin-unit": "mg/dL",
            "lab-creatinine": "1.0", "lab-creatinine-unit": "mg/dL",
            "lab-inr": "1.4", "lab-inr-unit": "1",
            "lab-albumin": "32", "lab-albumin-unit": "g/L", "action": "draft", **extra}


def _field_errors(html: str, name: str) -> list[str]:
    row = re.search(rf'id="{re.escape(name)}".*?</td>', html, re.S)
    assert row is not None, name
    return re.findall(r'<span class="error">([^<]*)</span>', row.group(0))


def test_lab_panel_lists_every_analyte_due_with_registry_units(world: Any, login: Any) -> None:
    page = login("coordinator").get(W1).content.decode()
    panel = re.search(r'id="lab-panel".*?</table>', page, re.S).group(0)
    assert re.findall(r'data-analyte="([a-z_]+)"', panel) == ["bilirubin", "creatinine", "inr",
                                                              "albumin"]
    more = re.search(r'id="more-tests".*?</details>', page, re.S).group(0)
    assert "sodium" in re.findall(r'data-analyte="([a-z_]+)"', more)
    assert "weight" not in re.findall(r'data-analyte="([a-z_]+)"', more)
    units = re.search(r'<select name="lab-creatinine-unit".*?</select>', page, re.S).group(0)
    assert re.findall(r'<option value="([^"]+)"', units) == ["umol/L", "mg/dL"]
    w = [world.day0.toordinal() + d for d in (5, 7, 9)]
    import datetime as dt

    earliest, target, latest = (dt.date.fromordinal(x) for x in w)
    assert f"{earliest} – {latest}" in page and f"target {target}" in page
    assert 'id="save-draft"' in page and 'id="mark-complete"' in page


def test_save_draft_stores_values_as_entered_and_converted(world: Any, login: Any) -> None:
    r = login("coordinator").post(W1, _w1())
    assert r.status_code == 302 and r["Location"] == W1
    labs = _labs("A1", "W1")
    assert labs["bilirubin"][:2] == ("2.0", "mg/dL")
    assert labs["bilirubin"][2] == pytest.approx(34.2) and labs["bilirubin"][3] == "umol/L"
    assert labs["creatinine"][2] == pytest.approx(88.4)
    assert labs["albumin"] == ("32", "g/L", 32.0, "g/L")
    v = world.participant("A1").visits.get(code="W1")
    assert v.actual_date == today() and v.status == "in_window"
    page = login("coordinator").get(W1).content.decode()
    assert 'value="2.0"' in page and 'id="form-complete">complete' in page


def test_hard_limit_refused_on_its_field_nothing_stored(world: Any, login: Any) -> None:
    c = login("coordinator")
    before = _ledger()
    r = c.post(W1, _w1(**{"lab-bilirubin": "2000", "lab-bilirubin-unit": "umol/L"}))
    assert r.status_code == 400
    errs = _field_errors(r.content.decode(), "lab-bilirubin")
    assert any("outside the plausible range 0-1500 umol/L" in e for e in errs), errs
    assert _ledger() == before and _labs("A1", "W1") == {}
    assert world.participant("A1").visits.get(code="W1").actual_date is None


def test_soft_range_needs_confirmation(world: Any, login: Any) -> None:
    c = login("coordinator")
    before = _ledger()
    form = _w1(**{"lab-bilirubin": "800", "lab-bilirubin-unit": "umol/L"})
    r = c.post(W1, form)
    assert r.status_code == 400
    page = r.content.decode()
    errs = _field_errors(page, "lab-bilirubin")
    assert errs[0].startswith("800 umol/L is higher than expected (2-700 umol/L): check it "
                              "against the source and confirm to save"), errs
    assert 'name="lab-bilirubin-confirm"' in page
    assert _ledger() == before
    r = c.post(W1, {**form, "lab-bilirubin-confirm": "1"})
    assert r.status_code == 302
    assert _labs("A1", "W1")["bilirubin"][:3] == ("800", "umol/L", 800.0)
    if optional_module("queries") is not None:  # the query workflow: the value is queried
        from hepatrial.trials.models import Query

        q = Query.objects.get(participant__study_id="A1", origin="soft_range")
        assert q.status == "open" and q.visit.code == "W1"
        page = c.get(W1).content.decode()
        assert 'id="open-queries"' in page and 'title="open query">query<' in page


def test_change_needs_a_reason_and_shows_in_the_field_history(world: Any, login: Any) -> None:
    c = login("coordinator")
    c.post(W1, _w1())
    before = _ledger()
    r = c.post(W1, _w1(**{"lab-inr": "1.45"}))
    assert r.status_code == 400
    assert re.search(r'id="reason"[^>]*>\s*<span class="error">[^<]*reason', r.content.decode())
    assert _ledger() == before and _labs("A1", "W1")["inr"][0] == "1.4"
    r = c.post(W1, _w1(**{"lab-inr": "1.45", "reason": "transcription error"}))
    assert r.status_code == 302 and _labs("A1", "W1")["inr"][0] == "1.45"
    from hepatrial.trials.models import LabResult

    lab = LabResult.objects.get(participant__study_id="A1", visit__code="W1", analyte="inr")
    page = c.get(W1).content.decode()
    url = f"/participants/A1/history/labresult/{lab.pk}/value_as_entered/"
    assert f'hx-get="{url}"' in page
    html = c.get(url, HTTP_HX_REQUEST="true").content.decode()
    rows = re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>\s*<td>([^<]*)</td>"
                      r"<td>([^<]*)</td><td>([^<]*)</td></tr>", html)
    assert rows == [("u_coordinator", "created", "", "1.4", ""),
                    ("u_coordinator", "changed", "1.4", "1.45", "transcription error")]
    assert "<html" not in html  # a fragment for the history panel


def test_not_done_with_reason_then_complete(world: Any, login: Any) -> None:
    c = login("coordinator")
    url = "/participants/A1/visits/D0/"
    page = c.get(url).content.decode()
    assert 'id="form-complete">incomplete' in page
    before = _ledger()
    base = {"actual_date": world.day0.isoformat(), "lab-bilirubin": "2.3",
            "lab-bilirubin-unit": "mg/dL", "lab-creatinine": "1.1",
            "lab-creatinine-unit": "mg/dL", "lab-inr": "1.5", "lab-inr-unit": "1",
            "lab-albumin-unit": "g/L"}
    r = c.post(url, {**base, "lab-albumin-nd": "1", "action": "complete"})
    assert r.status_code == 400 and "say why the item was not done" in r.content.decode()
    assert _ledger() == before
    r = c.post(url, {**base, "lab-albumin-nd": "1", "lab-albumin-nd-reason": "sample haemolysed",
                     "action": "complete"})
    assert r.status_code == 302
    dev = world.participant("A1").deviations.get(category="other")
    assert dev.description == "item not done: albumin - sample haemolysed"
    assert dev.visit.code == "D0" and dev.detected_by == "u_coordinator"
    page = c.get(url).content.decode()
    assert "not done: sample haemolysed" in page and 'id="form-complete">complete' in page
    assert "A1 D0" not in c.get("/").content.decode().split('id="wl-forms"')[1].split(
        "</section>")[0]


def test_mark_complete_with_an_item_missing(world: Any, login: Any) -> None:
    """With the query workflow a missing required item opens a query when the form is marked
    complete; without it the form cannot be marked complete."""
    c = login("coordinator")
    before = _ledger()
    r = c.post(W1, _w1(**{"lab-albumin": "", "action": "complete"}))
    if optional_module("queries") is None:
        assert r.status_code == 400
        assert "Not marked complete: albumin missing; nothing was saved." in r.content.decode()
        assert _ledger() == before
        return
    assert r.status_code == 302
    from hepatrial.trials.models import Query

    q = Query.objects.get(participant__study_id="A1", origin="missing_item")
    assert (q.item, q.visit.code, q.status) == ("albumin", "W1", "open")
    page = c.get(W1).content.decode()
    assert "albumin missing: a query is opened on each" in page
    assert 'id="form-complete">incomplete' in page


def test_value_and_not_done_together_refused(world: Any, login: Any) -> None:
    r = login("coordinator").post(W1, _w1(**{"lab-albumin-nd": "1",
                                           "lab-albumin-nd-reason": "x"}))
    assert r.status_code == 400
    assert "give a value or mark the item not done, not both" in r.content.decode()


def test_live_scores(world: Any, login: Any) -> None:
    c = login("coordinator")
    url = W1 + "scores/"
    html = c.post(url, _w1(), HTTP_HX_REQUEST="true").content.decode()
    got = dict(re.findall(r'data-score="([a-z0-9_]+)"><td>[^<]*</td>\s*<td class="num">'
                          r'(?:<strong>([^<]*)</strong>)?', html))
    k = float(scores.meld(2.0, 1.0, 1.4, units="conventional", variant="kamath2001"))
    assert got["meld_kamath2001"] == f"{k:.1f}"
    o = float(scores.meld(2.0, 1.0, 1.4, units="conventional", variant="optn2002"))
    assert got["meld_optn2002"] == f"{o:.0f}"
    albi = float(scores.albi(34.2, 32.0))
    assert got["albi"] == f"{albi:.2f}"
    assert got["meld_na_kim2008"] == "" and got["child_pugh_points"] == ""
    assert re.search(r'data-score="meld_na_kim2008">.*?needs sodium', html, re.S)
    assert re.search(r'data-score="child_pugh_points">.*?needs ascites, encephalopathy', html,
                     re.S)
    html = c.post(url, _w1(**{"cl-ascites": "slight", "cl-encephalopathy": "none"})
                  ).content.decode()
    cp = int(scores.child_pugh(2.0, 3.2, "slight", "none", inr=1.4))
    assert re.search(rf'data-score="child_pugh_points">.*?<strong>{cp}</strong>.*?class '
                     rf'{scores.child_pugh_class(cp)}', html, re.S)
    # a value the store would refuse is left out, and said so
    html = c.post(url, _w1(**{"lab-bilirubin": "2000", "lab-bilirubin-unit": "mg/dL"})
                  ).content.decode()
    assert "Not used" in html and "bilirubin" in html.split("Not used")[1]
    assert _labs("A1", "W1") == {}


def test_a_test_not_due_is_entered_too(world: Any, login: Any) -> None:
    """Sodium is not due at W1 in this protocol; entered, it is stored and MELD-Na shows."""
    c = login("coordinator")
    form = _w1(**{"lab-sodium": "131", "lab-sodium-unit": "mmol/L"})
    html = c.post(W1 + "scores/", form).content.decode()
    na = float(scores.meld_na(2.0, 1.0, 1.4, 131, units="conventional", variant="kim2008"))
    assert re.search(rf'data-score="meld_na_kim2008">.*?<strong>{na:.1f}</strong>', html, re.S)
    assert c.post(W1, form).status_code == 302
    assert _labs("A1", "W1")["sodium"] == ("131", "mmol/L", 131.0, "mmol/L")
    panel = re.search(r'id="lab-panel".*?</table>', c.get(W1).content.decode(), re.S).group(0)
    assert 'data-analyte="sodium"' in panel and "(not due)" in panel


def test_casebook_meld_trajectory(world: Any, login: Any) -> None:
    c = login("coordinator")
    c.post(W1, _w1())
    page = c.get("/participants/A1/").content.decode()
    d0 = float(scores.meld(2.3, 1.1, 1.5, units="conventional", variant="kamath2001"))
    w1 = float(scores.meld(2.0, 1.0, 1.4, units="conventional", variant="kamath2001"))
    values = re.search(r'id="h-meld-values">([^<]*)<', page).group(1)
    assert values == f"D0 {d0:.1f} · W1 {w1:.1f}"
    assert "<svg" in page and "<polyline" in page


def test_clinical_assessment(world: Any, login: Any) -> None:
    c = login("coordinator")
    r = c.post(W1, _w1(**{"cl-weight_kg": "7", "cl-ascites": "slight"}))
    assert r.status_code == 400
    html = r.content.decode()
    assert re.search(r'id="cl-field-weight_kg".*?<span class="error">[^<]*22\.7', html, re.S)
    r = c.post(W1, _w1(**{"cl-weight_kg": "70.5", "cl-ascites": "slight",
                          "cl-encephalopathy": "none", "cl-dialysis_last_week": "false"}))
    assert r.status_code == 302
    from hepatrial.trials.models import ClinicalAssessment

    a = ClinicalAssessment.objects.get(visit__participant__study_id="A1", visit__code="W1")
    assert (a.ascites, a.encephalopathy, str(a.weight_kg), a.dialysis_last_week,
            a.hepatomegaly) == ("slight", "none", "70.50", False, None)


def test_missed_visit(world: Any, login: Any) -> None:
    c = login("coordinator")
    url = "/participants/A1/visits/W2/missed/"
    r = c.post(url, {"status": "missed", "reason": ""})
    assert r.status_code == 400
    r = c.post(url, {"status": "missed", "reason": "patient travelling"})
    assert r.status_code == 302
    v = world.participant("A1").visits.get(code="W2")
    assert v.status == "missed"
    assert world.participant("A1").deviations.get(category="missed_visit").description == (
        "visit W2 missed: patient travelling")


def test_locked_visit_refuses_edits(world: Any, login: Any) -> None:
    world.services.lock(level="visit", participant="A1", visit_code="D0",
                        user=world.users["data-manager"], reason="interim analysis")
    c = login("coordinator")
    url = "/participants/A1/visits/D0/"
    page = c.get(url).content.decode()
    assert "This visit is locked" in page and 'id="save-draft"' not in page
    before = _ledger()
    r = c.post(url, {"actual_date": world.day0.isoformat(), "lab-albumin": "30",
                     "lab-albumin-unit": "g/L"})
    assert r.status_code == 409 and "This visit is locked" in r.content.decode()
    assert _ledger() == before and "albumin" not in _labs("A1", "D0")


def test_read_only_roles_see_the_crf_disabled(world: Any, login: Any) -> None:
    for role in ("monitor", "auditor", "qa"):
        c = login(role)
        page = c.get("/participants/A1/visits/D0/").content.decode()
        assert 'id="save-draft"' not in page
        assert re.search(r'id="lab-bilirubin"[^>]*disabled', page)
        assert c.post("/participants/A1/visits/D0/", _w1()).status_code == 403


def test_data_manager_enters_at_any_site(world: Any, login: Any) -> None:
    c = login("data-manager")
    r = c.post("/participants/B1/visits/D0/", {
        "actual_date": world.day0.isoformat(), "lab-inr": "1.2", "lab-inr-unit": "1"})
    assert r.status_code == 302
    assert _labs("B1", "D0")["inr"][:2] == ("1.2", "1")
