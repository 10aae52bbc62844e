"""FHIR R5 BiologicallyDerivedProduct export (hepatrial.fhir): a full example validated by
fhir.resources, the mapping of each field, refusals, determinism and the layer rule."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from hepatrial.fhir import ProductRecord, biologically_derived_product, to_json
from hepatrial.fhir.product import BATCH_SYSTEM, COI_SYSTEM, PROPERTY_SYSTEM, STUDY_ID_SYSTEM

UTC = dt.UTC
TEHRAN = dt.timezone(dt.timedelta(hours=3, minutes=30))
FULL = ProductRecord(
    batch_id="B-K01", coi="S01-20090115-001-JG15S-D", participant="K01",
    product_name="Autologous bone-marrow MSC (culture-expanded)", available=True,
    collected_at=dt.datetime(2009, 1, 15, 11, 30, tzinfo=TEHRAN), collector="dr.h",
    processing_facility="Cell therapy laboratory, site S01",
    expires_at=dt.datetime(2009, 2, 5, 13, 0, tzinfo=UTC), storage_min_c=2, storage_max_c=8,
    cells_total=40e6, viability_pct=92.0, volume_ml=10, lifecycle_state="released",
)  # fmt: skip


def test_full_example_is_a_valid_r5_resource() -> None:
    from fhir.resources.biologicallyderivedproduct import BiologicallyDerivedProduct

    res = biologically_derived_product(FULL)
    # the library validates it again from the JSON we emit (round trip)
    again = BiologicallyDerivedProduct.model_validate_json(to_json(res))
    assert json.loads(again.model_dump_json(exclude_none=True)) == res
    assert res["resourceType"] == "BiologicallyDerivedProduct"
    assert res["id"] == "B-K01"
    assert res["identifier"] == [{"system": BATCH_SYSTEM, "value": "B-K01"}]
    assert res["biologicalSourceEvent"] == {"system": COI_SYSTEM,
                                            "value": "S01-20090115-001-JG15S-D"}
    assert res["productCategory"]["code"] == "cells"
    assert res["productStatus"]["code"] == "available"
    assert res["productCode"] == {"text": "Autologous bone-marrow MSC (culture-expanded)"}
    col = res["collection"]
    assert col["collectedDateTime"] == "2009-01-15T08:00:00Z"  # 11:30 Tehran = 08:00 UTC
    assert col["collector"] == {"display": "dr.h"}
    assert col["source"]["identifier"] == {"system": STUDY_ID_SYSTEM, "value": "K01"}
    assert res["processingFacility"] == [{"display": "Cell therapy laboratory, site S01"}]
    assert res["expirationDate"] == "2009-02-05T13:00:00Z"
    t = res["storageTempRequirements"]
    assert (t["low"]["value"], t["high"]["value"], t["low"]["code"]) == (2, 8, "Cel")
    props = {p["type"]["coding"][0]["code"]: p for p in res["property"]}
    assert set(props) == {"viable-cell-count", "viability", "volume", "lifecycle-state"}
    assert props["viable-cell-count"]["valueQuantity"]["value"] == 40e6
    assert props["viable-cell-count"]["valueQuantity"]["code"] == "{cells}"
    assert props["viability"]["valueQuantity"] == {
        "value": 92.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    assert props["lifecycle-state"]["valueString"] == "released"
    assert all(p["type"]["coding"][0]["system"] == PROPERTY_SYSTEM for p in res["property"])


def test_minimal_and_unavailable() -> None:
    rec = ProductRecord(batch_id="B 7/ä", coi="S01-20090115-001-JG15S-D", participant="K01",
                        product_name="MSC", available=False)
    res = biologically_derived_product(rec)
    assert res["id"] == "B-7--"  # a FHIR id; the batch id itself is kept in identifier
    assert res["identifier"][0]["value"] == "B 7/ä"
    assert res["productStatus"]["code"] == "unavailable"
    assert "property" not in res and "expirationDate" not in res
    assert "collectedDateTime" not in res["collection"]


def test_naive_times_are_refused() -> None:
    rec = dataclasses.replace(FULL, expires_at=dt.datetime(2009, 2, 5, 13, 0))
    with pytest.raises(ValueError, match=r"batch B-K01: expiry .* has no time zone"):
        biologically_derived_product(rec)


def test_invalid_values_are_named_by_the_library() -> None:
    rec = dataclasses.replace(FULL, product_name="")
    with pytest.raises(ValueError, match="batch B-K01: not a valid FHIR "
                                         "BiologicallyDerivedProduct"):
        biologically_derived_product(rec)


def test_deterministic_json() -> None:
    a = to_json(biologically_derived_product(FULL))
    assert a == to_json(biologically_derived_product(FULL))
    assert a.endswith("}\n") and json.loads(a)["id"] == "B-K01"
    keys = list(json.loads(a))
    assert keys == sorted(keys)


def test_fhir_imports_no_django_and_no_store() -> None:
    root = Path(__file__).resolve().parents[2] / "src" / "hepatrial" / "fhir"
    for f in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.startswith(("django", "hepatrial.trials", "hepatrial.ingest")), (
                    f"{f.name} imports {n}")
