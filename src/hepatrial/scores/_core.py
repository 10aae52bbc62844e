"""Input handling shared by every calculator: coercion, validation, rounding.

Every score function accepts scalars, numpy arrays, pandas Series or lists, broadcasts them
against each other and returns a float64 array of the broadcast shape (a numpy scalar for
scalar input). Missing inputs (NaN, None, empty text) give NaN for that row. Impossible inputs
(negative, zero where a logarithm is taken or a division is made, infinite, unknown category)
raise :class:`ScoreInputError` naming the input, the row index and the value — or, with
``errors="coerce"``, give NaN for that row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from hepatrial import errors as _errors

Errors = Literal["raise", "coerce"]
Units = Literal["conventional", "si"]
FloatArray = npt.NDArray[np.float64]

#: Text that means "missing" in any categorical or boolean input.
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "none", "null", "missing", "."})

_TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE_TEXT = frozenset({"false", "f", "no", "n", "0", "0.0"})


class ScoreInputError(_errors.ScoreInputError):
    """An input value that no score can be computed from.

    Attributes name the input, the 0-based row index within the call (``None`` for scalars)
    and the offending value, so that a caller reading a file can translate the row index
    into a file line.
    """

    def __init__(self, input_name: str, row: int | None, value: object, reason: str) -> None:
        self.input_name = input_name
        self.row = row
        self.value = value
        self.reason = reason
        where = "" if row is None else f" row {row}:"
        super().__init__(f"{input_name}:{where} {value!r} {reason}")


def check_errors(errors: str) -> None:
    """Validate the ``errors`` argument."""
    if errors not in ("raise", "coerce"):
        raise ValueError(f"errors must be 'raise' or 'coerce', not {errors!r}")


def _first_bad(mask: npt.NDArray[np.bool_]) -> int | None:
    """Row index of the first True in ``mask`` (None for a 0-d mask)."""
    if mask.ndim == 0:
        return None
    return int(np.flatnonzero(mask.ravel())[0])


def _raw_value(raw: Any, row: int | None) -> object:
    if row is None:
        return raw.item() if isinstance(raw, np.ndarray) else raw
    try:
        return np.asarray(raw, dtype=object).ravel()[row]
    except (IndexError, TypeError):  # pragma: no cover - defensive
        return "?"


def as_float(values: Any, name: str, errors: Errors) -> FloatArray:
    """Return ``values`` as a float64 array; text that is not a number is an impossible input."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    if values is None:
        return np.asarray(np.nan)
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False)
    # object or text: convert element by element so that a bad entry is named
    flat = arr.ravel()
    out = np.empty(flat.shape, dtype=np.float64)
    for i, v in enumerate(flat):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out[i] = np.nan
            continue
        if isinstance(v, str) and v.strip().lower() in MISSING_TEXT:
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            if errors == "coerce":
                out[i] = np.nan
                continue
            raise ScoreInputError(
                name, None if arr.ndim == 0 else i, v, "is not a number"
            ) from None
    return out.reshape(arr.shape)


def require(
    x: FloatArray,
    name: str,
    errors: Errors,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    raw: Any = None,
) -> FloatArray:
    """Check a float array for impossible values (infinite; negative; zero if ``positive``).

    NaN passes through untouched (it means missing). Returns ``x`` (a copy with the bad rows
    set to NaN under ``errors="coerce"``).
    """
    if x.size:
        # fast path: two NaN-ignoring reductions decide for the whole array
        lo = np.fmin.reduce(x, axis=None)
        hi = np.fmax.reduce(x, axis=None)
        if np.isnan(lo) or (
            np.isfinite(lo)
            and np.isfinite(hi)
            and (lo > 0 if positive else (lo >= 0 if nonnegative else True))
        ):
            return x
    with np.errstate(invalid="ignore"):
        if positive:
            bad = ~(x > 0) & ~np.isnan(x)
            reason = "is impossible: must be greater than 0"
        elif nonnegative:
            bad = ~(x >= 0) & ~np.isnan(x)
            reason = "is impossible: must not be negative"
        else:
            bad = np.zeros(x.shape, dtype=bool)
            reason = ""
        bad |= np.isinf(x)
    if not bad.any():
        return x
    if errors == "coerce":
        x = np.array(x, dtype=np.float64, copy=True)
        x[bad] = np.nan
        return x
    row = _first_bad(bad)
    value = _raw_value(raw if raw is not None else x, row)
    if isinstance(value, float) and np.isinf(value):
        reason = "is impossible: must be finite"
    raise ScoreInputError(name, row, value, reason)


def lab(values: Any, name: str, errors: Errors, *, positive: bool = True) -> FloatArray:
    """Coerce and validate a laboratory value (must be finite and > 0 by default)."""
    x = as_float(values, name, errors)
    return require(x, name, errors, positive=positive, nonnegative=not positive, raw=values)


def _spellings(mapping: Mapping[str, float]) -> list[tuple[str, float]]:
    """Spellings to try in the vectorised fast path, most likely first.

    The first key of each code (the canonical spelling) comes first, then the synonyms, then
    upper-case and capitalised forms; anything else falls back to a case-insensitive lookup.
    """
    first: dict[float, str] = {}
    for key, code in mapping.items():
        first.setdefault(code, key)
    ordered = list(first.values()) + [k for k in mapping if k not in first.values()]
    variants = [(k, mapping[k]) for k in ordered]
    for k in ordered:
        for v in dict.fromkeys((k.upper(), k.capitalize())):
            if v != k:
                variants.append((v, mapping[k]))
    return variants


def _text_codes(
    arr: npt.NDArray[Any], mapping: Mapping[str, float], name: str, errors: Errors
) -> FloatArray:
    """Map a text array onto float codes (NaN = missing) through ``mapping`` (lower-case keys)."""
    flat = arr.ravel()
    out = np.full(flat.shape, np.nan, dtype=np.float64)
    matched = np.zeros(flat.shape, dtype=bool)
    if flat.dtype.kind == "U":
        # fast path: exact matches on the canonical spellings, vectorised
        remaining = flat.size
        for spelling, code in _spellings(mapping):
            hit = flat == spelling
            n_hit = int(np.count_nonzero(hit))
            if n_hit:
                out[hit] = code
                matched |= hit
                remaining -= n_hit
                if remaining == 0:
                    break
        rest_idx = np.flatnonzero(~matched)
        if rest_idx.size == 0:
            return out.reshape(arr.shape)
        rest_values, inverse = np.unique(flat[rest_idx], return_inverse=True)
    else:
        rest_idx = np.arange(flat.size)
        cache: dict[object, int] = {}
        inv_list = []
        uniq: list[object] = []
        for v in flat:
            k = v if not (isinstance(v, float) and np.isnan(v)) else None
            if k not in cache:
                cache[k] = len(uniq)
                uniq.append(k)
            inv_list.append(cache[k])
        rest_values = np.array(uniq, dtype=object)
        inverse = np.asarray(inv_list, dtype=np.intp)
    codes = np.full(len(rest_values), np.nan)
    bad_u = np.zeros(len(rest_values), dtype=bool)
    for j, v in enumerate(rest_values):
        if v is None:
            continue
        if isinstance(v, (bool, np.bool_)):
            key = "true" if v else "false"
        else:
            key = str(v).strip().lower()
        if key in mapping:  # before the missing markers: "none" is a valid ascites grade
            codes[j] = mapping[key]
        elif key not in MISSING_TEXT:
            bad_u[j] = True
    if bad_u.any():
        if errors == "raise":
            first = int(np.flatnonzero(bad_u[inverse])[0])
            row = int(rest_idx[first])
            allowed = ", ".join(sorted({k for k in mapping}))
            raise ScoreInputError(
                name,
                None if arr.ndim == 0 else row,
                flat[row].item() if hasattr(flat[row], "item") else flat[row],
                f"is not a known value (expected one of: {allowed})",
            )
    out[rest_idx] = codes[inverse]
    return out.reshape(arr.shape)


class Codes(np.ndarray):
    """A float array already coded by :func:`category` (passed through without re-coding).

    Lets a caller that feeds one categorical column to several calculators code it once.
    """


def coded(values: Any, mapping: Mapping[str, float], name: str, errors: Errors) -> Codes:
    """Code ``values`` once through ``mapping`` and mark the result as :class:`Codes`."""
    return np.asarray(category(values, mapping, name, errors)).view(Codes)


def category(values: Any, mapping: Mapping[str, float], name: str, errors: Errors) -> FloatArray:
    """Coerce a categorical input to float codes via ``mapping`` (keys lower-case text).

    Booleans and numbers are looked up by their text form (``True`` → ``"true"``,
    ``1`` → ``"1"``) so that a mapping may accept them explicitly; NaN/None/empty are missing.
    """
    if values is None:
        return np.asarray(np.nan)
    if isinstance(values, Codes):
        return np.asarray(values)
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        t, f = mapping.get("true"), mapping.get("false")
        if t is None or f is None:
            raise ScoreInputError(name, None, values, "must be text, not true/false")
        return np.where(arr, t, f).astype(np.float64)
    if arr.dtype.kind in "iuf":
        fl = arr.astype(np.float64)
        out = np.full(fl.shape, np.nan)
        known = np.zeros(fl.shape, dtype=bool)
        for key, code in mapping.items():
            try:
                num = float(key)
            except ValueError:
                continue
            hit = fl == num
            out[hit] = code
            known |= hit
        bad = ~known & ~np.isnan(fl)
        if bad.any():
            if errors == "raise":
                row = _first_bad(bad)
                allowed = ", ".join(sorted(mapping))
                raise ScoreInputError(
                    name,
                    row,
                    _raw_value(arr, row),
                    f"is not a known value (expected one of: {allowed})",
                )
        return out
    return _text_codes(arr, mapping, name, errors)


BOOLEAN = {**{k: 1.0 for k in _TRUE_TEXT}, **{k: 0.0 for k in _FALSE_TEXT}}


def flag(values: Any, name: str, errors: Errors) -> FloatArray:
    """Coerce a yes/no input to 1.0/0.0 (NaN = missing)."""
    return category(values, BOOLEAN, name, errors)


def broadcast(*arrays: FloatArray) -> tuple[FloatArray, ...]:
    """Broadcast inputs to a common shape (raises a clear error if lengths disagree)."""
    try:
        return tuple(np.broadcast_arrays(*arrays))
    except ValueError:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(
            f"inputs have different lengths and cannot be broadcast: {shapes}"
        ) from None


def finish(x: FloatArray) -> Any:
    """Return a numpy scalar for 0-d results, else the array."""
    return x[()] if x.ndim == 0 else x


def round_half_away(x: FloatArray) -> FloatArray:
    """Round to the nearest integer, halves away from zero (SAS ``ROUND``, OPTN).

    Python's ``round`` and numpy's ``rint`` round halves to even (``round(24.5) == 24``);
    the OPTN calculators and SAS round 24.5 to 25. A fuzz of 1e-9 treats values within
    floating-point noise of a decimal half as the half, as SAS ``ROUND`` does.
    """
    return np.copysign(np.floor(np.abs(x) + 0.5 + 1e-9), x)


def round_half_away_to(x: FloatArray, decimals: int) -> FloatArray:
    """:func:`round_half_away` to ``decimals`` places."""
    scale = 10.0**decimals
    return round_half_away(x * scale) / scale


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    """Raise a clear error when a ``variant=``/``units=`` argument is unknown."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")
