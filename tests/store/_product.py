"""Helpers of the product tests: drive a batch through its lifecycle with the real services.

Times are UTC (aware). A batch made by :func:`to_qa_review` was harvested two weeks before
``day``, manufactured in between, formulated at 07:00 on ``day`` and submitted for review at
08:00; :func:`release` releases it at 08:30 (a QA user e-signs, password re-entered);
:func:`to_bedside` dispatches it at 09:00 and receives it at the bedside at 09:30 with a
transport log at 5 °C; :func:`administer` gives it at 10:00 (within the 6 h shelf life).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

#: release-test results meeting the kharaziha2009 release specification (synthetic)
RELEASE_TESTS: dict[str, Any] = {
    "cd73": 98.5, "cd90": 99.1, "cd105": 97.0, "cd45": 0.4, "cd34": 0.6, "cd14_or_cd11b": 0.8,
    "cd79a_or_cd19": 0.3, "hla_dr": 1.2, "viability": 92.0, "sterility": "no growth",
    "endotoxin": 0.1, "mycoplasma": "negative", "gram_stain": "no organisms seen",
    "cell_count": 40e6,
}  # fmt: skip
#: in-process control results meeting the kharaziha2009 process (synthetic)
STEPS: dict[str, dict[str, Any]] = {
    "isolation": {"viability": 88.0},
    "expansion": {"passage": 3, "population_doublings": 12.5, "confluence": 80.0},
    "harvest": {"cell_count": 45e6, "viability": 91.0},
    "formulation": {},
}
QA_PASSWORD = "quality assured twice"
INV_PASSWORD = "investigator signs here"
WEIGHT_KG = "80"


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """``day`` at ``hour:minute`` UTC."""
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def qa_user(services: Any, name: str = "qa1", site: str = "S01") -> Any:
    """A QA account of ``site`` (made once)."""
    from django.contrib.auth import get_user_model

    u = get_user_model().objects.filter(username=name).first()
    if u is None:
        u = services.create_user(username=name, password=QA_PASSWORD, site_codes=[site],
                                 role="qa", printed_name=f"QA {name}")
    return u


def investigator(services: Any, name: str = "inv1", site: str = "S01") -> Any:
    """An investigator account of ``site`` (made once)."""
    from django.contrib.auth import get_user_model

    u = get_user_model().objects.filter(username=name).first()
    if u is None:
        u = services.create_user(username=name, password=INV_PASSWORD, site_codes=[site],
                                 role="investigator", printed_name=f"Dr {name}")
    return u


def weigh(services: Any, participant: str, day: dt.date, kg: str = WEIGHT_KG) -> None:
    """Make sure a weight is recorded on or before ``day`` (at visit D0 when none is)."""
    from hepatrial.trials.models import ClinicalAssessment, Participant, Visit

    p = Participant.objects.get(study_id=participant)
    if ClinicalAssessment.objects.filter(participant=p, weight_kg__isnull=False,
                                         visit__actual_date__lte=day).exists():
        return
    v = Visit.objects.get(participant=p, code="D0")
    if v.actual_date is None:
        services.record_visit(participant=participant, visit_code="D0",
                              actual_date=min(day, p.enrolment_date))
    c = ClinicalAssessment.objects.filter(participant=p, visit__code="D0").first()
    if c is None:
        services.record_clinical(participant=participant, visit_code="D0", weight_kg=kg)
    else:
        services.update_clinical(c, weight_kg=kg)


def harvest(services: Any, participant: str, day: dt.date, **kw: Any) -> Any:
    """A harvest on ``day`` 08:00 (60 mL of marrow)."""
    values = {"collected_at": at(day, 8), "operator": "Dr Aspirate", "volume_ml": "60",
              "anticoagulant_lot": "HEP-2008-01", "container": "50 mL syringe x2",
              "transport": "insulated box 15-25 °C", "collection_site": "iliac crest", **kw}
    return services.record_harvest(participant=participant, **values)


def to_qa_review(services: Any, participant: str, day: dt.date, batch_id: str | None = None,
                 results: dict[str, Any] | None = None, steps: dict[str, Any] | None = None,
                 operator: str = "tech1", submit: bool = True) -> Any:
    """Harvest, register, manufacture, QC and (``submit``) submit a batch; the batch."""
    weigh(services, participant, day)
    h0 = day - dt.timedelta(days=14)
    h = harvest(services, participant, h0)
    b = services.register_batch(participant=participant, coi=h.coi, batch_id=batch_id,
                                facility="GMP cell lab", received_at=at(h0, 11),
                                receipt_temperature_c=20.0)
    services.start_manufacture(b, at=at(h0, 12))
    for i, (code, controls) in enumerate((steps or STEPS).items()):
        start = at(h0, 13) + dt.timedelta(days=3 * i)
        end = at(day, 6, 30) if code == "formulation" else start + dt.timedelta(days=2)
        services.record_manufacturing_step(
            b, step=code, started_at=start, completed_at=end, operator=operator,
            reagents=[{"name": "alpha-MEM", "lot": f"M-{i}"}, {"name": "FBS", "lot": "F-7"}],
            controls=controls)
    services.complete_manufacture(b, formulated_at=at(day, 7))
    for test, value in (RELEASE_TESTS if results is None else results).items():
        services.record_qc_result(b, test=test, result=value, analyst="analyst1",
                                  tested_on=day)
    if submit:
        services.submit_for_review(b, at=at(day, 8))
    return b


def release(services: Any, batch: Any, day: dt.date, user: str | None = None) -> Any:
    """QA release at 08:30, e-signed by a QA user of the participant's site (``qa_S01``, ...;
    made once)."""
    from hepatrial.trials.models.product import CellProductBatch

    bid = getattr(batch, "batch_id", batch)
    site = CellProductBatch.objects.select_related("participant__site").get(
        batch_id=bid).participant.site.code
    name = user or f"qa_{site}"
    qa_user(services, name, site)
    return services.release_batch(bid, user=name, password=QA_PASSWORD,
                                  released_at=at(day, 8, 30))


def to_bedside(services: Any, batch: Any, day: dt.date, readings: list[Any] | None = None
               ) -> Any:
    """Dispatch at 09:00 and receive at the bedside at 09:30 (logger at 5 °C)."""
    from hepatrial.trials.models.product import CellProductBatch

    bid = getattr(batch, "batch_id", batch)
    coi = CellProductBatch.objects.get(batch_id=bid).coi_identifier
    services.dispatch_batch(bid, scanned_coi=coi, at=at(day, 9), location="GMP cell lab",
                            temperature_c=5.0)
    return services.receive_at_bedside(
        bid, scanned_coi=coi, at=at(day, 9, 30), location="ward 3",
        readings=readings if readings is not None else [(at(day, 9, 5), 5.0),
                                                         (at(day, 9, 25), 5.5)])


def ready_batch(services: Any, batch_id: str | None, participant: str, day: dt.date) -> Any:
    """A batch received at the bedside on ``day``, ready to be given."""
    b = to_qa_review(services, participant, day, batch_id=batch_id)
    release(services, b, day)
    return to_bedside(services, b, day)


def identifiers_of(participant: str) -> dict[str, str]:
    """The two patient identifiers on the participant's record."""
    from hepatrial.trials.models import Participant

    p = Participant.objects.get(study_id=participant)
    return {"study_id": p.study_id, "year_of_birth": str(p.year_of_birth)}


DSMB_PASSWORD = "monitoring board member"


def allow_dosing(services: Any, participant: str, when: dt.datetime | None = None) -> None:
    """When only the sentinel rule pauses dosing of ``participant`` at ``when`` (default now;
    the previous participant's safety data not reviewed yet), record that review: a signed
    DSMB decision ``resume`` on the rule (what the protocol says the review is), dated 15
    minutes before ``when`` (the gate counts a review between the previous dose and this
    one)."""
    from django.contrib.auth import get_user_model

    from hepatrial.trials.services import safety

    pause = safety.dosing_pause(participant, at=when)
    if pause is None or pause.rule != "SR-SENTINEL":
        return
    if not get_user_model().objects.filter(username="dsmb1").exists():
        services.create_user(username="dsmb1", password=DSMB_PASSWORD, role="dsmb")
    safety.resume_stopping_rule("SR-SENTINEL", decision="previous participant's safety data "
                                "reviewed: the next may be dosed", user="dsmb1",
                                password=DSMB_PASSWORD,
                                at=None if when is None else when - dt.timedelta(minutes=15))


def administer(services: Any, participant: str, batch_id: str, day: dt.date,
               cells: float = 40e6, route: str = "portal_vein", review: bool = True,
               **kw: Any) -> Any:
    """Give the batch at 10:00 on ``day`` through the dosing gate (``review``: record the
    sentinel review first when it is due, :func:`allow_dosing`)."""
    from hepatrial.trials.models.product import CellProductBatch

    if review:
        allow_dosing(services, participant, at(day, 10))
    coi = CellProductBatch.objects.get(batch_id=batch_id).coi_identifier
    values = {"participant": participant, "batch_id": batch_id, "scanned_coi": coi,
              "identifiers": identifiers_of(participant), "route": route,
              "cells_total": cells, "volume_ml": 10, "administered_at": at(day, 10),
              "operator": "nurse1", **kw}
    return services.record_administration(**values)
