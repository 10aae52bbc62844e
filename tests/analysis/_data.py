"""Small public datasets written into the tests (R ``datasets``)."""

from __future__ import annotations

import pandas as pd

# R datasets::sleep, extra hours of sleep; group 1 and group 2 for the same 10 patients.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]

# R ?friedman.test, RoundingTimes (Hollander & Wolfe 1973, p. 140): 22 players x 3 methods.
ROUNDING_TIMES = [
    (5.40, 5.50, 5.55), (5.85, 5.70, 5.75), (5.20, 5.60, 5.50), (5.55, 5.50, 5.40),
    (5.90, 5.85, 5.70), (5.45, 5.55, 5.60), (5.40, 5.40, 5.35), (5.45, 5.50, 5.35),
    (5.25, 5.15, 5.00), (5.85, 5.80, 5.70), (5.25, 5.20, 5.10), (5.65, 5.55, 5.45),
    (5.60, 5.35, 5.45), (5.05, 5.00, 4.95), (5.50, 5.50, 5.40), (5.45, 5.55, 5.50),
    (5.55, 5.55, 5.35), (5.45, 5.50, 5.55), (5.50, 5.45, 5.25), (5.65, 5.60, 5.40),
    (5.70, 5.65, 5.55), (6.30, 6.30, 6.25),
]
ROUNDING_METHODS = ("Round Out", "Narrow Angle", "Wide Angle")


def sleep_long() -> pd.DataFrame:
    """sleep as a tidy frame: group 1 is the 'baseline' visit G1, group 2 the visit G2."""
    rows = []
    for i, (a, b) in enumerate(zip(SLEEP_1, SLEEP_2, strict=True), start=1):
        rows.append({"participant_id": f"P{i:02d}", "visit": "G1", "value": a})
        rows.append({"participant_id": f"P{i:02d}", "visit": "G2", "value": b})
    return pd.DataFrame(rows)


def rounding_long() -> pd.DataFrame:
    """RoundingTimes as a tidy frame (subject, method, time)."""
    rows = []
    for i, times in enumerate(ROUNDING_TIMES, start=1):
        for m, t in zip(ROUNDING_METHODS, times, strict=True):
            rows.append({"participant_id": f"B{i:02d}", "visit": m, "value": t})
    return pd.DataFrame(rows)
