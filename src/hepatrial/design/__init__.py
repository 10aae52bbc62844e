"""Trial design computations (pure: numpy and scipy only, no Django, no store, no pandas).

* :mod:`hepatrial.design.monitoring` — Bayesian (beta-binomial) safety monitoring: posterior
  probabilities, stopping boundaries and exact operating characteristics of a rule or of a
  set of stopping rules.
"""

from __future__ import annotations
