"""`hepatrial serve` runs a production WSGI server (waitress) for real: configured host names,
static files by WhiteNoise, sign-in with CSRF, lockout after 5 failed sign-ins (django-axes)."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._serving import cli, cli_env, serving

PASSWORD = "Correct-Horse-Battery-9"


class Client:
    """A browser-like HTTP client (cookies, CSRF token from the form, a chosen Host header)."""

    def __init__(self, base: str, host: str) -> None:
        self.base, self.host = base, host
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, Any]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, headers={
            "Host": self.host, "Referer": f"http://{self.host}{path}"})
        try:
            with self.opener.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), exc.headers

    def login(self, username: str, password: str) -> tuple[int, str]:
        _status, page, _h = self.request("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page[:500]
        status, text, _h = self.request("/login/", {
            "csrfmiddlewaretoken": token.group(1), "username": username, "password": password,
            "next": "/"})
        return status, text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("serve")
    db = tmp / "store.sqlite3"
    cli("init", "--protocol", "kharaziha2009", "--db", str(db))
    cli("user", "add", "coord_a", "--site", "S01", "--password-stdin", "--db", str(db),
        stdin=PASSWORD + "\n")
    with serving(["--db", str(db)], tmp / "serve.log",
                 env=cli_env(HEPATRIAL_ALLOWED_HOSTS="trial.example.org",
                             HEPATRIAL_CSRF_TRUSTED_ORIGINS="http://trial.example.org",
                             HEPATRIAL_SECRET_KEY="s" * 64)) as served:
        yield {"base": served.base, "db": db, "log": served.log}


def test_served_by_waitress_behind_a_configured_host_name(server: dict[str, Any]) -> None:
    c = Client(server["base"], "trial.example.org")
    status, page, headers = c.request("/login/")
    assert status == 200 and "<h1>Sign in</h1>" in page
    assert headers["Server"] == "hepatrial"  # waitress ident, not Django's runserver
    assert headers["X-Frame-Options"] == "DENY"
    status, _page, _h = Client(server["base"], "evil.example.com").request("/login/")
    assert status == 400  # a host name nobody configured is refused


def test_static_files_are_served(server: dict[str, Any]) -> None:
    status, css, headers = Client(server["base"], "trial.example.org").request(
        "/static/hepatrial/hepatrial.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    assert "--accent" in css
    status, js, _h = Client(server["base"], "trial.example.org").request(
        "/static/django_htmx/htmx-2.min.js")
    assert status == 200 and "htmx" in js


def test_sign_in_and_worklist(server: dict[str, Any]) -> None:
    c = Client(server["base"], "trial.example.org")
    status, page = c.login("coord_a", PASSWORD)
    assert status == 200 and "<h1>Worklist</h1>" in page
    assert "coord_a" in page and "S01" in page
    status, page, _h = Client(server["base"], "trial.example.org").request("/")
    assert status == 200 and "<h1>Sign in</h1>" in page  # anonymous: sent to sign in


def test_lockout_after_five_failed_sign_ins(server: dict[str, Any]) -> None:
    cli("user", "add", "coord_b", "--site", "S01", "--password-stdin", "--db",
        str(server["db"]), stdin=PASSWORD + "\n")
    c = Client(server["base"], "trial.example.org")
    for _ in range(4):
        status, page = c.login("coord_b", "wrong-password-123")
        assert status == 200 and "Please enter a correct" in page
    status, page = c.login("coord_b", "wrong-password-123")  # the 5th failure locks
    assert status == 403 and "Account locked" in page
    status, page = c.login("coord_b", PASSWORD)  # even the right password is refused now
    assert status == 403 and "Account locked" in page
    status, page = Client(server["base"], "trial.example.org").login("coord_a", PASSWORD)
    assert status == 200 and "<h1>Worklist</h1>" in page  # other accounts are not affected


@pytest.mark.parametrize("trusted", [True, False])
def test_https_behind_a_trusted_proxy_only(tmp_path: Path, trusted: bool) -> None:
    """HEPATRIAL_HTTPS=1 behind a TLS-terminating proxy: with HEPATRIAL_TRUSTED_PROXY set to
    the proxy's address, its X-Forwarded-Proto is believed (the request is HTTPS: HSTS header,
    secure session cookie); without it waitress drops the header, so a client cannot claim
    HTTPS (no HSTS)."""
    db = tmp_path / "store.sqlite3"
    cli("init", "--protocol", "kharaziha2009", "--db", str(db))
    env = {"HEPATRIAL_ALLOWED_HOSTS": "trial.example.org", "HEPATRIAL_HTTPS": "1",
           "HEPATRIAL_CSRF_TRUSTED_ORIGINS": "https://trial.example.org",
           "HEPATRIAL_SECRET_KEY": "s" * 64}
    if trusted:
        env["HEPATRIAL_TRUSTED_PROXY"] = "127.0.0.1"
    # the first answer is the one checked: /login/ as the proxy forwards it
    with serving(["--db", str(db)], tmp_path / "serve.log", env=cli_env(**env),
                 headers={"Host": "trial.example.org", "X-Forwarded-Proto": "https"},
                 expect=None) as served:
        status, headers = served.status, served.headers
        assert status == 200
        assert ("Strict-Transport-Security" in headers) is trusted, dict(headers)
