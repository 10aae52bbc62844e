"""``hepatrial product ...``: the lifecycle from the command line, and every refusal exits
non-zero naming every unmet condition (in process, on the pytest-django store)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from typer.testing import CliRunner

from hepatrial.cli import app
from tests.store import _product as P
from tests.store.conftest import DAY0, enrol

H0 = DAY0 - dt.timedelta(days=14)


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


def run(*args: str, input: str | None = None, code: int = 0) -> str:
    """``hepatrial ARGS``; asserts the exit code; returns stdout and stderr together."""
    res = CliRunner().invoke(app, list(args), input=input)
    assert res.exit_code == code, (args, res.exit_code, res.output)
    return res.output


def _iso(day: dt.date, h: int, m: int = 0) -> str:
    return P.at(day, h, m).isoformat()


def test_spec_json_is_the_release_specification(db: Any) -> None:
    rows = json.loads(run("product", "spec", "--json", "--protocol", "kharaziha2009"))
    assert [r["test"] for r in rows] == [
        "cd73", "cd90", "cd105", "cd45", "cd34", "cd14_or_cd11b", "cd79a_or_cd19", "hla_dr",
        "viability", "sterility", "gram_stain", "endotoxin", "mycoplasma", "cell_count"]
    by = {r["test"]: r for r in rows}
    assert by["cd73"] == {"test": "cd73", "unit": "%", "min": 95.0, "max": None,
                          "expected": None}
    assert by["sterility"] == {"test": "sterility", "unit": None, "min": None, "max": None,
                               "expected": "no growth"}
    assert by["cell_count"] == {"test": "cell_count", "unit": "cells", "min": 30e6,
                                "max": 50e6, "expected": None}
    text = run("product", "spec", "--protocol", "kharaziha2009")
    assert "endotoxin       <= 0.5 EU/mL; <= 5 EU/kg per dose" in text
    run("product", "spec", "--protocol", "no-such-protocol", code=2)


def _to_review(store: Any) -> str:
    """Harvest, batch, manufacture and QC through the CLI; the batch id."""
    P.weigh(store, "K01", DAY0)
    coi = run("product", "harvest", "K01", "--collected-at", _iso(H0, 8), "--operator",
              "Dr Aspirate", "--volume-ml", "60", "--anticoagulant-lot", "HEP-1",
              "--collection-site", "iliac crest").strip()
    bid = run("product", "batch", "K01", "--coi", coi, "--received-at", _iso(H0, 11),
              "--temperature", "20", "--facility", "GMP lab").strip()
    assert bid == f"B-{coi}"
    assert "start_manufacture -> in_manufacture" in run("product", "start", bid, "--at",
                                                        _iso(H0, 12))
    for i, (code, controls) in enumerate(P.STEPS.items()):
        start = P.at(H0, 13) + dt.timedelta(days=3 * i)
        end = P.at(DAY0, 6, 30) if code == "formulation" else start + dt.timedelta(days=2)
        args = ["product", "step", bid, "--step", code, "--started-at", start.isoformat(),
                "--completed-at", end.isoformat(), "--operator", "tech1",
                "--reagent", "alpha-MEM=M-1,FBS=F-7"]
        for k, v in controls.items():
            args += ["--control", f"{k}={v}"]
        run(*args)
    assert "-> qc" in run("product", "complete", bid, "--formulated-at", _iso(DAY0, 7))
    for test, value in P.RELEASE_TESTS.items():
        run("product", "qc", bid, "--test", test, "--result", str(value), "--analyst",
            "analyst1", "--date", DAY0.isoformat())
    assert "-> qa_review" in run("product", "submit", bid, "--at", _iso(DAY0, 8))
    return bid


def test_vein_to_vein_through_the_cli(enrolled: Any, store: Any, tmp_path: Path) -> None:
    bid = _to_review(store)
    coi = bid.removeprefix("B-")
    P.qa_user(store, "qa1")
    out = run("product", "release", bid, "--user", "qa1", "--password-stdin",
              "--released-at", _iso(DAY0, 8, 30), input=P.QA_PASSWORD + "\n")
    assert out.strip() == f"batch {bid}: release -> released"
    run("product", "ship", bid, "--scan", coi, "--at", _iso(DAY0, 9), "--temperature", "5")
    run("product", "receive", bid, "--scan", coi, "--at", _iso(DAY0, 9, 30), "--reading",
        f"{_iso(DAY0, 9, 5)}=5.0", "--reading", f"{_iso(DAY0, 9, 25)}=5.5")
    out = run("product", "administer", "K01", "--batch", bid, "--scan", coi, "--identifiers",
              "study_id=K01,year_of_birth=1960", "--route", "portal_vein", "--cells", "4e7",
              "--volume-ml", "10", "--date", _iso(DAY0, 10), "--operator", "nurse1")
    assert out.strip() == (f"participant K01: 4e+07 cells, 5e+05 cells/kg of batch {bid} by "
                           "portal_vein at 2008-01-20T10:00:00+00:00")
    text = run("product", "trace", "K01")
    assert f"batch {bid}  participant K01  chain of identity {coi}  state administered" in text
    assert "#9 2008-01-20T10:00:00+00:00 administer: received_at_bedside -> administered" in text
    assert "vein to vein: 14 d 2 h 00 min" in text
    assert ("release at 2008-01-20T08:30:00+00:00: e-signed by QA qa1 (release), signature "
            "valid; meets the specification") in text
    recs = json.loads(run("product", "trace", bid, "--json"))
    assert [e["action"] for e in recs[0]["custody"]][-1] == "administer"
    assert recs[0]["timeline"]["vein_to_vein_hours"] == 338.0
    assert len(recs[0]["qc"]) == 14 and recs[0]["releases"][0]["released_by"] == "QA qa1"
    assert list(recs[0]["signature_status"].values()) == ["valid"]
    out = run("product", "observe", "K01", "--batch", bid, "--minute", "15", "--at",
              _iso(DAY0, 10, 15), "--observer", "nurse1", "--heart-rate", "118",
              "--temperature", "38.9", "--reaction", "--description", "rigors", "--term",
              "Infusion related reaction", "--grade", "2")
    assert "observation at +15 min recorded; adverse event" in out
    out = run("product", "observe", "K01", "--batch", bid, "--minute", "15", "--at",
              _iso(DAY0, 10, 16), "--observer", "nurse1", "--heart-rate", "400", code=1)
    assert "the observation at 15 min is already recorded" in out
    assert "heart_rate: '400' is outside 20-250" in out
    out = run("product", "observe", "K01", "--batch", "B-none", "--minute", "0", "--at",
              _iso(DAY0, 10), "--observer", "n", code=2)
    assert "participant K01 has no administration of batch 'B-none'" in out
    run("product", "coa", bid, "-o", str(tmp_path / "coa.html"))
    page = (tmp_path / "coa.html").read_text(encoding="utf-8")
    assert "The batch meets its release specification." in page and "QA qa1" in page
    run("product", "coa", bid, "-o", str(tmp_path / "coa.pdf"))
    assert (tmp_path / "coa.pdf").read_bytes()[:5] == b"%PDF-"
    a = (tmp_path / "coa.pdf").read_bytes()
    run("product", "coa", bid, "-o", str(tmp_path / "coa.pdf"))
    assert (tmp_path / "coa.pdf").read_bytes() == a  # same record, same bytes
    run("product", "label", bid, "-o", str(tmp_path / "label.html"))
    label = (tmp_path / "label.html").read_text(encoding="utf-8")
    assert "FOR AUTOLOGOUS USE ONLY" in label and "<svg" in label and "1960" in label
    run("product", "fhir", bid, "-o", str(tmp_path / "b.json"))
    res = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert res["resourceType"] == "BiologicallyDerivedProduct"
    assert res["biologicalSourceEvent"]["value"] == coi
    assert res["productStatus"]["code"] == "unavailable"  # administered


def test_cli_refusals_name_every_unmet_condition(enrolled: Any, store: Any) -> None:
    out = run("product", "harvest", "K01", "--collected-at", "2008-01-06 08:00", "--operator",
              " ", "--volume-ml", "0", code=1)
    assert "collected_at: '2008-01-06 08:00' has no time zone" in out
    assert "operator: is required" in out and "volume_ml: '0' must be positive" in out
    P.weigh(store, "K01", DAY0)
    coi = run("product", "harvest", "K01", "--collected-at", _iso(H0, 8), "--operator", "Dr A",
              "--volume-ml", "12").strip()
    out = run("product", "batch", "K01", "--coi", coi[:-1] + "0", "--received-at",
              _iso(H0, 11), code=1)
    assert "check character '0' is wrong" in out
    out = run("product", "batch", "K01", "--coi", coi, "--received-at", _iso(H0, 11),
              "--temperature", "30", code=1)
    assert "receive refused (2 unmet condition(s))" in out
    assert "receipt_temperature: 30 °C at receipt is outside 15 to 25 °C" in out
    assert "starting_volume: 12 mL is outside the accepted 30-100 mL" in out
    bid = run("product", "batch", "K01", "--coi", coi, "--received-at", _iso(H0, 11),
              "--temperature", "20", "--volume-ml", "60").strip()
    run("product", "start", bid, "--at", _iso(H0, 12))
    out = run("product", "complete", bid, "--formulated-at", _iso(DAY0, 7), code=1)
    assert out.count("in_process_controls:") == 4  # four steps not recorded
    out = run("product", "step", bid, "--step", "expansion", "--started-at", _iso(H0, 13),
              "--completed-at", _iso(H0, 14), "--operator", "t", "--control", "passage=9",
              "--control", "colour=red", code=1)
    assert "controls.colour: is not an in-process control of step expansion" in out
    out = run("product", "step", bid, "--step", "x", "--started-at", "now", "--completed-at",
              _iso(H0, 14), "--operator", "t", "--reagent", "FBS", code=1)
    assert "--reagent: 'FBS' is not NAME=VALUE" in out
    out = run("product", "qc", bid, "--test", "viability", "--result", "92", "--unit", "fraction",
              "--analyst", "a", "--date", "2999-01-01", code=1)
    assert "unit 'fraction' is not the specification's unit '%'" in out
    assert "tested_on: 2999-01-01 is in the future" in out
    run("product", "trace", "nobody", code=2)
    run("product", "coa", "B-none", "-o", "x.html", code=2)


def test_cli_release_refusals_and_exceptional_release(enrolled: Any, store: Any) -> None:
    b = P.to_qa_review(store, "K01", DAY0, results={**P.RELEASE_TESTS, "viability": 41.0,
                                                   "mycoplasma": "positive"})
    P.qa_user(store, "qa1")
    P.investigator(store, "inv1")
    store.create_user(username="coord", password="coordinating nicely", site_codes=["S01"])
    at = ["--released-at", _iso(DAY0, 8, 30)]
    out = run("product", "release", b.batch_id, "--user", "qa1", "--password-stdin", *at,
              input="wrong password\n", code=4)
    assert "wrong password for 'qa1'" in out
    out = run("product", "release", b.batch_id, "--user", "coord", "--password-stdin", *at,
              input="coordinating nicely\n", code=3)
    assert "only qa may release" in out
    run("product", "release", b.batch_id, "--user", "nobody", "--password-stdin", *at,
        input="x\n", code=2)
    run("product", "release", b.batch_id, "--user", "qa1", "--password-stdin", *at, input="",
        code=1)
    out = run("product", "release", b.batch_id, "--user", "qa1", "--password-stdin", *at,
              input=P.QA_PASSWORD + "\n", code=1)
    assert "release refused (2 unmet condition(s))" in out
    assert "specification: viability: 41 % does not meet the specification >= 70 %" in out
    assert "specification: mycoplasma: 'positive' does not meet" in out
    out = run("product", "release", b.batch_id, "--user", "qa1", "--password-stdin",
              "--exception", "--justification", "no other batch", *at, input="x\n", code=1)
    assert "--exception needs --investigator NAME" in out
    ex = ["--exception", "--investigator", "inv1", *at]
    out = run("product", "release", b.batch_id, "--user", "qa1", "--password-stdin", *ex,
              input=P.QA_PASSWORD + "\n" + P.INV_PASSWORD + "\n", code=1)
    assert "medical_justification: an exceptional release needs" in out
    out = run("product", "release", b.batch_id, "--user", "qa1", "--password-stdin", *ex,
              "--justification", "x", input=P.QA_PASSWORD + "\n", code=1)
    assert "standard input needs 2 line(s)" in out
    out = run("product", "release", b.batch_id, "--user", "qa1", "--password-stdin", *ex,
              "--justification", "no second harvest possible; treating physician's decision",
              input=P.QA_PASSWORD + "\n" + P.INV_PASSWORD + "\n")
    assert out.strip() == f"batch {b.batch_id}: release_exceptionally -> exceptional_release"


def test_cli_distribution_and_administration_refusals(enrolled: Any, store: Any) -> None:
    from hepatrial.trials.models.product import Administration

    b = P.to_qa_review(store, "K01", DAY0)
    P.release(store, b, DAY0)
    coi = b.coi_identifier
    out = run("product", "ship", b.batch_id, "--scan", coi[:-1] + "0", "--at",
              _iso(DAY0, 13, 30), code=1)
    assert "dispatch refused (2 unmet condition(s))" in out
    assert "coi_scanned:" in out and "within_shelf_life: expired at" in out
    out = run("product", "ship", b.batch_id, "--scan", coi, "--at", _iso(DAY0, 9),
              "--temperature", "21.5", code=1)
    assert "storage_temperature: 21.5 °C at dispatch is outside the storage range 2 to 8 °C" \
        in out
    run("product", "ship", b.batch_id, "--scan", coi, "--at", _iso(DAY0, 9))
    out = run("product", "receive", b.batch_id, "--scan", coi, "--at", _iso(DAY0, 9, 30),
              "--reading", f"{_iso(DAY0, 9, 5)}=5", "--reading", f"{_iso(DAY0, 9, 20)}=11.5",
              code=1)
    assert "transport_temperature: 1 reading(s) outside 2 to 8 °C: " \
           "2008-01-20T09:20:00+00:00 11.5 °C" in out
    run("product", "receive", b.batch_id, "--scan", coi, "--at", _iso(DAY0, 9, 30),
        "--reading", f"{_iso(DAY0, 9, 5)}=5")
    give = ["product", "administer", "K01", "--batch", b.batch_id, "--route", "portal_vein",
            "--volume-ml", "10", "--operator", "nurse1"]
    out = run(*give, "--scan", coi[:-1] + "0", "--identifiers", "study_id=K01", "--cells",
              "9e7", "--date", _iso(DAY0, 13, 30), code=1)
    for cond in ("within_shelf_life: expired at", "coi_scanned: ",
                 "patient_identifiers: 1 patient identifier(s) checked", "dose_in_range: "):
        assert cond in out, cond
    run(*give, "--scan", coi, "--identifiers", "study_id", "--cells", "4e7", "--date",
        _iso(DAY0, 10), code=1)
    store.lock(level="participant", participant="K01",
               user=store.create_user(username="dm", password=None, role="data-manager"),
               reason="monitoring visit")
    out = run(*give, "--scan", coi, "--identifiers", "study_id=K01,year_of_birth=1960",
              "--cells", "4e7", "--date", _iso(DAY0, 10), code=5)
    assert "the casebook of participant K01 is locked" in out
    store.unlock(level="participant", participant="K01", user="dm", reason="visit done")
    out = run(*give, "--scan", coi, "--identifiers", "study_id=K01,year_of_birth=1960",
              "--cells", "9e7", "--date", _iso(DAY0, 10), "--override-reason",
              "the whole batch")
    assert "9e+07 cells" in out
    assert Administration.objects.get().dose_override_reason == "the whole batch"


def test_audit_verify_catches_an_edited_custody_event(enrolled: Any, store: Any) -> None:
    from hepatrial.trials.models.product import CustodyEvent

    b = P.ready_batch(store, None, "K01", DAY0)
    ev = CustodyEvent.objects.get(batch=b, action="dispatch")
    with connection.cursor() as cur:
        cur.execute("UPDATE trials_custodyevent SET temperature_c = 25 WHERE id = %s", [ev.pk])
    out = run("audit", "verify", code=1)
    assert f"live_edited: trials.custodyevent {ev.pk}" in out
