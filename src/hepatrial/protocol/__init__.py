"""Protocol as code: pydantic models of a trial protocol, built-in protocols, analyte registry.

Public API::

    from hepatrial.protocol import load_protocol, list_builtin
    p = load_protocol("kharaziha2009")          # or a path to a TOML file
    p.content_hash(); p.summary_dict(); p.screen({...}); p.assign_visits([0, 7, 15])

See :mod:`hepatrial.protocol.models` (models and rules), :mod:`.loader` (loading/validation),
:mod:`.eligibility` (declarative checks), :mod:`.analytes` (units, LOINC, ranges) and
:mod:`.importmap` (column maps for visit imports).
"""

from __future__ import annotations

from hepatrial.protocol.analytes import (
    Analyte,
    AnalyteError,
    RangeError,
    UnitError,
    UnknownAnalyteError,
    analyte,
    to_canonical,
    to_canonical_array,
)
from hepatrial.protocol.eligibility import Check, CriterionResult, EligibilityResult
from hepatrial.protocol.importmap import VisitImportMap, load_import_map
from hepatrial.protocol.loader import (
    ProtocolError,
    ProtocolNotFoundError,
    list_builtin,
    load_protocol,
    validate_file,
    validate_text,
)
from hepatrial.protocol.models import (
    ETIOLOGIES,
    UNSCHEDULED,
    AnalysisPlan,
    Arm,
    Criterion,
    Issue,
    MixedModel,
    Outcome,
    PrimaryEndpoint,
    Product,
    Protocol,
    Randomisation,
    ScheduledVisit,
    Site,
    Visit,
    VisitAssignment,
)
from hepatrial.protocol.safety import SafetyPlan  # also completes Protocol.safety

__all__ = [
    "ETIOLOGIES",
    "UNSCHEDULED",
    "AnalysisPlan",
    "Analyte",
    "AnalyteError",
    "Arm",
    "Check",
    "Criterion",
    "CriterionResult",
    "EligibilityResult",
    "Issue",
    "MixedModel",
    "Outcome",
    "PrimaryEndpoint",
    "Product",
    "Protocol",
    "ProtocolError",
    "ProtocolNotFoundError",
    "Randomisation",
    "RangeError",
    "SafetyPlan",
    "ScheduledVisit",
    "Site",
    "UnitError",
    "UnknownAnalyteError",
    "Visit",
    "VisitAssignment",
    "VisitImportMap",
    "analyte",
    "list_builtin",
    "load_import_map",
    "load_protocol",
    "to_canonical",
    "to_canonical_array",
    "validate_file",
    "validate_text",
]
