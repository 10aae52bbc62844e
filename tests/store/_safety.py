"""A small trial for the safety tests (not a test module): participants enrolled 14+ days
apart, each dosed on day 0 (K01 by portal vein, the others by peripheral vein unless told),
and the accounts of the safety workflow (investigator, coordinator, sponsor, DSMB member,
data manager) with e-mail addresses."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.store._trial import PASSWORD, fast_passwords
from tests.store.conftest import DAY0, enrol

__all__ = ["DAY0", "PASSWORD", "accounts", "dose", "fast_passwords", "safety_trial", "tz_time"]

ONE = dt.timedelta(days=1)
#: username -> (role, sites, e-mail)
ACCOUNTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "inv": ("investigator", ("S01",), "inv@site.example"),
    "coord": ("coordinator", ("S01",), "coord@site.example"),
    "sponsor": ("sponsor", (), "pv@sponsor.example"),
    "dsmb": ("dsmb", (), "chair@dsmb.example"),
    "dm": ("data-manager", (), "dm@cro.example"),
}


def accounts(services: Any) -> dict[str, Any]:
    """The accounts of :data:`ACCOUNTS` (password :data:`PASSWORD`), by username."""
    out = {}
    for name, (role, sites, email) in ACCOUNTS.items():
        u = services.create_user(username=name, password=PASSWORD, site_codes=list(sites),
                                 role=role, printed_name=f"Dr {name.title()}")
        u.email = email
        u._change_reason = "e-mail address for safety notifications"
        u.save()
        out[name] = u
    return out


def dose(services: Any, participant: str, day0: dt.date, route: str = "peripheral_vein") -> Any:
    """An administration of ``participant`` on ``day0`` by ``route``, written directly as
    audited rows (a released batch and the administration; independent of the dosing gate,
    which tests/store/test_safety_rules.py and the product tests drive through the service)."""
    from hepatrial.trials.models import Administration, CellProductBatch, Participant

    p = Participant.objects.get(study_id=participant)
    n = Administration.objects.filter(participant=p).count()
    b = CellProductBatch(batch_id=f"B-{participant}-{n + 1}", participant=p,
                         coi_identifier="", release_tests={}, released=True, release_date=day0)
    b.save(user=services.system_user())
    a = Administration(participant=p, route=route, cells_total=4e7, volume_ml="10.00",
                       date=day0, operator="op", batch=b)
    a.save(user=services.system_user())
    return a


def safety_trial(services: Any, n: int = 2, *, spacing: int = 21,
                 routes: dict[str, str] | None = None, dosed: bool = True) -> dict[str, Any]:
    """``n`` participants K01.. enrolled ``spacing`` days apart from DAY0, each dosed on
    their day 0 (``routes``: participant -> route; default K01 portal vein, others
    peripheral); the safety accounts. Returns {"day0": {pid: date}, "users": {...}}."""
    routes = {"K01": "portal_vein", **(routes or {})}
    day0 = {}
    for i in range(n):
        pid = f"K{i + 1:02d}"
        d0 = DAY0 + i * spacing * ONE
        enrol(services, pid, day0=d0)
        if dosed:
            dose(services, pid, d0, routes.get(pid, "peripheral_vein"))
        day0[pid] = d0
    return {"day0": day0, "users": accounts(services)}


def tz_time(local: str, zone: str) -> dt.datetime:
    """An aware UTC datetime of a wall-clock time in ``zone`` (no DST ambiguity assumed)."""
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)
