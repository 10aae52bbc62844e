"""Store settings come from HEPATRIAL_* environment variables (conf.build_settings)."""

from __future__ import annotations

import pytest

from hepatrial.trials import conf


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in conf.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    s = conf.build_settings("x.sqlite3")
    assert s["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "[::1]", "testserver"]
    assert s["CSRF_TRUSTED_ORIGINS"] == []
    assert s["SESSION_COOKIE_SECURE"] is False and s["CSRF_COOKIE_SECURE"] is False
    assert s["SESSION_COOKIE_AGE"] == 30 * 60 and s["SESSION_SAVE_EVERY_REQUEST"] is True
    assert s["DEBUG"] is False
    assert len(s["SECRET_KEY"]) >= 50


def test_deployment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEPATRIAL_ALLOWED_HOSTS", "trial.example.org, edc.example.org")
    monkeypatch.setenv("HEPATRIAL_CSRF_TRUSTED_ORIGINS", "https://trial.example.org")
    monkeypatch.setenv("HEPATRIAL_HTTPS", "1")
    monkeypatch.setenv("HEPATRIAL_SESSION_IDLE_MINUTES", "15")
    monkeypatch.setenv("HEPATRIAL_SECRET_KEY", "k" * 60)
    s = conf.build_settings("x.sqlite3")
    assert s["ALLOWED_HOSTS"][-2:] == ["trial.example.org", "edc.example.org"]
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://trial.example.org"]
    assert s["SESSION_COOKIE_SECURE"] is True and s["CSRF_COOKIE_SECURE"] is True
    assert s["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert s["SESSION_COOKIE_AGE"] == 15 * 60
    assert s["SECRET_KEY"] == "k" * 60


@pytest.mark.parametrize(("name", "value", "message"), [
    ("HEPATRIAL_HTTPS", "maybe", "HEPATRIAL_HTTPS: 'maybe' is not 1/0"),
    ("HEPATRIAL_SESSION_IDLE_MINUTES", "0", "not a whole number of minutes from 1 to 1440"),
    ("HEPATRIAL_SESSION_IDLE_MINUTES", "١٥", "not a whole number of minutes"),
    ("HEPATRIAL_DEBUG", "2", "HEPATRIAL_DEBUG: '2'"),
])
def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                              message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        conf.build_settings("x.sqlite3")


def test_postgresql_connections_are_kept_and_checked() -> None:
    """A served request reuses its thread's PostgreSQL connection for up to 60 s, checked
    before reuse (a new connection per request forks a server process); SQLite opens a file."""
    pg = conf.parse_database_url("postgresql://u:p%40ss@db.example.org:5433/trial")
    assert (pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "trial", "u", "p@ss", "db.example.org", "5433")
    assert (pg["CONN_MAX_AGE"], pg["CONN_HEALTH_CHECKS"], pg["ATOMIC_REQUESTS"]) == (
        60, True, True)
    assert "CONN_MAX_AGE" not in conf.parse_database_url("sqlite:///x.sqlite3")
