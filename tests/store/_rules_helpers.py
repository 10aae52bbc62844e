"""Helpers of the write-path rule tests (not a test module): the admin client, refusals.

Each rule test checks a case of issue 7 on every write path - service create, service update,
admin add, admin change - and that the refusal names the record, the field and the reason.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from django.test import Client

#: a date certainly in the future (the validators compare with today's UTC date)
FUTURE = dt.date.today() + dt.timedelta(days=40)


def root_client(services: Any) -> Client:
    """A logged-in data manager (sees every site; enters and corrects data on every page)."""
    user = services.create_user(username="root", password=None, role="data-manager")
    c = Client()
    c.force_login(user)
    return c


def page(response: Any) -> str:
    """The page's text with HTML entities decoded."""
    return html.unescape(response.content.decode())


def assert_problem(exc: Any, record: str, field: str, reason: str) -> None:
    """``exc`` (a RuleViolation) lists a problem of ``record`` on ``field`` whose reason
    contains ``reason``; its message names all three."""
    found = [p for p in exc.problems if p.record == record and p.field == field]
    assert found, f"no problem of {record!r} on {field!r} in {exc.problems}"
    assert any(reason in p.reason for p in found), (reason, found)
    assert f"{record} {field}: " in str(exc) and reason in str(exc)


def assert_refused_on_page(response: Any, record: str, field: str, reason: str) -> None:
    """The admin form came back (nothing saved) with the problem shown: record, field, reason."""
    assert response.status_code == 200, response.status_code
    text = page(response)
    assert 'class="errorlist' in text
    line = next((ln for ln in text.splitlines() if f"{record} {field}: " in ln), None)
    assert line is not None, f"{record} {field}: not on the page"
    assert reason in line, (reason, line)
