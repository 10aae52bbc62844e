"""The route table of the Django admin: every page of every registered model, who may open
and who may write it (the store's role matrix, :mod:`hepatrial.trials.services.permissions`),
and the world the walk runs in.

``tests/store/test_admin_walk.py`` walks every URL pattern of ``django.contrib.admin.site``
(each ModelAdmin's ``get_urls()`` and the site's own) × every identity of :data:`IDENTITIES`
× own/other site against it, and fails for a pattern that is not in :data:`PAGES` /
:data:`SITE_ROUTES`: a newly registered model, admin view or action cannot escape the walk.
**Add your admin here**: the model's label, the roles that may read, add, change and delete
it (the matrix's roles; ``admin`` is the Django superuser), how its objects belong to a site,
its actions, and in :func:`forms` what a well-formed add and change of it types.

World: sites S01 (the site of every site-scoped identity), S02 (another site) and S03 (no
records: the site a superuser deletes). Per site a dosed participant (A: K01/K02) with visits,
labs, a clinical assessment, a deviation, a lab-AE proposal, a serious adverse event with its
signed report and assessment, a harvest, a batch and its custody, and a lab and an adverse event
nothing refers to (what a data manager deletes); a participant with a batch at the bedside, not
given (B: K03/K04); one with a batch in QC, its gram stain not yet recorded (C: K05/K06); a
screened participant with consent (K07) and screened ones without (K08 at S01, K09 at S02); an
arm without participants, a concealed randomisation entry per site, a group, one row of each
django-axes table (of an account nobody signs in as).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hepatrial.trials.services.permissions import ALL_SITES_ROLES, ROLES, allowed
from tests.store.conftest import DAY0, ELIGIBLE, RELEASE_TESTS, enrol, released_batch

ONE = dt.timedelta(days=1)
PASSWORD = "Correct-horse-9-battery"
#: the day 0 of the participants of each site (S02's three weeks later: the sentinel rule)
DAY = {"S01": DAY0, "S02": DAY0 + 21 * ONE}
SITE = {"own": "S01", "other": "S02"}

Roles = frozenset[str]


def may(action: str) -> Roles:
    """The roles the permission matrix allows ``action``."""
    return frozenset(r for r in ROLES if allowed(action, r))


#: roles with the admin pages of the trial records (every account is staff; the sponsor and
#: the DSMB work on their safety reports through the CLI and have no record pages); ``admin``
#: is a superuser
RECORD_READERS: Roles = frozenset(
    {"coordinator", "investigator", "monitor", "data-manager", "qa", "auditor", "admin"})
ENTER: Roles = may("enter_data")
#: only a data manager deletes a record (entered in error, with a reason)
DELETERS: Roles = ENTER & {"data-manager"}
EVERYONE: Roles = may("view")
ADMIN: Roles = frozenset({"admin"})
NOBODY: Roles = frozenset()

#: the admin's kinds of page: the suffix of its URL name (``trials_visit_change``: change)
AUDITED_KINDS = ("changelist", "add", "change", "delete", "history", "history_form",
                 "redirect")
PLAIN_KINDS = ("changelist", "add", "change", "delete", "history", "redirect")


@dataclass(frozen=True)
class Page:
    """The admin of one model: who may read, add, change, delete it (roles of the matrix)."""

    label: str
    read: Roles
    add: Roles = NOBODY
    change: Roles = NOBODY
    delete: Roles = NOBODY
    #: how an object belongs to a site: ``participant`` (its participant's site), ``site``
    #: (the object is a site) or None (not site-scoped)
    scope: str | None = "participant"
    kinds: tuple[str, ...] = AUDITED_KINDS
    #: action name -> roles that may run it from the changelist
    actions: dict[str, Roles] = field(default_factory=dict)

    @property
    def app_label(self) -> str:
        return self.label.split(".")[0]

    @property
    def model_name(self) -> str:
        return self.label.split(".")[1]

    @property
    def url_prefix(self) -> str:
        return f"/admin/{self.app_label}/{self.model_name}/"

    def targets(self) -> tuple[str, ...]:
        """The sites whose objects are walked: both when some non-superuser role reads it."""
        return ("own", "other") if self.scope and (self.read | self.change) - ADMIN else ("own",)


PAGES: tuple[Page, ...] = (
    # participants and their records (write_action enter_data; Django pages of the role)
    Page("trials.participant", RECORD_READERS, ENTER, ENTER, DELETERS),
    Page("trials.consent", RECORD_READERS, ENTER, ENTER, DELETERS),
    Page("trials.eligibilityassessment", RECORD_READERS, ENTER),  # never edited
    Page("trials.visit", RECORD_READERS, NOBODY, ENTER, DELETERS),  # scheduled by enrolment
    Page("trials.labresult", RECORD_READERS, ENTER, ENTER, DELETERS),
    Page("trials.clinicalassessment", RECORD_READERS, ENTER, ENTER, DELETERS),
    Page("trials.protocoldeviation", RECORD_READERS, ENTER, ENTER, DELETERS),
    Page("trials.adverseevent", RECORD_READERS, ENTER, ENTER, DELETERS),
    # the cell product: every role sees it (its sites), its service's action writes it
    Page("trials.administration", EVERYONE, may("administer_product"),
         may("administer_product")),
    Page("trials.qcresult", EVERYONE, may("manage_product"), may("manage_product")),
    Page("trials.cellproductbatch", EVERYONE),
    Page("trials.harvest", EVERYONE),
    Page("trials.custodyevent", EVERYONE),
    # signed safety records, rule states, notifications, proposals: shown to superusers
    Page("trials.saereport", ADMIN),
    Page("trials.saeassessment", ADMIN),
    Page("trials.dsmbdecision", ADMIN, scope=None),
    Page("trials.stoppingrulestate", ADMIN, scope=None),
    Page("trials.safetynotification", ADMIN, scope=None),
    Page("trials.labaeproposal", ADMIN),
    # the trial: sites and arms (admin: manage_sites / install_protocol), memberships
    # (manage_accounts), the protocol, the concealed list and the ledger (superusers read)
    Page("trials.site", RECORD_READERS, may("manage_sites"), may("manage_sites"),
         may("manage_sites"), scope="site"),
    Page("trials.arm", RECORD_READERS, may("install_protocol"), may("install_protocol"),
         may("install_protocol"), scope=None),
    Page("trials.sitemembership", ADMIN, may("manage_accounts"), may("manage_accounts"),
         may("manage_accounts"), scope=None),
    Page("trials.trialconfig", ADMIN, scope=None),
    Page("trials.randomisationentry", ADMIN, scope=None),
    Page("trials.auditledger", ADMIN, scope=None, kinds=PLAIN_KINDS),
    # accounts: a reason for every change, never deleted (deactivated)
    Page("auth.user", ADMIN, may("manage_accounts"), may("manage_accounts"), scope=None,
         kinds=(*AUDITED_KINDS, "password")),
    Page("auth.group", ADMIN, may("manage_accounts"), may("manage_accounts"),
         may("manage_accounts"), scope=None, kinds=PLAIN_KINDS),
    # sign-in records of django-axes: shown; an unlock goes through `hepatrial user unlock`
    Page("axes.accessattempt", ADMIN, scope=None, kinds=PLAIN_KINDS),
    Page("axes.accesslog", ADMIN, scope=None, kinds=PLAIN_KINDS),
    Page("axes.accessfailurelog", ADMIN, scope=None, kinds=PLAIN_KINDS),
)

#: the admin site's own URLs (by name; ``catch_all``: its final catch-all pattern)
SITE_ROUTES = ("index", "login", "logout", "password_change", "password_change_done",
               "autocomplete", "jsi18n", "view_on_site", "app_list", "catch_all")


# ------------------------------------------------------------------------------ identities
@dataclass(frozen=True)
class Identity:
    """Who requests: the account's username (None: anonymous), its role in the matrix
    (None: none), the sites it acts on."""

    name: str
    username: str | None
    role: str | None
    sites: frozenset[str]

    def acts_on(self, which: str) -> bool:
        return SITE[which] in self.sites


BOTH = frozenset({"S01", "S02"})
IDENTITIES: tuple[Identity, ...] = (
    *(Identity(r, f"u_{r}", r, BOTH if r in ALL_SITES_ROLES else frozenset({"S01"}))
      for r in ROLES),
    Identity("coordinator@S02", "coord_s02", "coordinator", frozenset({"S02"})),
    # a superuser made without the store (no profile): the admin role
    Identity("superuser", "root", "admin", BOTH),
    Identity("staff without role", "staff_norole", None, frozenset()),
    Identity("anonymous", None, None, frozenset()),
)


# ------------------------------------------------------------------------------- the world
@dataclass
class World:
    """The walk's store: ``pk[(label, which)]`` the object of each page (``which``: own or
    other site; ``(label, which, "delete")`` when the object to delete is another one)."""

    pk: dict[tuple[str, ...], Any] = field(default_factory=dict)

    def obj(self, label: str, which: str, kind: str = "change") -> Any:
        return self.pk.get((label, which, kind), self.pk[(label, which)])


def build_world(services: Any) -> World:
    """Build the store described in the module docstring (password hashing: the caller's)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from hepatrial.trials.services import safety
    from tests.store._product import administer, allow_dosing, at, to_qa_review

    services.install_protocol("kharaziha2009")
    services.create_site(code="S02", name="second site")
    for ident in IDENTITIES:
        if ident.role is not None and ident.name != "superuser":
            services.create_user(username=ident.username, password=PASSWORD, role=ident.role,
                                 site_codes=["S02" if ident.sites == {"S02"} else "S01"],
                                 printed_name=f"User {ident.name}")
    services.create_user(username="inv_s02", password=PASSWORD, role="investigator",
                         site_codes=["S02"])
    User = get_user_model()
    User.objects.create_superuser("root", password=PASSWORD)
    User.objects.create_user("staff_norole", password=PASSWORD, is_staff=True)
    Group.objects.create(name="readers")
    plan = (("K01", "K03", "K05", "S01"), ("K02", "K04", "K06", "S02"))
    for a, _b, _c, site in plan:
        day = DAY[site]
        enrol(services, a, site, day)
        released_batch(services, f"B-{a}", a, day)  # weighs at D0 (visit done, clinical)
        administer(services, a, f"B-{a}", day)
        services.record_visit(participant=a, visit_code="W1", actual_date=day + 7 * ONE)
        for visit, value in (("D0", "30"), ("W1", "130")):
            services.record_lab(participant=a, visit_code=visit, analyte="alt", value=value,
                                unit="U/L")
        safety.propose_lab_adverse_events(a)
        services.record_deviation(participant=a, category="visit_window",
                                  description="visit out of window", date=day + 7 * ONE,
                                  visit_code="W1")
        services.record_lab(participant=a, visit_code="W1", analyte="creatinine",
                            value="1.0", unit="mg/dL")  # a lab nothing refers to
    later = {s: DAY[s] + 42 * ONE for s in DAY}
    no_gram = {k: v for k, v in RELEASE_TESTS.items() if k != "gram_stain"}
    for _a, b, c, site in plan:
        enrol(services, b, site, later[site])
        released_batch(services, f"B-{b}", b, later[site])
        allow_dosing(services, b, at(later[site], 10))
        enrol(services, c, site, later[site])
        to_qa_review(services, c, later[site], batch_id=f"B-{c}", results=no_gram,
                     submit=False)
    for a, _b, _c, site in plan:
        day = DAY[site]
        inv = "u_investigator" if site == "S01" else "inv_s02"
        ae = safety.record_adverse_event(
            participant=a, term="Fever", grade=3, onset_date=day + 3 * ONE, serious=True,
            seriousness_criteria=["hospitalisation"], relatedness_product="not_related",
            relatedness_procedure="not_related", action_taken="not_applicable",
            outcome="not_recovered", aware_local=f"{day + 3 * ONE} 10:00", user=inv)
        safety.report_sae(ae, kind="initial", narrative="initial report", user=inv,
                          password=PASSWORD, submitted=f"{day + 3 * ONE} 12:00")
        safety.assess_sae(ae, assessor="investigator", relatedness_product="not_related",
                          relatedness_procedure="not_related", comment="unrelated", user=inv,
                          password=PASSWORD)
        safety.record_adverse_event(  # an event nothing refers to
            participant=a, term="Headache", grade=1, onset_date=day + 5 * ONE,
            relatedness_product="not_related", relatedness_procedure="not_related",
            action_taken="not_applicable", outcome="recovered",
            resolution_date=day + 6 * ONE, user=inv)
    for pid, site, consent in (("K07", "S01", True), ("K08", "S01", False),
                               ("K09", "S02", False)):
        services.screen_participant(
            study_id=pid, site=site, sex="F", year_of_birth=1970, etiology="HCV",
            screening_date=DAY0, screening_data=ELIGIBLE)
        if consent:
            services.record_consent(participant=pid, version="1.0", date=DAY0)
    services.create_site(code="S03", name="site without records")
    _randomisation_and_sign_ins(services)
    return World(_objects())


def _randomisation_and_sign_ins(services: Any) -> None:
    """A concealed randomisation entry per site (audited rows of the system account) and one
    row of each django-axes table (its own, unaudited tables)."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.utils import timezone

    from hepatrial.trials.models import Arm, RandomisationEntry, RandomisationList, Site

    system = services.system_user()
    rl = RandomisationList(protocol_version="walk", seed=1, block_sizes=[2],
                           ratio={"A": 1}, created_at=timezone.now())
    rl.save(user=system)
    arm = Arm.objects.order_by("pk").first()
    Arm(code="X", label="arm without participants").save(user=system)
    for i, code in enumerate(("S01", "S02"), 1):
        RandomisationEntry(allocation_list=rl, site=Site.objects.get(code=code), sequence=i,
                           block=1, arm=arm).save(user=system)
    now = timezone.now()
    common = {"user_agent": "walk", "ip_address": "10.0.0.1", "username": "mallory",
              "http_accept": "text/html", "path_info": "/admin/login/", "attempt_time": now}
    AccessAttempt.objects.create(get_data="", post_data="", failures_since_start=2, **common)
    AccessLog.objects.create(**common)
    AccessFailureLog.objects.create(locked_out=False, **common)


def _objects() -> dict[tuple[str, ...], Any]:
    """The object of each page at the own (S01) and the other (S02) site."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from hepatrial.trials import models as m
    from hepatrial.trials.models import product as pm
    from hepatrial.trials.models import safety as sm

    out: dict[tuple[str, ...], Any] = {}
    for which, (a, c, screened) in (("own", ("K01", "K05", "K08")),
                                    ("other", ("K02", "K06", "K09"))):
        p = m.Participant.objects.get(study_id=a)
        ae = sm.AdverseEvent.objects.get(participant=p, serious=True)
        h = pm.Harvest.objects.get(participant=p)
        site = p.site
        found = {
            "trials.participant": p,
            "trials.consent": m.Consent.objects.get(participant=p),
            "trials.eligibilityassessment": m.EligibilityAssessment.objects.get(participant=p),
            "trials.visit": m.Visit.objects.get(participant=p, code="W1"),
            "trials.labresult": m.LabResult.objects.get(participant=p, visit__code="W1",
                                                        analyte="alt"),
            "trials.clinicalassessment": m.ClinicalAssessment.objects.get(participant=p),
            "trials.protocoldeviation": m.ProtocolDeviation.objects.get(participant=p),
            "trials.adverseevent": ae,
            "trials.administration": pm.Administration.objects.get(participant=p),
            "trials.qcresult": pm.QcResult.objects.get(batch__batch_id=f"B-{c}",
                                                       test="viability"),
            "trials.cellproductbatch": pm.CellProductBatch.objects.get(participant=p),
            "trials.harvest": h,
            "trials.custodyevent": pm.CustodyEvent.objects.filter(harvest=h).order_by(
                "seq").first(),
            "trials.saereport": sm.SAEReport.objects.get(adverse_event=ae),
            "trials.saeassessment": sm.SAEAssessment.objects.get(adverse_event=ae),
            "trials.labaeproposal": sm.LabAEProposal.objects.get(participant=p),
            "trials.site": site,
            "trials.randomisationentry": m.RandomisationEntry.objects.get(site=site),
        }
        for label, obj in found.items():
            assert obj is not None, (label, which)
            out[(label, which)] = obj.pk
        # what a data manager deletes: records nothing else refers to (protected otherwise)
        for label, obj in {
            "trials.participant": m.Participant.objects.get(study_id=screened),
            "trials.visit": m.Visit.objects.get(participant=p, code="W24"),
            "trials.labresult": m.LabResult.objects.get(participant=p, analyte="creatinine"),
            "trials.adverseevent": sm.AdverseEvent.objects.get(participant=p,
                                                               term="Headache"),
            "trials.site": m.Site.objects.get(code="S03"),
        }.items():
            out[(label, which, "delete")] = obj.pk
    User = get_user_model()
    for label, obj in {
        "trials.dsmbdecision": sm.DSMBDecision.objects.order_by("pk").first(),
        "trials.stoppingrulestate": sm.StoppingRuleState.objects.order_by("pk").first(),
        "trials.safetynotification": sm.SafetyNotification.objects.order_by("pk").first(),
        "trials.arm": m.Arm.objects.exclude(code="X").get(),
        "trials.sitemembership": m.SiteMembership.objects.get(user__username="u_monitor"),
        "trials.trialconfig": m.TrialConfig.objects.order_by("pk").first(),
        "trials.auditledger": m.AuditLedger.objects.order_by("seq").first(),
        "auth.user": User.objects.get(username="u_monitor"),
        "auth.group": Group.objects.get(name="readers"),
        "axes.accessattempt": AccessAttempt.objects.get(),
        "axes.accesslog": AccessLog.objects.get(),
        "axes.accessfailurelog": AccessFailureLog.objects.get(),
    }.items():
        assert obj is not None, label
        out[(label, "own")] = obj.pk
    out[("trials.arm", "own", "delete")] = m.Arm.objects.get(code="X").pk
    return out


# ------------------------------------------------------------------------------ the forms
Fill = Callable[[World, str], dict[str, Any]]


def forms() -> dict[tuple[str, str], Fill]:
    """``(label, kind) -> fill(world, which)``: the values a user types on the add or change
    form (over what the form shows); ``which`` is the site of the object (add: own)."""
    from django.contrib.auth import get_user_model

    from hepatrial.trials import models as m
    from hepatrial.trials.models import product as pm

    def participant(study_id: str) -> Any:
        return m.Participant.objects.get(study_id=study_id)

    def visit(study_id: str, code: str) -> Any:
        return m.Visit.objects.get(participant__study_id=study_id, code=code).pk

    def shifted(label: str, fname: str, days: int) -> Fill:
        def fill(w: World, which: str) -> dict[str, Any]:
            model = _model(label)
            value = getattr(model._base_manager.get(pk=w.obj(label, which)), fname)
            return {fname: (value + days * ONE).isoformat()}
        return fill

    def administration_add(w: World, which: str) -> dict[str, Any]:
        b = pm.CellProductBatch.objects.get(batch_id="B-K03")
        p = participant("K03")
        day = DAY["S01"] + 42 * ONE
        return {"participant": p.pk, "batch_id": b.batch_id, "scanned_coi": b.coi_identifier,
                "id_study_id": p.study_id, "id_year_of_birth": str(p.year_of_birth),
                "route": "portal_vein", "cells_total": "4e7", "cells_per_kg": "",
                "volume_ml": "10", "administered_at_0": day.isoformat(),
                "administered_at_1": "10:00:00", "operator": "nurse1",
                "dose_override_reason": ""}

    User = get_user_model()
    return {
        ("trials.participant", "add"): lambda w, _: {
            "study_id": "K90", "site": m.Site.objects.get(code="S01").pk, "sex": "M",
            "year_of_birth": "1961", "etiology": "HBV", "screening_date": DAY0.isoformat(),
            "screening_data": json.dumps(ELIGIBLE)},
        ("trials.participant", "change"): lambda w, _: {"year_of_birth": "1959"},
        ("trials.consent", "add"): lambda w, _: {
            "participant": participant("K08").pk, "version": "1.0",
            "date": DAY0.isoformat()},
        ("trials.consent", "change"): lambda w, which: {"version": "1.1"},
        ("trials.eligibilityassessment", "add"): lambda w, _: {
            "participant": participant("K07").pk, "assessed_on": DAY0.isoformat()},
        ("trials.visit", "change"): shifted("trials.visit", "actual_date", 1),
        ("trials.labresult", "add"): lambda w, _: {
            "participant": participant("K01").pk, "visit": visit("K01", "W1"),
            "analyte": "bilirubin", "value_as_entered": "1.2", "unit_as_entered": "mg/dL",
            "laboratory": "", "specimen_date": (DAY0 + 7 * ONE).isoformat()},
        ("trials.labresult", "change"): lambda w, _: {"value_as_entered": "131"},
        ("trials.clinicalassessment", "add"): lambda w, _: {
            "participant": participant("K01").pk, "visit": visit("K01", "W1"),
            "weight_kg": "79"},
        ("trials.clinicalassessment", "change"): lambda w, _: {"weight_kg": "81"},
        ("trials.protocoldeviation", "add"): lambda w, _: {
            "participant": participant("K01").pk, "visit": "", "category": "other",
            "description": "walk deviation", "date": (DAY0 + 8 * ONE).isoformat()},
        ("trials.protocoldeviation", "change"): lambda w, _: {
            "description": "visit out of window (corrected)"},
        ("trials.adverseevent", "add"): lambda w, _: {
            "participant": participant("K01").pk, "term": "Nausea", "grade": "1",
            "onset_date": (DAY0 + 2 * ONE).isoformat(), "relatedness_product": "not_related",
            "relatedness_procedure": "not_related", "action_taken": "not_applicable",
            "outcome": "recovered", "resolution_date": (DAY0 + 4 * ONE).isoformat()},
        ("trials.adverseevent", "change"): lambda w, _: {"outcome": "recovering"},
        ("trials.administration", "add"): administration_add,
        ("trials.administration", "change"): lambda w, _: {"operator": "nurse2"},
        ("trials.qcresult", "add"): lambda w, _: {
            "batch_ref": "B-K05", "test": "gram_stain", "result": "no organisms seen",
            "analyst": "analyst1", "tested_on": (DAY0 + 42 * ONE).isoformat()},
        ("trials.qcresult", "change"): lambda w, _: {"result": "93"},
        ("trials.site", "add"): lambda w, _: {"code": "S09", "name": "ninth site",
                                              "active": "on"},
        ("trials.site", "change"): lambda w, _: {"name": "renamed site"},
        ("trials.arm", "add"): lambda w, _: {"code": "B", "label": "second arm"},
        ("trials.arm", "change"): lambda w, _: {"label": "renamed arm"},
        ("trials.sitemembership", "add"): lambda w, _: {
            "user": User.objects.get(username="u_auditor").pk,
            "site": m.Site.objects.get(code="S02").pk, "role": "auditor"},
        ("trials.sitemembership", "change"): lambda w, _: {"role": "monitor"},
        ("auth.user", "add"): lambda w, _: {
            "username": "walk_new", "usable_password": "true",
            "password1": "Walk-new-account-77", "password2": "Walk-new-account-77"},
        ("auth.user", "change"): lambda w, _: {"first_name": "Renamed"},
        ("auth.user", "password"): lambda w, _: {
            "password1": "Walk-reset-password-88", "password2": "Walk-reset-password-88"},
        ("auth.group", "add"): lambda w, _: {"name": "walkers"},
        ("auth.group", "change"): lambda w, _: {"name": "readers (renamed)"},
    }


def _model(label: str) -> Any:
    from django.apps import apps

    return apps.get_model(label)
