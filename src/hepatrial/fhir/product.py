"""A cell-product batch as a FHIR R5 ``BiologicallyDerivedProduct``.

HL7 FHIR R5 (5.0.0), resource BiologicallyDerivedProduct
(https://hl7.org/fhir/R5/biologicallyderivedproduct.html): a material substance originating
from a biological entity intended to be transplanted or infused into another (possibly the
same) biological entity. The mapping:

=======================================  ===================================================
hepatrial                                BiologicallyDerivedProduct
=======================================  ===================================================
batch id                                 ``identifier`` (system :data:`BATCH_SYSTEM`)
chain-of-identity id (ST-028 kind)       ``biologicalSourceEvent`` (system
                                         :data:`COI_SYSTEM`; FHIR's element for the
                                         ISBT 128 DIN of the collection)
product name                             ``productCode.text``
``cells``                                ``productCategory`` (product-category ``cells``)
released and in date / otherwise         ``productStatus`` ``available`` / ``unavailable``
participant (autologous donor)           ``collection.source`` (Patient by study-id
                                         identifier, :data:`STUDY_ID_SYSTEM`)
harvest operator, time                   ``collection.collector.display``,
                                         ``collection.collectedDateTime``
manufacturing facility                   ``processingFacility[0].display``
expiry (formulation + shelf life)        ``expirationDate``
storage temperature range                ``storageTempRequirements`` (UCUM ``Cel``)
cell count, viability, volume, release   ``property`` (type coded in
                                         :data:`PROPERTY_SYSTEM`; UCUM ``{cells}``, ``%``,
                                         ``mL``)
=======================================  ===================================================

The category and status bindings are FHIR "example" bindings; the identifier systems are
hepatrial's own URNs (a site with an ICCBBA registration may map them to ISBT 128 systems).
The resource is validated by ``fhir.resources`` before it is returned; JSON output has sorted
keys (same record, same bytes).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BATCH_SYSTEM",
    "COI_SYSTEM",
    "PROPERTY_SYSTEM",
    "STUDY_ID_SYSTEM",
    "ProductRecord",
    "biologically_derived_product",
    "to_json",
]

BATCH_SYSTEM = "urn:hepatrial:batch-id"
COI_SYSTEM = "urn:hepatrial:chain-of-identity"
STUDY_ID_SYSTEM = "urn:hepatrial:study-id"
PROPERTY_SYSTEM = "urn:hepatrial:product-property"
UCUM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://hl7.org/fhir/product-category"
STATUS_SYSTEM = "http://hl7.org/fhir/biologicallyderived-product-status"


@dataclass(frozen=True)
class ProductRecord:
    """A batch as the store knows it (plain values; times timezone-aware)."""

    batch_id: str
    coi: str
    participant: str
    product_name: str
    available: bool
    collected_at: _dt.datetime | None = None
    collector: str = ""
    processing_facility: str = ""
    expires_at: _dt.datetime | None = None
    storage_min_c: float | None = None
    storage_max_c: float | None = None
    cells_total: float | None = None
    viability_pct: float | None = None
    volume_ml: float | None = None
    lifecycle_state: str = ""


def _time(t: _dt.datetime | None, what: str, batch: str) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"batch {batch}: {what} {t!r} has no time zone (FHIR dateTime with a "
                         "time needs one)")
    return t.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _property(code: str, display: str, **value: Any) -> dict[str, Any]:
    return {"type": {"coding": [{"system": PROPERTY_SYSTEM, "code": code, "display": display}],
                     "text": display}, **value}


def _resource_id(batch_id: str) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}) from the batch id: other characters become '-'."""
    rid = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-.") else "-"
                  for ch in batch_id)[:64]
    return rid or "batch"


def biologically_derived_product(rec: ProductRecord) -> dict[str, Any]:
    """The batch as a FHIR R5 ``BiologicallyDerivedProduct`` (JSON-ready dict), validated by
    ``fhir.resources`` (a ValueError names the batch and the problem otherwise)."""
    from fhir.resources.biologicallyderivedproduct import BiologicallyDerivedProduct
    from pydantic import ValidationError

    props = []
    if rec.cells_total is not None:
        props.append(_property("viable-cell-count", "Viable cells",
                               valueQuantity=_quantity(rec.cells_total, "{cells}")))
    if rec.viability_pct is not None:
        props.append(_property("viability", "Viability",
                               valueQuantity=_quantity(rec.viability_pct, "%")))
    if rec.volume_ml is not None:
        props.append(_property("volume", "Volume", valueQuantity=_quantity(rec.volume_ml, "mL")))
    if rec.lifecycle_state:
        props.append(_property("lifecycle-state", "Lifecycle state",
                               valueString=rec.lifecycle_state))
    collection: dict[str, Any] = {
        "source": {"identifier": {"system": STUDY_ID_SYSTEM, "value": rec.participant},
                   "display": f"participant {rec.participant} (autologous)"},
    }
    collected = _time(rec.collected_at, "collection time", rec.batch_id)
    if collected is not None:
        collection["collectedDateTime"] = collected
    if rec.collector:
        collection["collector"] = {"display": rec.collector}
    data: dict[str, Any] = {
        "resourceType": "BiologicallyDerivedProduct",
        "id": _resource_id(rec.batch_id),
        "identifier": [{"system": BATCH_SYSTEM, "value": rec.batch_id}],
        "biologicalSourceEvent": {"system": COI_SYSTEM, "value": rec.coi},
        "productCategory": {"system": CATEGORY_SYSTEM, "code": "cells", "display": "Cells"},
        "productCode": {"text": rec.product_name},
        "productStatus": {"system": STATUS_SYSTEM,
                          "code": "available" if rec.available else "unavailable",
                          "display": "Available" if rec.available else "Unavailable"},
        "collection": collection,
    }
    if rec.processing_facility:
        data["processingFacility"] = [{"display": rec.processing_facility}]
    expires = _time(rec.expires_at, "expiry", rec.batch_id)
    if expires is not None:
        data["expirationDate"] = expires
    if rec.storage_min_c is not None or rec.storage_max_c is not None:
        rng: dict[str, Any] = {}
        if rec.storage_min_c is not None:
            rng["low"] = _quantity(rec.storage_min_c, "Cel")
        if rec.storage_max_c is not None:
            rng["high"] = _quantity(rec.storage_max_c, "Cel")
        data["storageTempRequirements"] = rng
    if props:
        data["property"] = props
    try:
        resource = BiologicallyDerivedProduct.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"batch {rec.batch_id}: not a valid FHIR BiologicallyDerivedProduct: "
                         f"{exc}") from None
    out: dict[str, Any] = json.loads(resource.model_dump_json(exclude_none=True))
    return out


def to_json(resource: dict[str, Any]) -> str:
    """Canonical JSON of a resource: sorted keys, 2-space indent, UTF-8 text, final newline."""
    return json.dumps(resource, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
