"""One participant of the model trial through the eCRF in a real browser: ``hepatrial serve`` in a
subprocess, Debian's chromium driven by Playwright (as ``test_admin_browser.py``).

The journey: a coordinator signs in (worklist) → screens a participant with the labs in mg/dL,
the criteria turning to "pass" one by one as the inputs are typed → consent → saves → enrols
(visits scheduled) → enters D0 and W1 labs, the MELD variants appearing as the values are
typed → a W1 value outside the expected range is confirmed → the casebook shows the MELD
trajectory → the site dashboard. A screenshot of every page is saved under the test's tmp
dir (or ``HEPATRIAL_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hepatrial import scores
from tests._serving import cli, serving
from tests.browser.test_admin_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    START_TIMEOUT_S,
    _require_browser,
)

PASSWORD = "ecrf-journey-pw-5120"


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A fresh kharaziha2009 store with coordinator ``coord_a`` (site S01), served by
    ``hepatrial serve`` on a free port."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("ecrf")
    db = tmp / "store.sqlite3"
    cli("init", "--protocol", "kharaziha2009", "--db", str(db))
    cli("user", "add", "coord_a", "--site", "S01", "--role", "coordinator",
        "--password-stdin", "--db", str(db), stdin=PASSWORD + "\n")
    with serving(["--db", str(db)], tmp / "serve.log", timeout=START_TIMEOUT_S) as served:
        yield {"url": served.base, "db": db, "log": served.log}


@pytest.fixture(scope="module")
def browser(server: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Shots:
    """Full-page screenshots, numbered in the order taken."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, path
        return path


def _db(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return [tuple(r) for r in con.execute(sql, args).fetchall()]
    finally:
        con.close()


def _passes(pg: Any, criterion: str, state: str) -> None:
    pg.wait_for_selector(f'tr[data-criterion="{criterion}"][data-passes="{state}"]')


def _score(pg: Any, code: str) -> str:
    loc = pg.locator(f'tr[data-score="{code}"] td.num strong')
    loc.wait_for()
    return " ".join(loc.text_content().split())


def test_journey(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    url, db = server["url"], server["db"]
    folder = Path(os.environ.get("HEPATRIAL_SCREENSHOT_DIR") or tmp_path / "screens")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    shot = Shots(pg, folder)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    today = _today()
    screening, day0 = today - dt.timedelta(days=10), today - dt.timedelta(days=7)

    # --- sign in: the worklist
    pg.goto(f"{url}/login/")
    pg.fill("#id_username", "coord_a")
    pg.fill("#id_password", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_url(f"{url}/")
    assert pg.locator("h1").text_content() == "Worklist"
    shot("worklist-empty")

    # --- screening in mg/dL, criterion by criterion
    pg.click("text=Screen a participant")
    pg.wait_for_url(f"{url}/screening/new/")
    assert pg.locator("#site").input_value() == "S01"
    pg.fill("#study_id", "K01")
    pg.select_option("#sex", "M")
    pg.fill("#year_of_birth", "1960")
    pg.select_option("#etiology", "HBV")
    pg.fill("#screening_date", screening.isoformat())
    _passes(pg, "INC-AGE", "pass")
    _passes(pg, "INC-ETIOLOGY", "pass")
    _passes(pg, "INC-CIRRHOSIS", "undecided")
    pg.check('input[name="sd-cirrhosis"][value="true"]')
    _passes(pg, "INC-CIRRHOSIS", "pass")
    _passes(pg, "INC-MELD", "undecided")
    pg.select_option("#sd-bilirubin-unit", "mg/dL")
    pg.fill("#sd-bilirubin", "2.3")
    pg.select_option("#sd-creatinine-unit", "mg/dL")
    pg.fill("#sd-creatinine", "1.1")
    pg.fill("#sd-inr", "1.5")
    _passes(pg, "INC-MELD", "pass")
    meld = float(scores.meld(2.3, 1.1, 1.5, units="conventional", variant="optn2002"))
    used = pg.locator('tr[data-criterion="INC-MELD"] td.num').text_content().strip()
    assert float(used) == meld == 15.0
    pg.select_option("#sd-albumin-unit", "g/dL")
    pg.fill("#sd-albumin", "3.1")
    pg.check('input[name="sd-dialysis"][value="false"]')
    pg.check('input[name="sd-portal_vein_patent"][value="true"]')
    _passes(pg, "INC-PORTAL", "pass")
    for name, crit in (("hcc", "EXC-HCC"), ("active_infection", "EXC-INFECTION"),
                       ("pregnant", "EXC-PREGNANCY")):
        _passes(pg, crit, "undecided")
        pg.check(f'input[name="sd-{name}"][value="false"]')
        _passes(pg, crit, "pass")
    _passes(pg, "INC-CONSENT", "fail")
    assert pg.locator("#verdict").get_attribute("data-eligible") == "false"
    shot("screening-before-consent")
    pg.fill("#consent_version", "1.0")
    pg.fill("#consent_date", screening.isoformat())
    _passes(pg, "INC-CONSENT", "pass")
    pg.wait_for_selector('#verdict[data-eligible="true"]')
    assert pg.locator('tr[data-passes="pass"]').count() == 9
    shot("screening-eligible")
    pg.click("#save-screening")
    pg.wait_for_url(f"{url}/participants/K01/screening/")
    [(status, data)] = _db(db, "SELECT status, screening_data FROM trials_participant")
    assert status == "screened"
    assert '"bilirubin": {"value": "2.3", "unit": "mg/dL"}' in data
    assert _db(db, "SELECT version, date FROM trials_consent") == [
        ("1.0", screening.isoformat())]

    # --- enrol
    pg.fill("#enrolment_date", day0.isoformat())
    shot("participant-screening")
    pg.click("#enrol")
    pg.wait_for_url(f"{url}/participants/K01/")
    assert "enrolled" in pg.locator("#h-status").text_content()
    assert pg.locator("#h-day0").text_content() == day0.isoformat()
    assert pg.locator("#schedule tbody tr").count() == 7
    shot("casebook-enrolled")

    # --- D0 labs, MELD shown as typed
    pg.click('#schedule a:text-is("D0")')
    pg.wait_for_url(f"{url}/participants/K01/visits/D0/")
    pg.fill("#actual_date", day0.isoformat())
    pg.select_option("#lab-bilirubin-unit", "mg/dL")
    pg.fill("#lab-bilirubin", "2.3")
    pg.select_option("#lab-creatinine-unit", "mg/dL")
    pg.fill("#lab-creatinine", "1.1")
    pg.fill("#lab-inr", "1.5")
    k0 = float(scores.meld(2.3, 1.1, 1.5, units="conventional", variant="kamath2001"))
    pg.wait_for_function(
        "t => { const e = document.querySelector('tr[data-score=\"meld_kamath2001\"] strong');"
        " return e && e.textContent.trim() === t; }", arg=f"{k0:.1f}")
    assert _score(pg, "meld_optn2002") == "15"
    pg.fill("#lab-albumin", "31")
    albi = float(scores.albi(2.3 * 17.1, 31.0))
    pg.wait_for_function(
        "t => { const e = document.querySelector('tr[data-score=\"albi\"] strong');"
        " return e && e.textContent.trim() === t; }", arg=f"{albi:.2f}")
    pg.select_option("#cl-ascites", "slight")
    pg.select_option("#cl-encephalopathy", "none")
    cp = int(scores.child_pugh(2.3, 3.1, "slight", "none", inr=1.5))
    pg.wait_for_function(
        "t => { const e = document.querySelector('tr[data-score=\"child_pugh_points\"] strong');"
        " return e && e.textContent.trim() === t; }", arg=str(cp))
    shot("crf-d0-typed")
    pg.click("#mark-complete")
    pg.wait_for_url(f"{url}/participants/K01/visits/D0/")
    assert "marked complete" in pg.locator(".messages").text_content()
    assert pg.locator("#form-complete").text_content() == "complete"
    shot("crf-d0-saved")
    rows = _db(db, "SELECT analyte, value_as_entered, unit_as_entered, value FROM "
                   "trials_labresult ORDER BY analyte")
    assert [r[:3] for r in rows] == [("albumin", "31", "g/L"), ("bilirubin", "2.3", "mg/dL"),
                                     ("creatinine", "1.1", "mg/dL"), ("inr", "1.5", "1")]
    assert rows[1][3] == pytest.approx(2.3 * 17.1)

    # --- W1 labs with a value outside the expected range, confirmed
    pg.goto(f"{url}/participants/K01/visits/W1/")
    pg.fill("#actual_date", today.isoformat())
    pg.fill("#lab-bilirubin", "800")  # µmol/L: above the expected 2-700
    pg.fill("#lab-creatinine", "97")
    pg.fill("#lab-inr", "1.4")
    pg.fill("#lab-albumin", "33")
    k1 = float(scores.meld(800, 97, 1.4, units="si", variant="kamath2001"))
    pg.wait_for_function(
        "t => { const e = document.querySelector('tr[data-score=\"meld_kamath2001\"] strong');"
        " return e && e.textContent.trim() === t; }", arg=f"{k1:.1f}")
    pg.click("#save-draft")
    pg.wait_for_selector("#lab-bilirubin-confirm")
    msg = pg.locator('tr[data-analyte="bilirubin"] .error').first.text_content()
    assert msg.startswith("800 umol/L is higher than expected (2-700 umol/L)")
    assert _db(db, "SELECT count(*) FROM trials_labresult") == [(4,)]  # nothing saved
    shot("crf-w1-confirm")
    pg.check("#lab-bilirubin-confirm")
    pg.click("#save-draft")
    pg.wait_for_url(f"{url}/participants/K01/visits/W1/")
    assert "bilirubin confirmed outside the expected range" in pg.locator(
        ".messages").text_content()
    assert _db(db, "SELECT value_as_entered FROM trials_labresult l JOIN trials_visit v ON "
                   "v.id = l.visit_id WHERE v.code = 'W1' AND l.analyte = 'bilirubin'"
               ) == [("800",)]
    shot("crf-w1-saved")

    # --- casebook: MELD trajectory; history of a field one click away
    pg.goto(f"{url}/participants/K01/")
    assert pg.locator("#h-meld-values").text_content() == f"D0 {k0:.1f} · W1 {k1:.1f}"
    assert pg.locator("#h-meld svg circle").count() == 2
    pg.locator('tr[data-visit="D0"] a.hist').click()
    pg.wait_for_selector("#history-panel #history-table")
    assert "coord_a" in pg.locator("#history-table").text_content()
    shot("casebook-history")

    # --- site dashboard
    pg.goto(f"{url}/sites/")
    pg.wait_for_url(f"{url}/sites/S01/")
    cells = pg.locator("#matrix tbody tr td.cell")
    assert [cells.nth(i).get_attribute("data-state") for i in range(cells.count())] == [
        "overdue", "done", "done", "not_due", "not_due", "not_due", "not_due"]
    shot("site-dashboard")
    pg.goto(f"{url}/")
    shot("worklist")
    assert errors == [], errors
    context.close()
    log = server["log"].read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log, log
