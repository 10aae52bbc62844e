"""Score a table: unit-named input columns in, every score the columns allow out.

This is what ``hepatrial score`` and the trial store call. Input columns carry their unit in
the name, exactly as the keys of the shared reference vectors do:

``bilirubin_mg_dl | bilirubin_umol_l``, ``creatinine_mg_dl | creatinine_umol_l``,
``albumin_g_dl | albumin_g_l``, ``inr``, ``sodium_mmol_l``, ``sex`` (F/M), ``age``,
``age_at_registration``, ``dialysis`` (true/false), ``ascites`` (none/slight/moderate),
``encephalopathy`` (none/grade_1_2/grade_3_4), ``ast_u_l``, ``alt_u_l``, ``ast_uln_u_l``,
``platelets_10e9_l``, ``pt_seconds_prolonged``, ``cholestatic_disease``.

Rules for absent columns (as opposed to empty cells, which always give an empty score):

* ``dialysis`` absent → no dialysis for every row;
* ``cholestatic_disease`` absent → standard Child-Pugh bilirubin bands;
* ``age_at_registration`` absent or empty in a row → ``age`` of that row is used for the
  MELD 3.0 under-18 rule; with neither, MELD 3.0 is not computed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hepatrial.scores import units as _units
from hepatrial.scores._core import BOOLEAN, Errors, ScoreInputError, as_float, check_errors, coded
from hepatrial.scores.albi import albi, albi_grade
from hepatrial.scores.child_pugh import (
    ASCITES,
    CHOLESTATIC,
    ENCEPHALOPATHY,
    child_pugh,
    child_pugh_class,
)
from hepatrial.scores.fibrosis import apri, fib4
from hepatrial.scores.meld import SEX_FEMALE, meld, meld3, meld_na, meld_xi
from hepatrial.scores.ukeld import ukeld

#: Output columns, in output order.
SCORE_COLUMNS: tuple[str, ...] = (
    "meld_kamath2001",
    "meld_continuous",
    "meld_optn2002",
    "meld_na_kim2008",
    "meld_na_optn2016",
    "meld3_optn2023",
    "child_pugh_points",
    "child_pugh_class",
    "albi",
    "albi_grade",
    "fib4",
    "apri",
    "meld_xi",
    "ukeld",
)

#: Score columns whose values are whole numbers (written without a decimal point).
INTEGER_COLUMNS = frozenset(
    {
        "meld_optn2002",
        "meld_na_optn2016",
        "meld3_optn2023",
        "child_pugh_points",
        "albi_grade",
        "meld_xi",
    }
)

#: Every recognised input column.
INPUT_COLUMNS: tuple[str, ...] = (
    "bilirubin_mg_dl",
    "bilirubin_umol_l",
    "creatinine_mg_dl",
    "creatinine_umol_l",
    "albumin_g_dl",
    "albumin_g_l",
    "inr",
    "sodium_mmol_l",
    "sex",
    "age",
    "age_at_registration",
    "dialysis",
    "ascites",
    "encephalopathy",
    "ast_u_l",
    "alt_u_l",
    "ast_uln_u_l",
    "platelets_10e9_l",
    "pt_seconds_prolonged",
    "cholestatic_disease",
)
#: Input columns holding text categories (all others are numeric).
TEXT_COLUMNS = frozenset({"sex", "dialysis", "ascites", "encephalopathy", "cholestatic_disease"})

_UNIT_ALTERNATIVES = {
    "bilirubin": ("bilirubin_mg_dl", "bilirubin_umol_l"),
    "creatinine": ("creatinine_mg_dl", "creatinine_umol_l"),
    "albumin": ("albumin_g_dl", "albumin_g_l"),
}

#: category input columns and the lookup that codes them
CATEGORIES: dict[str, Mapping[str, float]] = {
    "sex": SEX_FEMALE,
    "dialysis": BOOLEAN,
    "ascites": ASCITES,
    "encephalopathy": ENCEPHALOPATHY,
    "cholestatic_disease": CHOLESTATIC,
}


class _Inputs:
    """The columns of one batch, converted once to the units the kernels take.

    Columns not in :data:`INPUT_COLUMNS` are ignored (the CLI carries them through).
    """

    def __init__(self, data: Mapping[str, Any], errors: Errors) -> None:
        self.data = data
        self.errors = errors
        self.names: dict[str, str] = {}  # kernel input name -> column name
        self.values: dict[str, Any] = {}
        for analyte, (conv, si) in _UNIT_ALTERNATIVES.items():
            if conv in data and si in data:
                raise ScoreInputError(
                    analyte, None, f"{conv}, {si}", "is given in two units; keep one column"
                )
            if conv in data:
                self.names[analyte] = conv
                self.values[analyte] = as_float(data[conv], conv, errors)
            elif si in data:
                self.names[analyte] = si
                self.values[analyte] = _units.to_conventional(
                    analyte, as_float(data[si], si, errors), "si"
                )
        simple = {
            "inr": "inr",
            "sodium": "sodium_mmol_l",
            "ast": "ast_u_l",
            "alt": "alt_u_l",
            "ast_uln": "ast_uln_u_l",
            "platelets": "platelets_10e9_l",
            "pt_seconds_prolonged": "pt_seconds_prolonged",
            "age": "age",
            "age_at_registration": "age_at_registration",
        }
        for name, col in simple.items():
            if col in data:
                self.names[name] = col
                self.values[name] = as_float(data[col], col, errors)
        for col, mapping in CATEGORIES.items():
            if col in data:
                self.names[col] = col
                self.values[col] = coded(data[col], mapping, col, errors)
        if "age_at_registration" in self.values and "age" in self.values:
            reg = self.values["age_at_registration"]
            self.values["age_at_registration"] = np.where(np.isnan(reg), self.values["age"], reg)
        elif "age" in self.values:
            self.names["age_at_registration"] = "age"
            self.values["age_at_registration"] = self.values["age"]

    def has(self, *names: str) -> bool:
        return all(n in self.values for n in names)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def column_of(self, input_name: str) -> str:
        """Translate a kernel's input name into the column the user gave."""
        return self.names.get(input_name, input_name)


def _call(inputs: _Inputs, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ScoreInputError as exc:
        raise ScoreInputError(
            inputs.column_of(exc.input_name), exc.row, exc.value, exc.reason
        ) from None


def score_columns(data: Mapping[str, Any], *, errors: Errors = "raise") -> dict[str, Any]:
    """Compute every score that the given unit-named columns allow.

    Parameters
    ----------
    data:
        Mapping of input column name (see module docstring) to a scalar or 1-D array; numeric
        columns may be floats (NaN = missing) or text, category columns text.
    errors:
        ``"raise"``: an impossible value raises :class:`ScoreInputError` whose ``input_name``
        is the *column name* and whose ``row`` is the 0-based index; ``"coerce"``: NaN.

    Returns
    -------
    dict mapping output column name (a subset of :data:`SCORE_COLUMNS`, in that order) to a
    float64 array (``child_pugh_class``: object array of "A"/"B"/"C"/"").
    """
    check_errors(errors)
    x = _Inputs(data, errors)
    kw: dict[str, Any] = {"units": "conventional", "errors": errors}
    dialysis = x.get("dialysis", False)
    out: dict[str, Any] = {}
    if x.has("bilirubin", "creatinine", "inr"):
        b, c, i = x.get("bilirubin"), x.get("creatinine"), x.get("inr")
        out["meld_kamath2001"] = _call(x, lambda: meld(b, c, i, variant="kamath2001", **kw))
        out["meld_continuous"] = _call(
            x, lambda: meld(b, c, i, dialysis=dialysis, variant="continuous", **kw)
        )
        out["meld_optn2002"] = _call(
            x, lambda: meld(b, c, i, dialysis=dialysis, variant="optn2002", **kw)
        )
        if x.has("sodium"):
            na = x.get("sodium")
            out["meld_na_kim2008"] = _call(
                x, lambda: meld_na(b, c, i, na, dialysis=dialysis, variant="kim2008", **kw)
            )
            out["meld_na_optn2016"] = _call(
                x, lambda: meld_na(b, c, i, na, dialysis=dialysis, variant="optn2016", **kw)
            )
            if x.has("albumin", "sex", "age_at_registration"):
                out["meld3_optn2023"] = _call(
                    x,
                    lambda: meld3(
                        b,
                        c,
                        i,
                        na,
                        x.get("albumin"),
                        x.get("sex"),
                        age_at_registration=x.get("age_at_registration"),
                        dialysis=dialysis,
                        **kw,
                    ),
                )
    if x.has("bilirubin", "albumin", "ascites", "encephalopathy") and (
        x.has("inr") or x.has("pt_seconds_prolonged")
    ):
        pts = _call(
            x,
            lambda: child_pugh(
                x.get("bilirubin"),
                x.get("albumin"),
                x.get("ascites"),
                x.get("encephalopathy"),
                inr=x.get("inr"),
                pt_seconds_prolonged=x.get("pt_seconds_prolonged"),
                cholestatic=x.get("cholestatic_disease", False),
                **kw,
            ),
        )
        out["child_pugh_points"] = pts
        out["child_pugh_class"] = child_pugh_class(pts)
    if x.has("bilirubin", "albumin"):
        score = _call(x, lambda: albi(x.get("bilirubin"), x.get("albumin"), **kw))
        out["albi"] = score
        out["albi_grade"] = albi_grade(score)
    if x.has("age", "ast", "alt", "platelets"):
        out["fib4"] = _call(
            x,
            lambda: fib4(
                x.get("age"), x.get("ast"), x.get("alt"), x.get("platelets"), errors=errors
            ),
        )
    if x.has("ast", "ast_uln", "platelets"):
        out["apri"] = _call(
            x,
            lambda: apri(x.get("ast"), x.get("platelets"), ast_uln=x.get("ast_uln"), errors=errors),
        )
    if x.has("bilirubin", "creatinine"):
        out["meld_xi"] = _call(
            x, lambda: meld_xi(x.get("bilirubin"), x.get("creatinine"), dialysis=dialysis, **kw)
        )
    if x.has("bilirubin", "creatinine", "inr", "sodium"):
        out["ukeld"] = _call(
            x,
            lambda: ukeld(
                x.get("bilirubin"), x.get("creatinine"), x.get("inr"), x.get("sodium"), **kw
            ),
        )
    n = _length(data)
    return {k: _as_column(out[k], n) for k in SCORE_COLUMNS if k in out}


def _length(data: Mapping[str, Any]) -> int | None:
    for v in data.values():
        arr = np.asarray(v)
        if arr.ndim:
            return int(arr.shape[0])
    return None


def _as_column(values: Any, n: int | None) -> Any:
    arr = np.asarray(values)
    if n is not None and arr.ndim == 0:
        arr = np.full(n, arr.item(), dtype=arr.dtype)
    return arr
