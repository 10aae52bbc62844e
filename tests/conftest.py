"""Shared test configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: reference data the tests use, copied into the repository (score vectors; the R numbers are in
#: the tests themselves). Sources: see tests/data/reference/README.md.
REFERENCE_DIR = REPO_ROOT / "tests" / "data" / "reference"
#: the Mayo PBC longitudinal data, bundled with the package as an example dataset
PBCSEQ_CSV = REPO_ROOT / "src" / "hepatrial" / "data" / "pbcseq.csv"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference data copied into the repository (``tests/data/reference``)."""
    assert REFERENCE_DIR.is_dir(), f"reference data missing at {REFERENCE_DIR}"
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def pbcseq_csv() -> Path:
    """The bundled pbcseq.csv (``hepatrial.data.path("pbcseq")``)."""
    from hepatrial import data

    path = data.path("pbcseq")
    assert path == PBCSEQ_CSV and path.is_file()
    return path
