"""One pure validator per record kind, used by every path that writes that record.

See :mod:`hepatrial.trials.validators._common` for the conventions. Modules (one per record):
``participant``, ``consent``, ``eligibility``, ``visit``, ``lab``, ``clinical``, ``product``,
``administration``, ``adverse_event``.
"""

from hepatrial.trials.validators._common import Checker, Problem, RuleViolation, today

__all__ = ["Checker", "Problem", "RuleViolation", "today"]
