"""Fixtures of the eCRF tests: a store with two sites, one user of every role, enrolled
participants at each site (real SQLite via pytest-django, the Django test client; no mocks).

Dates are relative to today (the store refuses dates in the future): day 0 of ``A1`` (site
S01) and ``B1`` (site S02) is 7 days ago, so their W1 window (day 5-9) is open today and W2
(day 11-17) opens within the next two weeks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

#: screening data that makes a participant eligible for kharaziha2009 (labs with their unit)
ELIGIBLE = {
    "cirrhosis": True,
    "bilirubin": {"value": "40", "unit": "umol/L"},
    "creatinine": {"value": "100", "unit": "umol/L"},
    "inr": {"value": "1.6", "unit": "1"},
    "dialysis": False,
    "portal_vein_patent": True,
    "hcc": False,
    "active_infection": False,
    "pregnant": False,
}


def today() -> dt.date:
    """The store's today (UTC)."""
    from hepatrial.trials.validators._common import today as t

    return t()


def enrol(services: Any, study_id: str, site: str, day0: dt.date) -> Any:
    """Screen (30 days before day 0), consent, assess and enrol one participant."""
    services.screen_participant(
        study_id=study_id, site=site, sex="M", year_of_birth=1960, etiology="HBV",
        screening_date=day0 - dt.timedelta(days=20), screening_data=ELIGIBLE)
    services.record_consent(participant=study_id, version="1.0",
                            date=day0 - dt.timedelta(days=20))
    a = services.assess_eligibility(participant=study_id)
    assert a.eligible is True, a.criteria
    return services.enrol_participant(participant=study_id, enrolment_date=day0)


@dataclass
class World:
    """The test store: ``users[role]`` (site roles are members of S01), ``other`` (a
    coordinator of S02), participants of S01: ``A1`` (day 0 a week ago, D0 done with
    bilirubin 2.3 mg/dL, creatinine 1.1 mg/dL, INR 1.5 and no albumin), ``A2`` (screened
    only), ``A3`` (day 0 40 days ago, D0 missed); of S02: ``B1`` (as A1, D0 without labs)."""

    services: Any
    users: dict[str, Any]
    other: Any
    day0: dt.date

    def participant(self, study_id: str) -> Any:
        from hepatrial.trials.models import Participant

        return Participant.objects.get(study_id=study_id)


@pytest.fixture
def world(db: Any) -> World:
    from hepatrial.trials import services
    from hepatrial.trials.services.permissions import ROLES

    services.install_protocol("kharaziha2009")
    services.create_site(code="S02", name="second site")
    users = {role: services.create_user(username=f"u_{role}", password=None, role=role,
                                        site_codes=["S01"], printed_name=f"User {role}")
             for role in ROLES}
    other = services.create_user(username="coord_b", password=None, role="coordinator",
                                 site_codes=["S02"])
    day0 = today() - dt.timedelta(days=7)
    enrol(services, "A1", "S01", day0)
    services.record_visit(participant="A1", visit_code="D0", actual_date=day0)
    for analyte, value, unit in (("bilirubin", "2.3", "mg/dL"), ("creatinine", "1.1", "mg/dL"),
                                 ("inr", "1.5", "1")):
        services.record_lab(participant="A1", visit_code="D0", analyte=analyte, value=value,
                            unit=unit)
    services.screen_participant(
        study_id="A2", site="S01", sex="F", year_of_birth=1970, etiology="HCV",
        screening_date=today() - dt.timedelta(days=3), screening_data={"cirrhosis": True})
    enrol(services, "A3", "S01", today() - dt.timedelta(days=40))
    services.mark_visit_not_done(participant="A3", visit_code="D0", reason="patient unwell")
    enrol(services, "B1", "S02", day0)
    services.record_visit(participant="B1", visit_code="D0", actual_date=day0)
    return World(services, users, other, day0)


@pytest.fixture
def login(client: Any, world: World) -> Any:
    """``login(role)`` signs the test client in as the user of that role (or a user)."""

    def do(who: Any) -> Any:
        user = world.users[who] if isinstance(who, str) else who
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        return client

    return do
