"""Worklist sections of safety and product release (issues 10/11/12).

* **SAE reporting clocks** — for the roles with a part in the SAE chain in the permission
  matrix (:mod:`hepatrial.trials.services.permissions`: ``report_sae`` investigator,
  ``assess_sae`` sponsor, ``dsmb_decide`` DSMB): every report a serious adverse event of the
  user's sites still owes (status ``pending`` or ``overdue``), with its deadline in the
  trial's time zone and on what basis (24 h initial report, 7- or 15-day SUSAR report, the
  SUSAR follow-up, the periodic follow-up until resolution: the protocol's ``[safety.reporting]``
  clocks), the time left or how long it is overdue, participant, term and grade. Overdue
  reports come first (the most overdue first), then the pending ones by deadline. A serious
  event without a clock (no awareness time recorded) is listed last with the reason. The
  clocks are :func:`hepatrial.trials.selectors.sae_cases`'s, read at the time of the request.
* **Batches awaiting QA release** — for the role that releases a batch (``release_product``:
  QA): every batch of the user's sites in QA review and not released, longest waiting
  first, with how long it has waited, its participant and site, the end of its shelf life
  (the protocol's product, from formulation) and a link to its batch page
  (:mod:`hepatrial.trials.web.product`).

Sites are the user's (:attr:`~hepatrial.trials.web.access.Access.site_ids`), applied in the
selectors: another site's event or batch is never read.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from django.urls import reverse
from django.utils import timezone

from hepatrial.trials import selectors_web, services
from hepatrial.trials.web.access import Access
from hepatrial.trials.web.worklist import SHOWN, Item, Section, register

__all__ = ["KIND_LABELS", "batch_release_section", "sae_clocks_section"]

#: what each report an SAE owes is called on the worklist (the kinds of
#: :func:`hepatrial.protocol.safety.sae_due_dates`)
KIND_LABELS: dict[str, str] = {
    "initial": "initial report",
    "susar_7_day": "SUSAR 7-day report",
    "susar_15_day": "SUSAR 15-day report",
    "susar_follow_up": "SUSAR follow-up report",
    "follow_up": "follow-up report",
}
#: the statuses of a report still owed (the others are submitted: on time or late)
OWED = ("overdue", "pending")
#: the actions whose roles see the SAE clocks
SAFETY_ACTIONS = ("report_sae", "assess_sae", "dsmb_decide")


def span(delta: _dt.timedelta) -> str:
    """A duration to the minute (rounded down): ``2 d 3 h``, ``5 h 7 min``, ``12 min``."""
    minutes = int(abs(delta).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


def _local(t: _dt.datetime, tz: Any) -> str:
    return f"{t.astimezone(tz):%Y-%m-%d %H:%M} {tz}"


def _plan() -> Any:
    """The protocol's safety plan (None when the protocol has none)."""
    return getattr(services.active_protocol(), "safety", None)


def _case_title(case: dict[str, Any]) -> str:
    return f"{case['id']} {case['participant_id']} · {case['term']}, grade {case['grade']}"


def _casebook(case: dict[str, Any]) -> str:
    """The participant's adverse-event page (the event with its reports, and the links to
    submit or assess them for those who may)."""
    return reverse("web:adverse_events", kwargs={"study_id": case["participant_id"]})


@register(order=5)
def sae_clocks_section(access: Access, on: _dt.date) -> Section | None:
    """The SAE reports owed at the user's sites, overdue first, with their clocks."""
    if not any(access.may(a) for a in SAFETY_ACTIONS):
        return None
    plan = _plan()
    now = timezone.now()
    cases = selectors_web.sae_clocks(plan, access.site_ids, now)
    tz = plan.reporting.tz if plan is not None else _dt.UTC
    owed = sorted(((r, c) for c in cases for r in c["reports"] if r["status"] in OWED),
                  key=lambda rc: (rc[0]["status"] != "overdue", rc[0]["deadline"],
                                  rc[1]["adverse_event"].pk))
    items = []
    for r, c in owed:
        left = r["deadline"] - now
        when = f"overdue by {span(left)}" if r["status"] == "overdue" else f"{span(left)} left"
        kind = KIND_LABELS.get(r["kind"], r["kind"].replace("_", " "))
        items.append(Item(_case_title(c), _casebook(c),
                          f"{kind} due {_local(r['deadline'], tz)} ({r['basis']}) · {when}",
                          r["status"], "bad" if r["status"] == "overdue" else "warn"))
    items += [Item(_case_title(c), _casebook(c), f"no reporting clock: {c['problem']}",
                   "no clock", "warn") for c in cases if c["problem"]]
    total = len(items)
    if total > SHOWN:
        items = [*items[:SHOWN], Item(f"{total - SHOWN} more SAE report(s)", "",
                                      "listed by `hepatrial sae list`", "more", "info")]
    return Section("sae_clocks", "Serious adverse events: reports due", items,
                   "No serious adverse event report is due.", total=total)


@register(order=6)
def batch_release_section(access: Access, on: _dt.date) -> Section | None:
    """For QA: the batches of the user's sites in QA review, longest waiting first."""
    if not access.may("release_product"):
        return None
    product = getattr(services.active_protocol(), "product", None)
    now = timezone.now()
    batches = selectors_web.batches_awaiting_release(access.site_ids)
    items = []
    for b in batches[:SHOWN]:
        parts = []
        if b["in_review_since"] is not None:
            parts.append(f"in QA review since {b['in_review_since']:%Y-%m-%d %H:%M} UTC "
                         f"({span(now - b['in_review_since'])})")
        expiry = (product.expiry(b["formulated_at"])
                  if product is not None and b["formulated_at"] is not None else None)
        if expiry is not None:
            parts.append(f"shelf life {'ended' if expiry <= now else 'ends'} "
                         f"{expiry:%Y-%m-%d %H:%M} UTC")
        expired = expiry is not None and expiry <= now
        items.append(Item(f"{b['batch_id']} · {b['participant']} ({b['site']})",
                          reverse("web:product", kwargs={"batch_id": b["batch_id"]}),
                          " · ".join(parts), "shelf life ended" if expired else "to release",
                          "bad" if expired else "warn"))
    if len(batches) > SHOWN:
        items.append(Item(f"{len(batches) - SHOWN} more batch(es) in QA review",
                          reverse("web:products") + "?state=qa_review",
                          "listed on the products page", "more", "info"))
    return Section("batch_release", "Batches awaiting QA release", items,
                   "No batch is waiting for release.", total=len(batches))
