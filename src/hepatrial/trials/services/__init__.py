"""Write operations on the trial store (HackSoft "services"). Every write goes through here.

One module per sub-domain (``protocol``, ``accounts``, ``participants``, ``visits``,
``measurements``, ``product``, ``safety``); this package re-exports their public names.

Conventions for every function:

* keyword-only arguments; ``user`` is the acting Django user (``None`` → the ``system`` user,
  used by the CLI and by imports unless ``--user`` is given). It becomes ``history_user``.
* a change to an existing record needs ``reason`` (non-empty; stored as
  ``history_change_reason``) — :class:`~hepatrial.trials.base.ChangeReasonRequired` otherwise.
* each call is one transaction: the record, its history rows and their audit-ledger entries
  are written together or not at all.
* bad input raises :class:`StoreError` (a ``ValueError``) with a message naming the
  participant, visit, field and value.

Participants, visits and arms may be passed as model instances or by their codes
(``study_id``, visit code, site code).

Several writes in one transaction (one eCRF save) may run inside :func:`unit_of_work`
(:mod:`hepatrial.trials.audit.unit`): the ledger is locked once and the lock, site-membership
and visit reads each write's checks repeat are read once; every check still runs.
"""

from __future__ import annotations

from hepatrial.trials.audit.actors import SYSTEM_USERNAME, system_user
from hepatrial.trials.audit.unit import unit_of_work
from hepatrial.trials.base import ChangeReasonRequired
from hepatrial.trials.services._common import StoreError
from hepatrial.trials.services.accounts import (
    add_site_membership,
    change_role,
    create_site,
    create_user,
    reactivate_user,
)
from hepatrial.trials.services.measurements import (
    CLINICAL_SIGNS,
    canonical_lab,
    check_clinical,
    check_lab,
    record_clinical,
    record_lab,
    update_clinical,
    update_lab,
)
from hepatrial.trials.services.participants import (
    assess_eligibility,
    change_status,
    check_consent,
    check_eligibility,
    check_enrolment,
    check_participant,
    check_participant_change,
    enrol_participant,
    record_consent,
    screen_participant,
    update_consent,
    update_participant,
)
from hepatrial.trials.services.permissions import (
    PERMISSIONS,
    require_permission,
    role_of,
)
from hepatrial.trials.services.product import (
    ProductStepRefused,
    check_administration,
    check_qc_result,
    complete_manufacture,
    destroy_batch,
    dispatch_batch,
    investigate_batch,
    quarantine_batch,
    receive_at_bedside,
    record_administration,
    record_harvest,
    record_manufacturing_step,
    record_observation,
    record_qc_result,
    record_qc_results,
    register_batch,
    release_batch,
    release_batch_exceptionally,
    release_batches,
    resume_batch,
    return_batch,
    start_manufacture,
    submit_for_review,
    update_administration,
    update_qc_result,
)
from hepatrial.trials.services.protocol import (
    active_protocol,
    generate_randomisation,
    install_protocol,
)
from hepatrial.trials.services.safety import (
    check_adverse_event,
    record_adverse_event,
    update_adverse_event,
)
from hepatrial.trials.services.signing import (
    active_locks,
    lock,
    sign,
    signature_status,
    signatures,
    unlock,
)
from hepatrial.trials.services.visits import (
    check_deviation,
    check_visit_change,
    check_visit_date,
    mark_visit_not_done,
    record_deviation,
    record_visit,
    schedule_visits,
    update_deviation,
    update_visit,
)

__all__ = [
    "CLINICAL_SIGNS",
    "PERMISSIONS",
    "SYSTEM_USERNAME",
    "ChangeReasonRequired",
    "ProductStepRefused",
    "StoreError",
    "active_locks",
    "active_protocol",
    "add_site_membership",
    "assess_eligibility",
    "canonical_lab",
    "change_role",
    "change_status",
    "check_administration",
    "check_adverse_event",
    "check_clinical",
    "check_consent",
    "check_deviation",
    "check_eligibility",
    "check_enrolment",
    "check_lab",
    "check_participant",
    "check_participant_change",
    "check_qc_result",
    "check_visit_change",
    "check_visit_date",
    "complete_manufacture",
    "create_site",
    "create_user",
    "destroy_batch",
    "dispatch_batch",
    "enrol_participant",
    "generate_randomisation",
    "install_protocol",
    "investigate_batch",
    "lock",
    "mark_visit_not_done",
    "quarantine_batch",
    "reactivate_user",
    "receive_at_bedside",
    "record_administration",
    "record_adverse_event",
    "record_clinical",
    "record_consent",
    "record_deviation",
    "record_harvest",
    "record_lab",
    "record_manufacturing_step",
    "record_observation",
    "record_qc_result",
    "record_qc_results",
    "record_visit",
    "register_batch",
    "release_batch",
    "release_batch_exceptionally",
    "release_batches",
    "require_permission",
    "resume_batch",
    "return_batch",
    "role_of",
    "schedule_visits",
    "screen_participant",
    "sign",
    "signature_status",
    "signatures",
    "start_manufacture",
    "submit_for_review",
    "system_user",
    "unit_of_work",
    "unlock",
    "update_administration",
    "update_adverse_event",
    "update_clinical",
    "update_consent",
    "update_deviation",
    "update_lab",
    "update_participant",
    "update_qc_result",
    "update_visit",
]
