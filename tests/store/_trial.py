"""A small trial for the lock, signature and role tests (not a test module).

K01 and K02 enrolled at S01, K03 at S02; K01's D0 and W1 done with labs and a clinical
assessment; accounts with each role.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.store.conftest import DAY0

PASSWORD = "Correct-horse-9-battery"
#: username -> (role, sites)
ACCOUNTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "coord": ("coordinator", ("S01",)),
    "inv": ("investigator", ("S01",)),
    "inv2": ("investigator", ("S02",)),
    "mon": ("monitor", ("S01",)),
    "dm": ("data-manager", ()),
    "qa": ("qa", ("S01",)),
    "aud": ("auditor", ()),
    "adm": ("admin", ()),
}


def fast_passwords(settings: Any) -> None:
    """MD5 password hashing for in-process tests (PBKDF2 costs ~0.5 s a hash)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _participant(services: Any, study_id: str, site: str) -> Any:
    """An enrolled participant with its protocol visits scheduled, written directly as audited
    rows (independent of the screening rules, which other tests cover)."""
    from hepatrial.trials.models import Arm, Participant, Site

    p = Participant(
        study_id=study_id,
        site=Site.objects.get(code=site),
        sex="M",
        year_of_birth=1960,
        etiology="HBV",
        screening_date=DAY0 - dt.timedelta(days=14),
        screening_data={},
        status="enrolled",
        status_date=DAY0,
        arm=Arm.objects.order_by("pk").first(),
        enrolment_date=DAY0,
    )
    p.save(user=services.system_user())
    services.schedule_visits(participant=p)
    return p


def build(services: Any) -> dict[str, Any]:
    """Participants, visits, labs, clinical assessment and accounts; returns them by name."""
    from hepatrial.trials.models import Site

    if not Site.objects.filter(code="S02").exists():
        services.create_site(code="S02", name="second site")
    k01 = _participant(services, "K01", "S01")
    _participant(services, "K02", "S01")
    _participant(services, "K03", "S02")
    services.record_visit(participant="K01", visit_code="D0", actual_date=DAY0)
    services.record_visit(
        participant="K01", visit_code="W1", actual_date=DAY0 + dt.timedelta(days=7)
    )
    services.record_visit(participant="K02", visit_code="D0", actual_date=DAY0)
    labs = {}
    for visit in ("D0", "W1"):
        labs[visit] = services.record_lab(
            participant="K01", visit_code=visit, analyte="bilirubin", value="2.3", unit="mg/dL"
        )
        services.record_lab(
            participant="K01", visit_code=visit, analyte="inr", value="1.5", unit="1"
        )
    labs["K02"] = services.record_lab(
        participant="K02", visit_code="D0", analyte="bilirubin", value="1.9", unit="mg/dL"
    )
    services.record_clinical(participant="K01", visit_code="W1", ascites="slight")
    users = {
        name: services.create_user(
            username=name,
            password=PASSWORD,
            role=role,
            site_codes=list(sites),
            printed_name=f"Dr {name.title()}" if role == "investigator" else "",
        )
        for name, (role, sites) in ACCOUNTS.items()
    }
    return {"K01": k01, "labs": labs, "users": users}
