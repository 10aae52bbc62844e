"""Liver-disease severity scores and CTCAE lab grades, vectorised with numpy.

Pure calculators: no Django, no pandas required. Each function takes scalars, numpy arrays,
pandas Series or lists (broadcast against each other), names its definition with
``variant=``, cites its source in its docstring and returns a float64 array.
"""

from hepatrial.scores._core import ScoreInputError, round_half_away
from hepatrial.scores.meld import meld, meld3, meld_na

__all__ = ["ScoreInputError", "meld", "meld3", "meld_na", "round_half_away"]
