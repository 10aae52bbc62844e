"""Adapter from the protocol analyte registry to the validation layer's :class:`AnalyteCatalog`."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from hepatrial.protocol import analytes as _reg

__all__ = ["RegistryCatalog", "registry_catalog"]


class RegistryCatalog:
    """:class:`~hepatrial.ingest.validate.AnalyteCatalog` over :mod:`hepatrial.protocol.analytes`.

    Units are matched the registry's way (``normalise_unit``); values outside the analyte's hard
    ``limits`` are reported per row (the registry's vectorised converter raises on the first
    batch, which would hide the other rows).
    """

    def codes(self) -> Collection[str]:
        """Registered analyte codes (scores are derived, never imported)."""
        return _reg.ANALYTES.keys()

    def units(self, code: str) -> Collection[str]:
        """Accepted unit spellings for ``code``."""
        return list(_reg.analyte(code).units)

    def accepts(self, code: str, unit: str) -> bool:
        """True when ``unit`` is accepted for ``code``."""
        return _reg.analyte(code).accepts(unit)

    def canonical_unit(self, code: str) -> str:
        """Canonical unit of ``code``."""
        return _reg.analyte(code).unit

    def convert(self, code: str, unit: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Convert to canonical (no rounding) and give a reason per value outside hard limits."""
        a = _reg.analyte(code)
        conv = _reg.to_canonical_array(code, values, unit, check=False)
        lo, hi = a.limits
        bad = (conv < lo) | (conv > hi)
        errors = np.full(len(conv), None, dtype=object)
        if bad.any():
            errors[bad] = [
                f"out of range: {v:g} {unit} = {c:g} {a.unit}, outside the plausible "
                f"{lo:g}-{hi:g} {a.unit} (wrong unit?)"
                for v, c in zip(np.asarray(values)[bad], conv[bad], strict=True)
            ]
        return conv, errors


def registry_catalog() -> RegistryCatalog:
    """The catalog of every analyte in the protocol registry."""
    return RegistryCatalog()
