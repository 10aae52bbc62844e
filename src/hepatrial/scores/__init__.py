"""Liver-disease severity scores and CTCAE lab grades, vectorised with numpy.

Pure calculators: no Django, no pandas required. Each function takes scalars, numpy arrays,
pandas Series or lists (broadcast against each other), names its definition with
``variant=``, cites its source in its docstring and returns a float64 array (a numpy scalar
for scalar input). Missing inputs give NaN; impossible inputs raise :class:`ScoreInputError`
naming the input, row and value (or give NaN with ``errors="coerce"``).

Unit conversion lives in :mod:`hepatrial.scores.units` and is applied before floors and caps.
"""

from hepatrial.scores._core import ScoreInputError, round_half_away
from hepatrial.scores.albi import albi, albi_grade
from hepatrial.scores.child_pugh import (
    child_pugh,
    child_pugh_bilirubin_points,
    child_pugh_class,
    child_pugh_coagulation_points,
)
from hepatrial.scores.ctcae import CTCAE_TERMS, ctcae_grade
from hepatrial.scores.fibrosis import apri, fib4
from hepatrial.scores.meld import meld, meld3, meld_na, meld_xi
from hepatrial.scores.table import SCORE_COLUMNS, score_columns
from hepatrial.scores.ukeld import ukeld

__all__ = [
    "CTCAE_TERMS",
    "SCORE_COLUMNS",
    "ScoreInputError",
    "albi",
    "albi_grade",
    "apri",
    "child_pugh",
    "child_pugh_bilirubin_points",
    "child_pugh_class",
    "child_pugh_coagulation_points",
    "ctcae_grade",
    "fib4",
    "meld",
    "meld3",
    "meld_na",
    "meld_xi",
    "round_half_away",
    "score_columns",
    "ukeld",
]
