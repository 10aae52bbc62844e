"""Power and sample size for a paired / one-sample follow-up trial.

Uses statsmodels ``TTestPower`` (noncentral t, both rejection tails counted — equal to R
``power.t.test(type="paired", strict=TRUE)``; R's default ``strict=FALSE`` ignores the far tail
and differs in the 4th decimal at low power).  Effect size is d_z = delta / sd_diff, with
sd_diff^2 = sd0^2 + sd1^2 - 2 rho sd0 sd1 (see :func:`sd_of_difference`).

Pilot SD uncertainty (Browne 1995, Stat Med 14:1933): :func:`sd_inflation_factor` gives the
factor sqrt((n-1)/chi2_{1-c, n-1}) for the one-sided upper c confidence limit of an SD
estimated from n observations.
"""

from __future__ import annotations

import math
from typing import Literal

from scipy import stats
from statsmodels.stats.power import TTestPower

from hepatrial.analysis._common import AnalysisInputError

__all__ = ["paired_power", "paired_sample_size", "sd_inflation_factor", "sd_of_difference"]

Alternative = Literal["two-sided", "larger", "smaller"]


def _effect(delta: float | None, sd: float | None, effect_size: float | None) -> float:
    if effect_size is not None:
        if delta is not None or sd is not None:
            raise AnalysisInputError("give either effect_size or delta and sd, not both")
        return float(effect_size)
    if delta is None or sd is None:
        raise AnalysisInputError("give effect_size, or delta and sd")
    if sd <= 0:
        raise AnalysisInputError(f"sd must be > 0, got {sd}")
    return float(delta) / float(sd)


def sd_of_difference(sd0: float, sd1: float, rho: float) -> float:
    """SD of the paired difference: sqrt(sd0^2 + sd1^2 - 2 rho sd0 sd1)."""
    if not -1.0 <= rho <= 1.0:
        raise AnalysisInputError(f"rho must be in [-1, 1], got {rho}")
    return math.sqrt(sd0**2 + sd1**2 - 2.0 * rho * sd0 * sd1)


def paired_power(
    n: float,
    *,
    delta: float | None = None,
    sd: float | None = None,
    effect_size: float | None = None,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> float:
    """Power of the paired t-test with ``n`` pairs (statsmodels ``TTestPower``).

    Give the standardised effect ``effect_size`` (d_z) or ``delta`` and ``sd`` (SD of the
    differences).  Delta = 1, sd = 1.5, n = 8: 0.3706676 (R strict=TRUE).
    """
    d = _effect(delta, sd, effect_size)
    if n < 2:
        raise AnalysisInputError(f"n must be >= 2, got {n}")
    return float(TTestPower().power(effect_size=d, nobs=n, alpha=alpha, alternative=alternative))


def paired_sample_size(
    power: float = 0.8,
    *,
    delta: float | None = None,
    sd: float | None = None,
    effect_size: float | None = None,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> float:
    """Number of pairs (not rounded; take ``math.ceil``) for the paired t-test to reach ``power``.

    Delta = 1, sd = 1.5, power 0.8: 19.66695; d = 0.5: 33.36713 (R ``pwr.t.test``).
    """
    d = _effect(delta, sd, effect_size)
    if not 0.0 < power < 1.0:
        raise AnalysisInputError(f"power must be in (0, 1), got {power}")
    n = TTestPower().solve_power(effect_size=d, nobs=None, alpha=alpha, power=power,
                                 alternative=alternative)
    return float(n)


def sd_inflation_factor(n: int, confidence: float = 0.8) -> float:
    """Factor sqrt((n-1)/chi2_{1-c, n-1}) turning a pilot SD into its upper c-confidence limit.

    n = 8: 1.3533 (c = 0.8), 1.5719 (0.9), 1.7972 (0.95); sample size scales by its square.
    """
    if n < 2:
        raise AnalysisInputError(f"n must be >= 2, got {n}")
    return math.sqrt((n - 1) / stats.chi2.ppf(1.0 - confidence, n - 1))
