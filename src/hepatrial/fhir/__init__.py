"""FHIR export of hepatrial records, as pure mappers from plain dataclasses to resources
validated by ``fhir.resources`` (FHIR R5). This package reads no store and imports no Django:
the store (or the CLI) gathers the facts and calls a mapper.

* :func:`biologically_derived_product` — a cell-product batch as a FHIR R5
  ``BiologicallyDerivedProduct`` (:mod:`hepatrial.fhir.product`).
"""

from __future__ import annotations

from hepatrial.fhir.product import (
    ProductRecord,
    biologically_derived_product,
    to_json,
)

__all__ = ["ProductRecord", "biologically_derived_product", "to_json"]
