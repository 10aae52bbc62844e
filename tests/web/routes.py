"""The route table of the eCRF: every URL of the ``web`` namespace, what it needs, and how to
address an object of the user's own site and of another site.

``tests/web/test_routes.py`` runs every route × every role × own/other site against it, and
fails for a route of the namespace that is not in :data:`ROUTES` (or :data:`PUBLIC`): a new
page cannot be added unchecked. **Add your routes here** (the query, SDV and signing pages
too): name, method, the permission action the view requires (``None``: any signed-in user),
and ``target`` - how to build the URL's kwargs for participant ``A1`` (site S01, the own site
of every site-scoped test user) or ``B1`` (site S02, another site).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: routes anyone may open (sign-in, sign-out)
PUBLIC = frozenset({"login", "logout"})

Target = Callable[[Any, str], dict[str, Any]]


def none(_world: Any, _site: str) -> dict[str, Any]:
    """A route that names no object."""
    return {}


def site(_world: Any, which: str) -> dict[str, Any]:
    """A site: S01 (own) or S02 (other)."""
    return {"code": "S01" if which == "own" else "S02"}


def participant(_world: Any, which: str) -> dict[str, Any]:
    """A participant: A1 (own site) or B1 (other site)."""
    return {"study_id": "A1" if which == "own" else "B1"}


def visit(_world: Any, which: str) -> dict[str, Any]:
    """The D0 visit of A1 or B1."""
    return {**participant(_world, which), "code": "D0"}


def history(world: Any, which: str) -> dict[str, Any]:
    """The history of a participant's status."""
    p = world.participant("A1" if which == "own" else "B1")
    return {**participant(world, which), "model": "participant", "pk": p.pk, "field": "status"}


def query(world: Any, which: str) -> dict[str, Any]:
    """A query on the D0 date of A1 or B1 (raised once per test by the data manager)."""
    cache = world.__dict__.setdefault("_route_queries", {})
    if which not in cache:
        from hepatrial.trials.services import queries

        p = world.participant("A1" if which == "own" else "B1")
        cache[which] = queries.raise_query(
            participant=p, model="visit", object_pk=p.visits.get(code="D0").pk,
            field="actual_date", text="Visit date per the source?",
            user=world.users["data-manager"]).pk
    return {"pk": cache[which]}


def adverse_event(world: Any, which: str) -> dict[str, Any]:
    """An adverse event of A1 or B1 (recorded once per test through the safety service)."""
    cache = world.__dict__.setdefault("_route_adverse_events", {})
    if which not in cache:
        from hepatrial.trials.services import safety

        p = world.participant("A1" if which == "own" else "B1")
        cache[which] = safety.record_adverse_event(
            participant=p, term="Fatigue", grade=1, onset_date=world.day0,
            relatedness_product="not_related", relatedness_procedure="not_related",
            action_taken="none", outcome="not_recovered").pk
    return {**participant(world, which), "pk": cache[which]}


def serious_adverse_event(world: Any, which: str) -> dict[str, Any]:
    """A serious adverse event of A1 or B1 (hospitalisation, the site aware an hour ago;
    recorded once per test through the safety service): its SAE reports are owed."""
    cache = world.__dict__.setdefault("_route_serious_events", {})
    if which not in cache:
        import datetime as dt

        from django.utils import timezone

        from hepatrial.trials.services import safety

        p = world.participant("A1" if which == "own" else "B1")
        cache[which] = safety.record_adverse_event(
            participant=p, term="Ascites", grade=3, onset_date=world.day0, serious=True,
            seriousness_criteria=["hospitalisation"], relatedness_product="not_related",
            relatedness_procedure="not_related", action_taken="not_applicable",
            outcome="not_recovered",
            aware_at=(timezone.now() - dt.timedelta(hours=1)).replace(microsecond=0)).pk
    return {**participant(world, which), "pk": cache[which]}


def batch(world: Any, which: str) -> dict[str, Any]:
    """A cell-product batch of A1 or B1, received at the facility (harvested three days
    before day 0 and registered, once per test, through the product service)."""
    cache = world.__dict__.setdefault("_route_batches", {})
    if which not in cache:
        import datetime as dt

        from tests.store._product import at, harvest

        sid = "A1" if which == "own" else "B1"
        day = world.day0 - dt.timedelta(days=3)
        h = harvest(world.services, sid, day)
        cache[which] = world.services.register_batch(
            participant=sid, coi=h.coi, batch_id=f"RT-{sid}", facility="GMP cell lab",
            received_at=at(day, 11), receipt_temperature_c=20.0).batch_id
    return {"batch_id": cache[which]}


@dataclass(frozen=True)
class Route:
    """One URL of the ``web`` namespace."""

    name: str
    method: str = "GET"
    action: str | None = "view"
    target: Target = none

    @property
    def scoped(self) -> bool:
        """True when the URL names an object of one site (another site's: 404)."""
        return self.target is not none


ROUTES: tuple[Route, ...] = (
    Route("home", action=None),
    Route("sites"),
    Route("site", target=site),
    Route("participants"),
    Route("screen_new", action="enter_data"),
    Route("screen_new", method="POST", action="enter_data"),
    Route("screen_evaluate", method="POST", action="enter_data"),
    Route("casebook", target=participant),
    Route("history", target=history),
    Route("screening", target=participant),
    Route("screening", method="POST", action="enter_data", target=participant),
    Route("evaluate", method="POST", action="enter_data", target=participant),
    Route("consent", method="POST", action="enter_data", target=participant),
    Route("assess", method="POST", action="enter_data", target=participant),
    Route("enrol", method="POST", action="enter_data", target=participant),
    Route("status", method="POST", action="enter_data", target=participant),
    Route("visit", target=visit),
    Route("visit", method="POST", action="enter_data", target=visit),
    Route("visit_scores", method="POST", target=visit),
    Route("visit_missed", method="POST", action="enter_data", target=visit),
    # queries, SDV, signing and locking (web/queries.py, web/sdv.py, web/signing.py)
    Route("queries"),
    Route("query", target=query),
    Route("query_answer", method="POST", action="answer_query", target=query),
    Route("query_close", method="POST", action="raise_query", target=query),
    Route("query_reopen", method="POST", action="raise_query", target=query),
    Route("query_new", action="raise_query", target=visit),
    Route("query_new", method="POST", action="raise_query", target=visit),
    Route("sdv", target=visit),
    Route("sdv", method="POST", action="verify_source", target=visit),
    Route("sign_visit", target=visit),
    Route("sign_visit", method="POST", action="sign", target=visit),
    Route("sign_casebook", target=participant),
    Route("sign_casebook", method="POST", action="sign", target=participant),
    Route("lock_visit", target=visit),
    Route("lock_visit", method="POST", action="lock", target=visit),
    Route("unlock_visit", method="POST", action="unlock", target=visit),
    Route("lock_casebook", target=participant),
    Route("lock_casebook", method="POST", action="lock", target=participant),
    Route("unlock_casebook", method="POST", action="unlock", target=participant),
    # adverse events (web/adverse_events.py)
    Route("adverse_events", target=participant),
    Route("adverse_event_new", action="enter_data", target=participant),
    Route("adverse_event_new", method="POST", action="enter_data", target=participant),
    Route("adverse_event_edit", action="enter_data", target=adverse_event),
    Route("adverse_event_edit", method="POST", action="enter_data", target=adverse_event),
    # the SAE chain's signed steps (web/sae.py)
    Route("sae_report", action="report_sae", target=serious_adverse_event),
    Route("sae_report", method="POST", action="report_sae", target=serious_adverse_event),
    Route("sae_report", action="report_sae", target=adverse_event),
    Route("sae_assess", action="assess_sae", target=serious_adverse_event),
    Route("sae_assess", method="POST", action="assess_sae", target=serious_adverse_event),
    Route("sae_assess", action="assess_sae", target=adverse_event),
    # the cell product (web/product.py)
    Route("products"),
    Route("product", target=batch),
    Route("product_qc", action="manage_product", target=batch),
    Route("product_qc", method="POST", action="manage_product", target=batch),
    Route("product_administer", action="administer_product", target=batch),
    Route("product_administer", method="POST", action="administer_product", target=batch),
)
