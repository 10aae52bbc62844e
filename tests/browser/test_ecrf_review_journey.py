"""The review half of the eCRF journey in a real browser (``hepatrial serve`` in a subprocess,
Debian's chromium driven by Playwright, as ``test_ecrf_journey.py``), four people at once:

a W1 value outside the expected range confirmed by the coordinator (a query opens) → the
coordinator answers the query from the worklist → the monitor closes it → the monitor verifies
the W1 labs against source → the investigator signs W1 (meaning shown, password re-entered)
→ the data manager locks W1 with a reason → the coordinator's save of the form she had open is
refused (409, nothing stored) → the data manager unlocks with a reason → the coordinator's
edit is saved and the investigator sees the signature invalidated by that change.

The store is made by the CLI and the services (participant K01 enrolled a week ago, D0 done);
the accounts have real passwords. A screenshot of every page is saved under the test's tmp dir
(or ``HEPATRIAL_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._serving import cli, cli_env, serving
from tests.browser.test_admin_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    START_TIMEOUT_S,
    _require_browser,
)
from tests.browser.test_ecrf_journey import Shots, _db

PASSWORD = "review-journey-pw-7741"
MEANING = "I reviewed and approve these data"
#: username -> (role, printed name)
ACCOUNTS = {"coord_a": ("coordinator", ""), "mon_a": ("monitor", ""),
            "inv_a": ("investigator", "Dr Ines Almeida"), "dm": ("data-manager", "")}

SETUP = r"""
import datetime as dt, sys
from hepatrial.trials import setup
setup(sys.argv[1])
from hepatrial.trials import services as s
today = dt.datetime.now(dt.UTC).date()
day0 = today - dt.timedelta(days=7)
lab = lambda v, u: {"value": v, "unit": u}
s.screen_participant(study_id="K01", site="S01", sex="M", year_of_birth=1960, etiology="HBV",
    screening_date=day0 - dt.timedelta(days=3), screening_data={
        "cirrhosis": True, "bilirubin": lab("2.3", "mg/dL"), "creatinine": lab("1.1", "mg/dL"),
        "inr": lab("1.5", "1"), "albumin": lab("3.1", "g/dL"), "dialysis": False,
        "portal_vein_patent": True, "hcc": False, "active_infection": False,
        "pregnant": False})
s.record_consent(participant="K01", version="1.0", date=day0 - dt.timedelta(days=3))
assert s.assess_eligibility(participant="K01").eligible
s.enrol_participant(participant="K01", enrolment_date=day0)
s.record_visit(participant="K01", visit_code="D0", actual_date=day0)
for a, v, u in (("bilirubin", "2.3", "mg/dL"), ("creatinine", "1.1", "mg/dL"),
                ("inr", "1.5", "1"), ("albumin", "31", "g/L")):
    s.record_lab(participant="K01", visit_code="D0", analyte=a, value=v, unit=u)
print("ok")
"""


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A kharaziha2009 store with K01 enrolled (D0 done) and the four accounts, served by
    ``hepatrial serve`` on a free port."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("review")
    db = tmp / "store.sqlite3"
    cli("init", "--protocol", "kharaziha2009", "--db", str(db))
    r = subprocess.run([sys.executable, "-c", SETUP, str(db)], env=cli_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"setup failed:\n{r.stdout}\n{r.stderr}"
    for name, (role, printed) in ACCOUNTS.items():
        args = ["user", "add", name, "--role", role, "--password-stdin", "--db", str(db)]
        args += ["--site", "S01"] if role != "data-manager" else []
        args += ["--printed-name", printed] if printed else []
        cli(*args, stdin=PASSWORD + "\n")
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


class Person:
    """One signed-in user in their own browser context (cookies), sharing the screenshots."""

    def __init__(self, browser: Any, url: str, name: str, folder: Path, counter: list[int],
                 errors: list[str]) -> None:
        self.url, self.name = url, name
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(15_000)
        self.pg = self.context.new_page()
        self.pg.on("pageerror", lambda e: errors.append(f"{name}: {e}"))
        self._shots = Shots(self.pg, folder)
        self._counter = counter
        self.pg.goto(f"{url}/login/")
        self.pg.fill("#id_username", name)
        self.pg.fill("#id_password", PASSWORD)
        self.pg.click("button[type=submit]")
        self.pg.wait_for_url(f"{url}/")

    def shot(self, what: str) -> Path:
        """A full-page screenshot, numbered across every person."""
        self._counter[0] += 1
        self._shots.n = self._counter[0] - 1
        return self._shots(f"{self.name}-{what}")

    def go(self, path: str) -> None:
        self.pg.goto(f"{self.url}{path}")

    def text(self, selector: str) -> str:
        """The element's rendered text, whitespace (cell and line breaks) made one space."""
        return " ".join((self.pg.locator(selector).first.inner_text() or "").split())


def _w1_bilirubin(db: Path) -> list[tuple[Any, ...]]:
    return _db(db, "SELECT l.value_as_entered, l.unit_as_entered FROM trials_labresult l JOIN "
                   "trials_visit v ON v.id = l.visit_id WHERE v.code = 'W1' AND "
                   "l.analyte = 'bilirubin'")


def test_review_journey(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    url, db = server["url"], server["db"]
    folder = Path(os.environ.get("HEPATRIAL_SCREENSHOT_DIR") or tmp_path / "screens")
    counter, errors = [0], []
    coord = Person(browser, url, "coord_a", folder, counter, errors)
    W1 = "/participants/K01/visits/W1/"

    # --- the coordinator confirms a W1 value outside the expected range: a query opens
    coord.go(W1)
    coord.pg.fill("#actual_date", _today().isoformat())
    coord.pg.fill("#lab-bilirubin", "800")  # umol/L: expected 2-700
    coord.pg.fill("#lab-creatinine", "97")
    coord.pg.fill("#lab-inr", "1.4")
    coord.pg.fill("#lab-albumin", "33")
    coord.pg.click("#save-draft")
    coord.pg.wait_for_selector("#lab-bilirubin-confirm")
    coord.pg.check("#lab-bilirubin-confirm")
    coord.pg.click("#save-draft")
    coord.pg.wait_for_url(f"{url}{W1}")
    assert _w1_bilirubin(db) == [("800", "umol/L")]
    [(qpk, origin, status)] = _db(db, "SELECT id, origin, status FROM trials_query")
    assert (origin, status) == ("soft_range", "open")
    coord.shot("crf-w1-confirmed")

    # --- the coordinator answers it from the worklist
    coord.go("/")
    wl = coord.text("#wl-queries")
    assert "Open queries addressed to you 1" in wl and "to answer K01 W1 lab bilirubin" in wl
    coord.shot("worklist-query-to-answer")
    coord.pg.click("#wl-queries a")
    coord.pg.wait_for_url(f"{url}/queries/{qpk}/")
    assert coord.text("#value-then") == "800 umol/L"
    assert "confirmed at entry by coord_a" in coord.text("#thread")
    coord.pg.fill("#answer-text", "800 umol/L is on the lab report of the W1 sample.")
    coord.pg.click("#answer-submit")
    coord.pg.wait_for_url(f"{url}/queries/{qpk}/")
    assert coord.text("#query-status") == "answered"
    coord.shot("query-answered")

    # --- the monitor closes it, then verifies the W1 labs against source
    mon = Person(browser, url, "mon_a", folder, counter, errors)
    wl = mon.text("#wl-queries")
    assert "to close K01 W1 lab bilirubin" in wl
    mon.pg.click("#wl-queries a")
    mon.pg.wait_for_url(f"{url}/queries/{qpk}/")
    mon.pg.fill("#close-text", "Checked against the lab report.")
    mon.pg.click("#close-submit")
    mon.pg.wait_for_url(f"{url}/queries/{qpk}/")
    assert mon.text("#query-status") == "closed"
    assert _db(db, "SELECT status FROM trials_query") == [("closed",)]
    thread = mon.text("#thread")
    assert thread.index("answered by the site coord_a") < thread.index("closed mon_a")
    mon.shot("query-closed")
    mon.go(W1 + "sdv/")
    assert mon.text("#sdv-labs-state") == "not verified 0/4"
    mon.pg.fill("#sdv-note", "W1 lab report, hospital record p. 12")
    mon.pg.click("#verify-labs")
    mon.pg.wait_for_url(f"{url}{W1}sdv/")
    assert mon.text("#sdv-labs-state") == "verified 4/4"
    assert mon.text('#sdv-labs-items tr[data-item="bilirubin"]').startswith(
        "bilirubin 800 umol/L verified by mon_a")
    mon.shot("sdv-w1-verified")

    # --- the investigator signs W1 from the worklist's "waiting for your signature"
    inv = Person(browser, url, "inv_a", folder, counter, errors)
    assert "K01 W1" in inv.text("#wl-signatures")
    inv.go(W1 + "sign/")
    assert "By signing I state:" in inv.text("#sign-form")
    assert inv.pg.locator(f'input[name="meaning"][value="{MEANING}"]').is_checked()
    inv.shot("sign-w1-form")
    inv.pg.fill("#sign-password", "not-my-password")
    inv.pg.click("#sign-submit")
    inv.pg.wait_for_selector(".has-error .error")
    assert "1 of 5 before the account is deactivated" in inv.text(".has-error .error")
    inv.pg.fill("#sign-password", PASSWORD)
    inv.pg.click("#sign-submit")
    inv.pg.wait_for_url(f"{url}{W1}sign/")
    row = inv.text("#signatures tbody tr")
    assert row.startswith("Dr Ines Almeida inv_a investigator") and row.endswith(
        f"{MEANING} valid")
    inv.shot("sign-w1-signed")

    # --- the coordinator has W1 open to correct bilirubin; the data manager locks W1
    coord.go(W1)
    coord.pg.fill("#lab-bilirubin", "650")
    coord.pg.fill("#reason", "transcription error: the report says 650")
    dm = Person(browser, url, "dm", folder, counter, errors)
    dm.go(W1 + "lock/")
    assert dm.text("#locked-badge") == "not locked"
    dm.pg.fill("#lock-reason", "W1 monitored, queries closed")
    dm.pg.click("#lock-submit")
    dm.pg.wait_for_url(f"{url}{W1}lock/")
    assert dm.text("#locked-badge") == "locked"
    assert "W1 monitored, queries closed" in dm.text("#locked")
    dm.shot("lock-w1-locked")

    # --- the coordinator's save is refused by the server; nothing is stored
    with coord.pg.expect_response(lambda r: r.request.method == "POST"
                                  and r.url == f"{url}{W1}") as resp:
        coord.pg.click("#save-draft")
    assert resp.value.status == 409
    coord.pg.wait_for_selector("#locked")
    assert "This visit is locked" in coord.text("#form-errors")
    assert coord.pg.locator("#save-draft").count() == 0
    assert _w1_bilirubin(db) == [("800", "umol/L")]
    coord.shot("crf-w1-edit-refused")

    # --- the data manager unlocks with a reason
    dm.pg.fill("#unlock-reason", "bilirubin transcription error to correct")
    dm.pg.click("#unlock-submit")
    dm.pg.wait_for_url(f"{url}{W1}lock/")
    assert dm.text("#locked-badge") == "not locked"
    hist = dm.text("#lock-history")
    assert "W1 monitored, queries closed" in hist and "bilirubin transcription error" in hist
    dm.shot("lock-w1-unlocked")

    # --- the edit is allowed now; the signature shows invalidated by that change
    coord.go(W1)
    coord.pg.fill("#lab-bilirubin", "650")
    coord.pg.fill("#reason", "transcription error: the report says 650")
    coord.pg.click("#save-draft")
    coord.pg.wait_for_url(f"{url}{W1}")
    assert _w1_bilirubin(db) == [("650", "umol/L")]
    coord.shot("crf-w1-corrected")
    [(seq,)] = _db(db, "SELECT max(seq) FROM trials_auditledger WHERE history_model = "
                       "'trials.historicallabresult'")
    inv.go(W1 + "sign/")
    row = inv.text("#signatures tbody tr")
    assert f"invalidated by change seq {seq}" in row
    assert inv.pg.locator("#sign-form").count() == 1  # to sign again after review
    inv.shot("sign-w1-invalidated")
    mon.go(W1 + "sdv/")
    assert mon.text('#sdv-labs-items tr[data-item="bilirubin"]').startswith(
        f"bilirubin 650 umol/L cleared by change seq {seq}")
    mon.shot("sdv-w1-cleared")

    for person in (coord, mon, inv, dm):
        person.context.close()
    assert errors == [], errors
    log = server["log"].read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log, log
