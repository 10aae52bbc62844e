"""The Django admin in a real browser: ``hepatrial serve`` in a subprocess, driven by Playwright.

What is checked (against a fresh SQLite store with two sites):

* a coordinator of site S01 logs in and sees only S01's participants in the changelist's
  result table, and cannot open an S02 participant's change form by URL;
* saving a participant's change form without a reason for change shows the reason-required
  error and leaves the database unchanged; saving with a reason stores the new value and the
  history page (and the history table) shows the reason, the user and the field change;
* a screenshot of the history page is a non-empty PNG.

The browser is Debian's chromium at ``/usr/bin/chromium`` (Playwright's own browser download is
not used). When it or the ``playwright`` package is missing the tests are skipped, unless
``HEPATRIAL_REQUIRE_BROWSER=1`` (set by ``.ci/run`` after ``.ci/browser.sh``): then they fail.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._serving import cli, cli_env, serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-test-pw-8421"
REASON = "year of birth corrected from the source document"
START_TIMEOUT_S = 30.0

SETUP_SCRIPT = r"""
import json, sys
from hepatrial.trials import setup
setup(sys.argv[1])
from hepatrial.trials import services as s
s.create_site(code="S02", name="second site")
pks = {}
for study_id, site, yob in (("K01", "S01", 1960), ("K02", "S01", 1970), ("K03", "S02", 1980)):
    p = s.screen_participant(study_id=study_id, site=site, sex="M", year_of_birth=yob,
                             etiology="HBV", screening_date="2008-01-06",
                             screening_data={"cirrhosis": True})
    pks[study_id] = p.pk
print(json.dumps(pks))
"""


def _require_browser() -> None:
    """Skip (or fail under ``HEPATRIAL_REQUIRE_BROWSER=1``) when no browser can be driven."""
    problems = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        problems.append(f"{CHROMIUM} is missing (run .ci/browser.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        problems.append(f"the playwright package is not importable ({exc}; uv sync --dev)")
    if not problems:
        return
    msg = "browser tests need chromium and playwright: " + "; ".join(problems)
    if os.environ.get("HEPATRIAL_REQUIRE_BROWSER", "").strip() not in ("", "0"):
        pytest.fail(f"HEPATRIAL_REQUIRE_BROWSER is set but {msg}")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A store with sites S01 (K01, K02) and S02 (K03), coordinator ``coord_a`` for S01, served
    by ``hepatrial serve`` on a free port; ``{"url", "db", "pks"}``. Stopped at teardown."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("browser")
    db = tmp / "store.sqlite3"
    cli("init", "--protocol", "kharaziha2009", "--db", str(db))
    r = subprocess.run(
        [sys.executable, "-c", SETUP_SCRIPT, str(db)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"setup script failed:\n{r.stdout}\n{r.stderr}"
    pks = json.loads(r.stdout.strip().splitlines()[-1])
    cli(
        "user",
        "add",
        "coord_a",
        "--site",
        "S01",
        "--password-stdin",
        "--db",
        str(db),
        stdin=PASSWORD + "\n",
    )

    with serving(["--db", str(db)], tmp / "serve.log", path="/admin/login/",
                 timeout=START_TIMEOUT_S) as served:
        yield {"url": served.base, "db": db, "pks": pks}


@pytest.fixture(scope="module")
def browser(server: dict[str, Any]) -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, server: dict[str, Any]) -> Iterator[Any]:
    """A fresh browser context logged in as ``coord_a`` (coordinator of S01)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    pg = context.new_page()
    try:
        pg.goto(f"{server['url']}/admin/login/?next=/admin/")
        pg.fill("#id_username", "coord_a")
        pg.fill("#id_password", PASSWORD)
        pg.click("input[type=submit]")
        pg.wait_for_url(f"{server['url']}/admin/")
        assert "coord_a" in " ".join(_texts(pg.locator("#user-tools strong")))
        yield pg
    finally:
        context.close()


def _db_row(db: Path, sql: str, *params: Any) -> tuple[Any, ...]:
    con = sqlite3.connect(db)
    try:
        row = con.execute(sql, params).fetchone()
    finally:
        con.close()
    assert row is not None, sql
    return tuple(row)


def _year_of_birth(db: Path, study_id: str) -> int:
    return int(
        _db_row(db, "SELECT year_of_birth FROM trials_participant WHERE study_id = ?", study_id)[0]
    )


def _history_count(db: Path, study_id: str) -> int:
    return int(
        _db_row(
            db, "SELECT count(*) FROM trials_historicalparticipant WHERE study_id = ?", study_id
        )[0]
    )


def _texts(loc: Any) -> list[str]:
    """Whitespace-normalised text content of each element (``innerText`` would apply the
    admin's CSS ``text-transform: uppercase`` to table headers)."""
    return [" ".join(t.split()) for t in loc.all_text_contents()]


def _result_rows(pg: Any) -> list[list[str]]:
    """Cell texts of the changelist's result table body rows (nothing else on the page)."""
    rows = pg.locator("#result_list tbody tr")
    return [_texts(rows.nth(i).locator("th, td")) for i in range(rows.count())]


def _table(pg: Any, selector: str) -> list[dict[str, str]]:
    """Rows of an HTML table as dicts keyed by the header texts."""
    heads = _texts(pg.locator(f"{selector} thead th"))
    rows = pg.locator(f"{selector} tbody tr")
    out = []
    for i in range(rows.count()):
        cells = _texts(rows.nth(i).locator("td, th"))
        out.append(dict(zip(heads, cells, strict=True)))
    return out


def test_coordinator_sees_only_own_site(page: Any, server: dict[str, Any]) -> None:
    pg, url = page, server["url"]
    pg.goto(f"{url}/admin/trials/participant/")
    rows = _result_rows(pg)
    heads = _texts(pg.locator("#result_list thead th"))
    study_col, site_col = heads.index("Study id"), heads.index("Site")
    assert sorted(r[study_col] for r in rows) == ["K01", "K02"]
    assert {r[site_col] for r in rows} == {"S01"}
    # the other site's participant cannot be opened by URL either
    k03 = server["pks"]["K03"]
    pg.goto(f"{url}/admin/trials/participant/{k03}/change/")
    assert pg.url == f"{url}/admin/"  # the admin redirects away from an invisible object
    assert f"ID “{k03}” doesn’t exist" in " ".join(_texts(pg.locator(".messagelist li")))


def test_change_needs_reason_and_history_shows_it(
    page: Any, server: dict[str, Any], tmp_path: Path
) -> None:
    pg, url, db = page, server["url"], server["db"]
    assert _year_of_birth(db, "K01") == 1960
    n_history = _history_count(db, "K01")

    pg.goto(f"{url}/admin/trials/participant/")
    pg.locator("#result_list tbody").get_by_role("link", name="K01", exact=True).click()
    change_url = f"{url}/admin/trials/participant/{server['pks']['K01']}/change/"
    pg.wait_for_url(change_url)

    # without a reason: refused, nothing written
    pg.fill("#id_year_of_birth", "1961")
    pg.click("input[name=_save]")
    pg.wait_for_load_state()
    assert pg.url == change_url
    errors = " ".join(_texts(pg.locator(".field-change_reason .errorlist li")))
    assert "A reason for change is required." in errors
    assert pg.input_value("#id_year_of_birth") == "1961"  # the form keeps what was typed
    assert _year_of_birth(db, "K01") == 1960
    assert _history_count(db, "K01") == n_history

    # with a reason: saved, and the history shows who, what and why
    pg.fill("#id_change_reason", REASON)
    pg.click("input[name=_save]")
    pg.wait_for_url(f"{url}/admin/trials/participant/")
    assert "changed successfully" in " ".join(_texts(pg.locator(".messagelist .success")))
    assert _year_of_birth(db, "K01") == 1961
    assert _history_count(db, "K01") == n_history + 1
    reason, user = _db_row(
        db,
        "SELECT h.history_change_reason, u.username FROM trials_historicalparticipant h "
        "JOIN auth_user u ON u.id = h.history_user_id WHERE h.study_id = ? "
        "ORDER BY h.history_id DESC LIMIT 1",
        "K01",
    )
    assert (reason, user) == (REASON, "coord_a")

    pg.goto(f"{change_url.removesuffix('change/')}history/")
    history = _table(pg, "#change-history")
    assert len(history) == n_history + 1
    changed = [r for r in history if r["Change reason"] == REASON]
    assert len(changed) == 1, history
    assert changed[0]["Changed by"] == "coord_a"
    assert changed[0]["Comment"] == "Changed"
    assert "year of birth" in changed[0]["Changes"].lower()
    assert "1960" in changed[0]["Changes"] and "1961" in changed[0]["Changes"]

    shot = tmp_path / "history.png"
    pg.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "screenshot is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height >= 900, (width, height)
    assert len(data) > 10_000  # a rendered page, not an empty image
