"""Code lists of hepatrial: one place for every coded value.

The Django choices of the store (:mod:`hepatrial.trials.models`), the pydantic literals of the
protocol model (:mod:`hepatrial.protocol.models`) and the columns of the analysis dataset
(``docs/contracts.md``) all derive from the tuples here. Each list is a tuple of
``(code, label)`` pairs; :func:`codes` gives the codes. This module imports nothing of ours.
"""

from __future__ import annotations

__all__ = [
    "ADVERSE_EVENT_COLUMNS",
    "AE_OUTCOME",
    "ASCITES",
    "DATASET_COLUMNS",
    "DEVIATION_CATEGORY",
    "EDEMA",
    "ENCEPHALOPATHY",
    "ETIOLOGY",
    "PARTICIPANT_COLUMNS",
    "PARTICIPANT_STATUS",
    "RELATEDNESS",
    "ROLES",
    "ROUTE",
    "SEX",
    "VISIT_STATUS",
    "codes",
]

Pairs = tuple[tuple[str, str], ...]


def codes(pairs: Pairs) -> tuple[str, ...]:
    """The codes of a code list, in order."""
    return tuple(code for code, _label in pairs)


SEX: Pairs = (("F", "female"), ("M", "male"))

ETIOLOGY: Pairs = (
    ("HBV", "hepatitis B"),
    ("HCV", "hepatitis C"),
    ("alcohol", "alcohol-related"),
    ("MASLD", "metabolic dysfunction-associated steatotic liver disease"),
    ("autoimmune", "autoimmune hepatitis"),
    ("PBC", "primary biliary cholangitis"),
    ("PSC", "primary sclerosing cholangitis"),
    ("cryptogenic", "cryptogenic"),
    ("other", "other"),
)

PARTICIPANT_STATUS: Pairs = (
    ("screened", "screened"),
    ("screen_failed", "screen failed"),
    ("enrolled", "enrolled"),
    ("withdrawn", "withdrawn"),
    ("died", "died"),
    ("transplanted", "transplanted"),
    ("completed", "completed"),
)

VISIT_STATUS: Pairs = (
    ("scheduled", "scheduled"),
    ("in_window", "in window"),
    ("early", "early"),
    ("late", "late"),
    ("missed", "missed"),
    ("not_done", "not done"),
)

#: Child-Pugh ascites grade (Pugh 1973: none / slight / moderate)
ASCITES: Pairs = (("none", "none"), ("slight", "slight"), ("moderate", "moderate"))

#: oedema as coded in the Mayo PBC data (survival::pbc ``edema`` 0 / 0.5 / 1)
EDEMA: Pairs = (
    ("none", "no oedema (0)"),
    ("untreated_or_resolved", "untreated, or resolved by diuretics (0.5)"),
    ("despite_diuretics", "oedema despite diuretic therapy (1)"),
)

#: Child-Pugh hepatic encephalopathy (West Haven grades grouped as in Pugh 1973)
ENCEPHALOPATHY: Pairs = (
    ("none", "none"),
    ("grade_1_2", "grade 1-2"),
    ("grade_3_4", "grade 3-4"),
)

ROUTE: Pairs = (
    ("peripheral_vein", "peripheral vein"),
    ("portal_vein", "portal vein"),
    ("hepatic_artery", "hepatic artery"),
)

#: causality (WHO-UMC style categories as used in CTCAE-graded trials)
RELATEDNESS: Pairs = (
    ("not_related", "not related"),
    ("unlikely", "unlikely"),
    ("possible", "possible"),
    ("probable", "probable"),
    ("definite", "definite"),
)

#: adverse-event outcome (CDISC SDTM AEOUT terms, lower case)
AE_OUTCOME: Pairs = (
    ("recovered", "recovered/resolved"),
    ("recovering", "recovering/resolving"),
    ("not_recovered", "not recovered/not resolved"),
    ("recovered_with_sequelae", "recovered/resolved with sequelae"),
    ("fatal", "fatal"),
    ("unknown", "unknown"),
)

DEVIATION_CATEGORY: Pairs = (
    ("visit_window", "visit out of window"),
    ("missed_visit", "missed visit"),
    ("eligibility", "eligibility"),
    ("dosing", "dosing"),
    ("consent", "consent"),
    ("other", "other"),
)

#: roles of user accounts (ICH E6(R3) delegation of duties); see docs/contracts.md
ROLES: Pairs = (
    ("coordinator", "study coordinator: enters data at their sites, answers queries"),
    ("investigator", "investigator: as coordinator, and signs casebooks"),
    ("monitor", "monitor: reads their sites, verifies source data, raises queries"),
    ("data-manager", "data manager: all sites; queries, locks and unlocks"),
    ("qa", "quality assurance: releases cell-product batches"),
    ("auditor", "auditor: reads everything, writes nothing"),
    ("admin", "administrator: accounts, sites, protocol"),
)

#: column order of the analysis dataset (docs/contracts.md §1)
DATASET_COLUMNS: tuple[str, ...] = (
    "participant_id",
    "site",
    "arm",
    "visit",
    "nominal_day",
    "actual_day",
    "analyte",
    "value",
    "unit",
    "source",
)

#: column order of the participants table (docs/contracts.md §2; age and dose defined there)
PARTICIPANT_COLUMNS: tuple[str, ...] = (
    "participant_id",
    "site",
    "arm",
    "sex",
    "age",
    "etiology",
    "status",
    "status_date",
    "status_reason",
    "enrolment_date",
    "route",
    "n_administrations",
    "cells_total",
    "cells_per_kg",
    "volume_ml",
)

#: column order of the adverse-events table (docs/contracts.md §3)
ADVERSE_EVENT_COLUMNS: tuple[str, ...] = (
    "participant_id",
    "term",
    "grade",
    "serious",
    "related",
    "onset_day",
    "resolved_day",
    "outcome",
)
