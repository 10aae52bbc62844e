"""Fixtures of the REST API tests: a trial with two sites, one participant at each (visits D0
and W1 done, a D0 bilirubin with an open data query), and an account with a token for every
role at site S01 (real SQLite via pytest-django; no mocks).

The world is built once per test module inside a transaction that is rolled back at the end
of the module (each test runs in a savepoint of it, as Django's ``TestCase`` does), so the
route × role × site table does not rebuild it for each of its cases.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.store.conftest import ELIGIBLE

#: day 0 of the participants
DAY0 = dt.date(2008, 1, 20)
#: the participant of site S01 (the accounts' site) and the one of site S02
OWN, OTHER = "K01", "K02"


@dataclass
class World:
    """The test trial: ``tokens[role]`` is the bearer token of the account ``<role>_a``
    (site S01 for site-scoped roles), ``users[role]`` the account."""

    tokens: dict[str, str] = field(default_factory=dict)
    users: dict[str, Any] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        """``headers=`` of a request made with the role's token."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def enrol(services: Any, study_id: str, site: str) -> None:
    """Screen, consent, assess, enrol, and record visits D0 and W1 (done)."""
    services.screen_participant(
        study_id=study_id, site=site, sex="F", year_of_birth=1965, etiology="HCV",
        screening_date=DAY0 - dt.timedelta(days=14), screening_data=ELIGIBLE)
    services.record_consent(participant=study_id, version="1.0",
                            date=DAY0 - dt.timedelta(days=14))
    assert services.assess_eligibility(participant=study_id).eligible is True
    services.enrol_participant(participant=study_id, enrolment_date=DAY0)
    services.record_visit(participant=study_id, visit_code="D0", actual_date=DAY0)
    services.record_visit(participant=study_id, visit_code="W1",
                          actual_date=DAY0 + dt.timedelta(days=7))
    services.record_lab(participant=study_id, visit_code="D0", analyte="bilirubin",
                        value="2.30", unit="mg/dL")


def build_world() -> World:
    """Install kharaziha2009, add site S02, enrol K01 (S01) and K02 (S02), and make one
    account and token per role (site-scoped roles at S01)."""
    from hepatrial.trials import services
    from hepatrial.trials.services import permissions, tokens

    services.install_protocol("kharaziha2009")
    services.create_site(code="S02", name="second site")
    enrol(services, OWN, "S01")
    enrol(services, OTHER, "S02")
    w = World()
    for role in permissions.ROLES:
        sites = ["S01"] if role in permissions.SITE_ROLES else []
        user = services.create_user(username=f"{role}_a", password=None, role=role,
                                    site_codes=sites)
        w.users[role] = user
        w.tokens[role] = tokens.create_token(account=user, reason="tests")[1]
    raise_world_queries(services, w.users["data-manager"])
    return w


def raise_world_queries(services: Any, user: Any) -> None:
    """One open query on the D0 bilirubin of each participant, raised by ``user``."""
    from hepatrial.trials.models import LabResult
    from hepatrial.trials.services.queries import raise_query

    for study_id in (OWN, OTHER):
        lab = LabResult.objects.get(participant__study_id=study_id, visit__code="D0",
                                    analyte="bilirubin")
        raise_query(participant=study_id, model="labresult", object_pk=lab.pk, field="value",
                    text="please confirm against the lab report", user=user)


@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any) -> Iterator[World]:
    """The test trial, built once per module and rolled back after it."""
    from django.db import transaction

    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield build_world()
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


@pytest.fixture
def api(world: World, db: Any, client: Any) -> Any:
    """``(client, world)``: Django's test client on the world (changes undone after the
    test)."""
    return client, world
