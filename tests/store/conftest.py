"""Fixtures for the trial-store tests (real SQLite via pytest-django; no mocks)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

#: screening data that makes a participant eligible for kharaziha2009 (typed by the
#: protocol's eligibility inputs: labs with their unit)
ELIGIBLE = {
    "cirrhosis": True,
    "bilirubin": {"value": 40.0, "unit": "umol/L"},
    "creatinine": {"value": 100.0, "unit": "umol/L"},
    "inr": 1.6,
    "dialysis": False,
    "portal_vein_patent": True,
    "hcc": False,
    "active_infection": False,
    "pregnant": False,
}
DAY0 = dt.date(2008, 1, 20)
#: release-test results meeting the kharaziha2009 release specification (ISCT 2006 markers,
#: viability, sterility, endotoxin, mycoplasma); synthetic
RELEASE_TESTS = {
    "cd73": 98.5, "cd90": 99.1, "cd105": 97.0, "cd45": 0.4, "cd34": 0.6, "cd14_or_cd11b": 0.8,
    "cd79a_or_cd19": 0.3, "hla_dr": 1.2, "viability": 92.0, "sterility": "no growth",
    "endotoxin": 0.1, "mycoplasma": "negative", "gram_stain": "no organisms seen",
    "cell_count": 40e6,
}  # fmt: skip


@pytest.fixture
def store(db: Any) -> Any:
    """A store with the kharaziha2009 protocol installed; returns the services module."""
    from hepatrial.trials import services

    services.install_protocol("kharaziha2009")
    return services


def enrol(services: Any, study_id: str = "K01", site: str = "S01", day0: dt.date = DAY0) -> Any:
    """Screen, consent, assess and enrol one participant; return it."""
    services.screen_participant(
        study_id=study_id,
        site=site,
        sex="M",
        year_of_birth=1960,
        etiology="HBV",
        screening_date=day0 - dt.timedelta(days=14),
        screening_data=ELIGIBLE,
    )
    services.record_consent(participant=study_id, version="1.0", date=day0 - dt.timedelta(days=14))
    a = services.assess_eligibility(participant=study_id)
    assert a.eligible is True, a.criteria
    return services.enrol_participant(participant=study_id, enrolment_date=day0)


@pytest.fixture
def enrolled(store: Any) -> Any:
    """One enrolled participant K01 at site S01 (day 0 = 2008-01-20)."""
    return enrol(store)


def released_batch(
    services: Any, batch_id: str, participant: str = "K01", release_date: dt.date = DAY0
) -> Any:
    """A batch of ``participant`` taken through its lifecycle (harvest, manufacture, QC, QA
    release with an e-signature, dispatch) to its receipt at the bedside on ``release_date``,
    ready to be given (``tests.store._product.administer``)."""
    from tests.store._product import ready_batch

    return ready_batch(services, batch_id, participant, release_date)
