"""Fixtures for the importer/exporter tests: a migrated in-process SQLite store (pytest-django,
configured in pyproject.toml with ``hepatrial.trials.settings``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest


@pytest.fixture()
def kharaziha_store(db):
    """Store on kharaziha2009 with two enrolled participants P01 (day 0 2024-01-15) and P02
    (day 0 2024-01-16) at site S01 (their visits scheduled), and the data manager
    ``importer`` (an account that may import)."""
    from hepatrial.trials import services
    from tests.store.conftest import enrol

    services.install_protocol("kharaziha2009")
    enrol(services, "P01", day0=dt.date(2024, 1, 15))
    enrol(services, "P02", day0=dt.date(2024, 1, 16))
    services.create_user(username="importer", password=None, role="data-manager")
    return services.active_protocol()


@pytest.fixture()
def mayo_store(db):
    """Store on the mayo-pbc protocol (no participants yet)."""
    from hepatrial.trials import services

    services.install_protocol("mayo-pbc")
    return services.active_protocol()


@pytest.fixture()
def pbcseq_path(pbcseq_csv: Path) -> Path:
    """The bundled pbcseq.csv."""
    return pbcseq_csv


def store_counts() -> dict[str, int]:
    """Row counts of every table an import touches (for 'nothing written' assertions)."""
    from hepatrial.trials.models import AuditLedger, LabResult, Participant, Visit

    return {
        "participants": Participant.objects.count(),
        "visits": Visit.objects.count(),
        "labs": LabResult.objects.count(),
        "lab_history": LabResult.history.count(),
        "visit_history": Visit.history.count(),
        "ledger": AuditLedger.objects.count(),
    }
