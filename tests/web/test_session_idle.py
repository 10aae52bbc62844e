"""Idle session timeout (issue 8): a session ends after ``HEPATRIAL_SESSION_IDLE_MINUTES``
(default 30) without a request; every request renews it. The store's session table is the
real one (database sessions); time passing is the session's stored expiry moved back."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

PASSWORD = "Correct-Horse-Battery-9"


def _signed_in(world: Any) -> tuple[Client, Session]:
    world.services.create_user(username="idle_coord", password=PASSWORD, role="coordinator",
                               site_codes=["S01"])
    c = Client()
    r = c.post(reverse("web:login"), {"username": "idle_coord", "password": PASSWORD})
    assert r.status_code == 302, r.content.decode()[:2000]
    return c, Session.objects.get(session_key=c.cookies[settings.SESSION_COOKIE_NAME].value)


def _left(s: Session) -> float:
    s.refresh_from_db()
    return (s.expire_date - timezone.now()).total_seconds()


def test_the_idle_timeout_is_thirty_minutes_and_each_request_renews_it(world: Any) -> None:
    assert settings.SESSION_COOKIE_AGE == 30 * 60 and settings.SESSION_SAVE_EVERY_REQUEST
    c, s = _signed_in(world)
    assert 30 * 60 - 60 < _left(s) <= 30 * 60
    # 29 minutes without a request: one minute left, the next request gives 30 again
    Session.objects.filter(pk=s.pk).update(expire_date=timezone.now() + dt.timedelta(minutes=1))
    r = c.get(reverse("web:home"))
    assert r.status_code == 200 and b"idle_coord" in r.content
    assert 30 * 60 - 60 < _left(s) <= 30 * 60


def test_a_session_idle_for_longer_is_signed_out(world: Any) -> None:
    c, s = _signed_in(world)
    Session.objects.filter(pk=s.pk).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    r = c.get(reverse("web:home"))
    assert r.status_code == 302 and r["Location"].startswith(reverse("web:login"))
    r = c.get(reverse("admin:index"))
    assert r.status_code == 302 and "/login/" in r["Location"]
    # the browser's cookie is a session cookie (no Max-Age): closing the browser ends it too
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
