"""Fixtures for the importer/exporter tests: a migrated in-process SQLite store (pytest-django,
configured in pyproject.toml with ``hepatrial.trials.settings``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest


@pytest.fixture()
def kharaziha_store(db):
    """Store on kharaziha2009 with two screened participants P01, P02 (site S01)."""
    from hepatrial.trials import services

    services.install_protocol("kharaziha2009")
    for sid, yob in (("P01", 1960), ("P02", 1971)):
        services.screen_participant(study_id=sid, site="S01", sex="M", year_of_birth=yob,
                                    etiology="HBV", screening_date=dt.date(2024, 1, 1))
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
