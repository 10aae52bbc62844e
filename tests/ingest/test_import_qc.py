"""``hepatrial import qc FILE.csv``: QC results from a lab file, all or nothing, every reject
listed (row, column, value, reason), through the store's one QC rule."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hepatrial.cli import app
from tests.store import _product as P
from tests.store.conftest import DAY0, enrol


@pytest.fixture
def store(db: Any) -> Any:
    """A store with the kharaziha2009 protocol (as tests/store/conftest.py's)."""
    from hepatrial.trials import services

    services.install_protocol("kharaziha2009")
    return services


@pytest.fixture
def enrolled(store: Any) -> Any:
    """One enrolled participant K01 at site S01 (day 0 = 2008-01-20)."""
    return enrol(store)


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def batch(enrolled: Any, store: Any) -> Any:
    """A batch of K01 whose manufacture is complete (QC pending)."""
    return P.to_qa_review(store, "K01", DAY0, results={}, submit=False)


def _write(path: Path, rows: list[dict[str, Any]], header: list[str] | None = None) -> Path:
    header = header or ["batch", "test", "result", "unit", "analyst", "date", "method"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def _rows(batch_id: str, **changes: Any) -> list[dict[str, Any]]:
    from hepatrial.protocol.loader import load_protocol

    units = {t.name: t.unit for t in load_protocol("kharaziha2009").product.release_spec}
    out = []
    for test, value in P.RELEASE_TESTS.items():
        out.append({"batch": batch_id, "test": test, "result": str(value),
                    "unit": units[test], "analyst": "lab analyst", "date": DAY0.isoformat(),
                    "method": ""})
    for i, ch in changes.items():
        out[int(i.removeprefix("row"))].update(ch)
    return out


def run(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, (args, res.exit_code, res.output)
    return res.output


def test_import_qc_creates_then_changes_nothing(batch: Any, store: Any, tmp_path: Path) -> None:
    from hepatrial.ingest.qc import import_qc
    from hepatrial.trials.models.product import QcResult

    f = _write(tmp_path / "qc.csv", _rows(batch.batch_id, row1={"result": "99.10"}))
    res = import_qc(f, dry_run=True)
    assert (res.created, res.changed, res.unchanged, res.dry_run) == (14, 0, 0, True)
    assert not QcResult.objects.exists()
    out = run("import", "qc", str(f))
    assert "qc.csv: 14 rows: 14 created, 0 changed, 0 unchanged" in out
    q = QcResult.objects.get(batch=batch, test="cd90")
    assert (q.value, q.value_as_entered, q.unit, q.source) == (99.1, "99.10", "%",
                                                               "import qc.csv row 2")
    assert "0 created, 0 changed, 14 unchanged" in run("import", "qc", str(f))
    store.submit_for_review(batch, at=P.at(DAY0, 8))  # the imported results are the QC


def test_a_changed_result_needs_a_reason(batch: Any, store: Any, tmp_path: Path) -> None:
    from hepatrial.trials.models.product import QcResult

    f = _write(tmp_path / "qc.csv", _rows(batch.batch_id))
    run("import", "qc", str(f))
    g = _write(tmp_path / "retest.csv", _rows(batch.batch_id, row8={"result": "88.0"}))
    out = run("import", "qc", str(g), code=1)
    assert "stored as '92.0': a change needs --reason" in out
    assert QcResult.objects.get(batch=batch, test="viability").value == 92.0
    assert "0 created, 1 changed, 13 unchanged" in run("import", "qc", str(g), "--reason",
                                                       "retest of the final product")
    q = QcResult.objects.get(batch=batch, test="viability")
    assert q.value == 88.0 and q.history.first().history_change_reason == \
        "retest of the final product"


def test_import_qc_is_all_or_nothing_and_lists_every_reject(batch: Any, store: Any,
                                                            tmp_path: Path) -> None:
    from hepatrial.trials.models.product import QcResult

    rows = _rows(batch.batch_id, row0={"unit": "fraction"}, row1={"result": "high"},
                 row2={"test": "cd999"}, row3={"date": "2999-01-01"},
                 row4={"batch": "B-none"}, row5={"analyst": ""})
    rows.append(dict(rows[8]))  # viability twice
    f = _write(tmp_path / "bad.csv", rows)
    out = run("import", "qc", str(f), code=1)
    assert "bad.csv: import refused: 7 row(s) rejected" in out
    assert not QcResult.objects.exists()
    with (tmp_path / "bad.csv.rejects.csv").open(newline="", encoding="utf-8") as fh:
        rejects = [(int(r["row"]), r["column"], r["reason"]) for r in csv.DictReader(fh)]
    got = {(row, col) for row, col, _ in rejects}
    assert got == {(1, "unit"), (2, "result"), (3, "test"), (4, "date"), (5, "batch"),
                   (6, "analyst"), (15, "test")}
    why = {(row, col): reason for row, col, reason in rejects}
    assert why[(1, "unit")].startswith("unit 'fraction' is not the specification's unit '%'")
    assert why[(2, "result")] == "'high' is not a number in %"
    assert why[(5, "batch")] == "batch 'B-none' does not exist"
    assert why[(15, "test")].startswith("batch " + batch.batch_id + " viability is also in row 9")
    assert "is in the future" in why[(4, "date")]
    # nothing written either on a dry run with rejects; a file that is not a QC file: exit 2
    run("import", "qc", str(f), "--dry-run", code=1)
    h = _write(tmp_path / "cols.csv", [{"batch": "x", "test": "x", "result": "1", "analyst": "a",
                                        "date": "2008-01-20", "extra": "?"}],
               header=["batch", "test", "result", "analyst", "date", "extra"])
    out = run("import", "qc", str(h), code=2)
    assert "unknown column(s) extra" in out
    run("import", "qc", str(tmp_path / "missing.csv"), code=2)


def test_import_qc_needs_the_import_permission(batch: Any, store: Any, tmp_path: Path) -> None:
    store.create_user(username="coord", password=None, site_codes=["S01"])
    f = _write(tmp_path / "qc.csv", _rows(batch.batch_id))
    out = run("import", "qc", str(f), "--user", "coord", code=3)
    assert "import_data: user 'coord' is coordinator" in out
