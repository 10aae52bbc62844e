"""Trial records (Django models), one module per sub-domain; this package re-exports them.

All writes go through :mod:`hepatrial.trials.services`; reads through
:mod:`hepatrial.trials.selectors`. Every model derives from
:class:`~hepatrial.trials.audit.base.AuditedModel`: a change or deletion of a saved row needs a
reason for change, and every history row is chained into :class:`AuditLedger`.
Foreign keys are ``PROTECT`` so that clinical data are never deleted by a cascade.

The app label is ``trials`` and every model keeps its label: the ledger's chain hashes include
the history models' labels (``trials.historicalparticipant``), so never rename the app or move a
model to another app.
"""

from __future__ import annotations

from hepatrial.trials.models.accounts import LoginEvent
from hepatrial.trials.models.api import ApiToken
from hepatrial.trials.models.audit import AuditLedger
from hepatrial.trials.models.choices import (
    AEOutcome,
    Ascites,
    DeviationCategory,
    Edema,
    Encephalopathy,
    Etiology,
    ParticipantStatus,
    Relatedness,
    Role,
    Route,
    Sex,
    VisitStatus,
)
from hepatrial.trials.models.locks import Lock, LockLevel, Signature
from hepatrial.trials.models.participants import (
    Consent,
    EligibilityAssessment,
    Participant,
    RandomisationEntry,
    RandomisationList,
)
from hepatrial.trials.models.product import Administration, CellProductBatch
from hepatrial.trials.models.queries import Query, QueryMessage, SourceVerification
from hepatrial.trials.models.safety import AdverseEvent
from hepatrial.trials.models.trial import Arm, Site, SiteMembership, TrialConfig, UserProfile
from hepatrial.trials.models.visits import (
    ClinicalAssessment,
    LabResult,
    ProtocolDeviation,
    Visit,
)

__all__ = [
    "AEOutcome",
    "Administration",
    "AdverseEvent",
    "ApiToken",
    "Arm",
    "Ascites",
    "AuditLedger",
    "CellProductBatch",
    "ClinicalAssessment",
    "Consent",
    "DeviationCategory",
    "Edema",
    "EligibilityAssessment",
    "Encephalopathy",
    "Etiology",
    "LabResult",
    "Lock",
    "LockLevel",
    "LoginEvent",
    "Participant",
    "ParticipantStatus",
    "ProtocolDeviation",
    "Query",
    "QueryMessage",
    "RandomisationEntry",
    "RandomisationList",
    "Relatedness",
    "Role",
    "Route",
    "Sex",
    "Signature",
    "Site",
    "SiteMembership",
    "SourceVerification",
    "TrialConfig",
    "UserProfile",
    "Visit",
    "VisitStatus",
]
