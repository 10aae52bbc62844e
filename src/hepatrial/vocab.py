"""Code lists of hepatrial: one place for every coded value.

The Django choices of the store (:mod:`hepatrial.trials.models`), the pydantic literals of the
protocol model (:mod:`hepatrial.protocol.models`) and the columns of the analysis dataset
(``docs/contracts.md``) all derive from the tuples here. Each list is a tuple of
``(code, label)`` pairs; :func:`codes` gives the codes. This module imports nothing of ours.
"""

from __future__ import annotations

__all__ = [
    "ADVERSE_EVENT_COLUMNS",
    "AE_ACTION",
    "AE_OUTCOME",
    "ASCITES",
    "DATASET_COLUMNS",
    "DEVIATION_CATEGORY",
    "DSMB_DECISION",
    "EDEMA",
    "ENCEPHALOPATHY",
    "ETIOLOGY",
    "EXPECTEDNESS",
    "PARTICIPANT_COLUMNS",
    "PARTICIPANT_STATUS",
    "RELATEDNESS",
    "RELATEDNESS_TO",
    "RELATED_CODES",
    "ROLES",
    "ROUTE",
    "SAE_REPORT_KIND",
    "SAFETY_EVENT",
    "SAFETY_PROCEDURE",
    "SAFETY_RECIPIENT",
    "SERIOUSNESS_CRITERIA",
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
    ("sponsor", "sponsor's safety physician: SAE causality, expectedness and SUSAR assessment"),
    ("dsmb", "DSMB member: reads the safety reports, records signed decisions on stopping rules"),
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

#: seriousness criteria of an adverse event (ICH E2A, 1994, §II.B "Serious adverse event or
#: adverse drug reaction"; the same in 21 CFR 312.32(a); EU Regulation 536/2014 Art. 2(2)
#: lists the first five)
SERIOUSNESS_CRITERIA: Pairs = (
    ("death", "results in death"),
    ("life_threatening", "is life-threatening (at risk of death at the time of the event)"),
    ("hospitalisation", "requires inpatient hospitalisation or prolongation of existing "
     "hospitalisation"),
    ("disability", "results in persistent or significant disability/incapacity"),
    ("congenital_anomaly", "is a congenital anomaly/birth defect"),
    ("important_medical_event", "important medical event (medical and scientific judgement)"),
)

#: expectedness of a suspected adverse reaction against the protocol's reference safety
#: information (ICH E2A §II.C; EU Regulation 536/2014 Art. 2(2); 21 CFR 312.32(a))
EXPECTEDNESS: Pairs = (
    ("expected", "expected (listed in the reference safety information at this severity)"),
    ("unexpected", "unexpected (nature, severity or outcome not in the reference safety "
     "information)"),
)

#: the RELATEDNESS codes that make an adverse event "at least possibly related" (a suspected
#: adverse reaction: a reasonable possibility of a causal relationship, ICH E2A §II.A.2)
RELATED_CODES: tuple[str, ...] = ("possible", "probable", "definite")

#: what an adverse event's relatedness is judged against (each judged separately)
RELATEDNESS_TO: Pairs = (
    ("product", "the investigational cell product"),
    ("procedure", "a trial procedure (bone-marrow aspiration, portal-vein injection)"),
)

#: trial procedures an adverse event can be attributed to
SAFETY_PROCEDURE: Pairs = (
    ("bone_marrow_aspiration", "bone-marrow aspiration (iliac crest)"),
    ("portal_vein_injection", "portal-vein injection (percutaneous transhepatic)"),
    ("peripheral_infusion", "peripheral-vein infusion"),
    ("hepatic_artery_injection", "hepatic-artery injection"),
)

#: reports of the SAE workflow and the clock each one runs on
#: (hepatrial.protocol.safety.sae_due_dates)
SAE_REPORT_KIND: Pairs = (
    ("initial", "initial SAE report, investigator to sponsor (24 h after awareness)"),
    ("follow_up", "follow-up SAE report (until the event resolves)"),
    ("susar_7_day", "expedited SUSAR report, fatal or life-threatening (7 days)"),
    ("susar_15_day", "expedited SUSAR report, other (15 days)"),
    ("susar_follow_up", "follow-up of a fatal or life-threatening SUSAR (8 further days)"),
)

#: who is notified of safety events besides the user roles (ROLES)
SAFETY_RECIPIENT: Pairs = (
    ("sponsor", "sponsor / sponsor's pharmacovigilance"),
    ("dsmb", "data and safety monitoring board"),
    ("ethics_committee", "ethics committee / IRB"),
    ("competent_authority", "competent authority / regulator"),
)

#: safety events that send notifications (the protocol's [[safety.notifications]])
SAFETY_EVENT: Pairs = (
    ("sae", "a serious adverse event is recorded"),
    ("susar", "a SUSAR is identified"),
    ("death", "a participant dies"),
    ("report_overdue", "an SAE or SUSAR report is overdue"),
    ("stopping_rule_triggered", "a stopping rule pauses enrolment and dosing"),
    ("stopping_rule_resumed", "the DSMB resumes a paused stopping rule"),
)

#: decisions of the DSMB on a stopping rule (only "resume" lifts a pause)
DSMB_DECISION: Pairs = (
    ("resume", "resume enrolment and dosing"),
    ("resume_modified", "resume with a protocol modification"),
    ("continue_pause", "keep the pause"),
    ("terminate", "terminate the trial"),
)

#: action taken with the cell product because of an adverse event (CDISC SDTM AEACN, adapted to
#: a product given in one or a few administrations)
AE_ACTION: Pairs = (
    ("none", "dose not changed (no action with the product)"),
    ("infusion_interrupted", "infusion interrupted (drug interrupted)"),
    ("infusion_stopped", "infusion stopped, product withdrawn (drug withdrawn)"),
    ("dose_reduced", "dose reduced"),
    ("next_dose_delayed", "next administration delayed"),
    ("not_applicable", "not applicable (no administration ongoing or planned)"),
    ("unknown", "unknown"),
)

#: state of a data query (the query workflow of the eCRF; ``answered``: the site replied and
#: the raiser has to close or re-open it)
QUERY_STATUS: Pairs = (
    ("open", "open: waiting for the site's answer"),
    ("answered", "answered: waiting for the raiser to close or re-open it"),
    ("closed", "closed"),
)

#: how a data query came about (raised automatically by the store's checks, or by a person)
QUERY_ORIGIN: Pairs = (
    ("manual", "raised by a monitor or data manager"),
    ("soft_range", "value outside the expected range, confirmed at entry"),
    ("missing_item", "required item missing when the visit form was marked complete"),
    ("visit_window", "visit date outside the protocol window"),
)

#: the steps of a query's thread
QUERY_STEP: Pairs = (
    ("raised", "raised"),
    ("answered", "answered by the site"),
    ("closed", "closed"),
    ("reopened", "re-opened"),
    ("note", "note (e.g. the value changed again)"),
)

#: the forms of a visit a monitor verifies against source (source-data verification)
SDV_FORM: Pairs = (
    ("labs", "laboratory results"),
    ("clinical", "clinical assessment"),
)
