"""Thin Django admin for the trial store, one module per sub-domain (see ``base`` for the rules
every admin page follows). Every ``save_model`` writes through :mod:`hepatrial.trials.services`.
"""

from hepatrial.trials.admin import participants, product, safety, trial, visits  # noqa: F401
from hepatrial.trials.admin.base import REASON_FIELD, AuditedAdmin, ReasonForm, user_site_ids

__all__ = ["REASON_FIELD", "AuditedAdmin", "ReasonForm", "user_site_ids"]
