"""Who may do what: the role/permission matrix of the trial store, in one place.

21 CFR 11.10(d),(g) (access limited to authorised individuals; authority checks before signing,
changing records or operating the system) and ICH E6(R3) 4.3.8 (permissions follow duties):
the services check :func:`require_permission` themselves, so a page, an import and a script
get the same answer.

A user's role is stored in :class:`~hepatrial.trials.models.UserProfile` (audited; roles are
:data:`hepatrial.vocab.ROLES`). Site-scoped roles act only on participants of the sites they
are a member of (:class:`~hepatrial.trials.models.SiteMembership`); the roles in
:data:`ALL_SITES_ROLES` act on every site. The built-in ``system`` account (CLI and import
writes without ``--user``) may do everything except the actions in :data:`PERSONAL_ACTIONS`,
which need a named person (a lock, an unlock and an e-signature are attributable acts).

Accounts without a profile (made before roles existed): a superuser counts as ``admin``, an
account with site memberships has the role stored on its memberships (``coordinator``).
"""

from __future__ import annotations

from typing import Any

from hepatrial import vocab
from hepatrial.errors import PermissionDenied
from hepatrial.trials.audit.actors import SYSTEM_USERNAME
from hepatrial.trials.audit.unit import remembered
from hepatrial.trials.models import Participant, Site, SiteMembership
from hepatrial.trials.services._common import _participant, _site

__all__ = [
    "ACTIONS",
    "ALL_SITES_ROLES",
    "PERMISSIONS",
    "PERSONAL_ACTIONS",
    "ROLES",
    "SITE_ROLES",
    "allowed",
    "require_permission",
    "role_of",
    "site_ids_of",
]

ROLES: tuple[str, ...] = vocab.codes(vocab.ROLES)

#: roles that act on every site; every other role only on its sites' participants
ALL_SITES_ROLES: frozenset[str] = frozenset(
    {"admin", "data-manager", "auditor", "sponsor", "dsmb"}
)
SITE_ROLES: frozenset[str] = frozenset(ROLES) - ALL_SITES_ROLES

#: action -> (roles allowed, one-line description). The one matrix every service uses.
PERMISSIONS: dict[str, tuple[frozenset[str], str]] = {
    "view": (frozenset(ROLES), "read the records of a participant"),
    "enter_data": (
        frozenset({"coordinator", "investigator", "data-manager"}),
        "enter and correct participant data: screening, consent, eligibility, enrolment, "
        "visits, labs, clinical assessments, deviations, adverse events",
    ),
    "administer_product": (
        frozenset({"coordinator", "investigator"}),
        "record a cell-product administration (infusion)",
    ),
    "manage_product": (
        frozenset({"qa", "data-manager"}),
        "register a cell-product batch and record its release tests",
    ),
    "release_product": (frozenset({"qa"}), "release a cell-product batch"),
    "import_data": (frozenset({"data-manager", "admin"}), "import data files"),
    "verify_source": (
        frozenset({"monitor", "data-manager"}),
        "verify source data and raise queries",
    ),
    "raise_query": (
        frozenset({"monitor", "data-manager"}),
        "raise a data query on any field, and close or re-open the queries they raised (and "
        "the automatic ones)",
    ),
    "answer_query": (
        frozenset({"coordinator", "investigator"}),
        "answer the data queries of their sites' participants",
    ),
    "lock": (frozenset({"data-manager", "admin"}), "lock a visit, a casebook or the trial"),
    "unlock": (
        frozenset({"data-manager", "admin"}),
        "unlock a visit, a casebook or the trial (with a reason)",
    ),
    "sign": (
        frozenset({"investigator"}),
        "e-sign a visit or a casebook (21 CFR 11.50; password re-entered)",
    ),
    "view_audit": (
        frozenset({"monitor", "data-manager", "qa", "auditor", "admin", "investigator"}),
        "read the audit trail and the signatures",
    ),
    "manage_accounts": (frozenset({"admin"}), "add accounts, change roles, reactivate"),
    "manage_sites": (frozenset({"admin"}), "add sites"),
    "install_protocol": (frozenset({"admin"}), "install or amend the protocol"),
    "report_sae": (
        frozenset({"investigator"}),
        "sign an SAE report or the investigator's causality assessment (password re-entered)",
    ),
    "assess_sae": (
        frozenset({"sponsor"}),
        "sign the sponsor's SAE causality, expectedness and SUSAR assessment and the "
        "expedited SUSAR reports (password re-entered)",
    ),
    "dsmb_decide": (
        frozenset({"dsmb"}),
        "sign a DSMB decision on a stopping rule, e.g. resume (password re-entered)",
    ),
    "review_lab_ae": (
        frozenset({"investigator"}),
        "confirm or dismiss (with a reason) an adverse event proposed from a lab grade",
    ),
}

ACTIONS: tuple[str, ...] = tuple(PERMISSIONS)

#: actions the system account may not do: they need a named person with a password
PERSONAL_ACTIONS: frozenset[str] = frozenset(
    {"lock", "unlock", "sign", "report_sae", "assess_sae", "dsmb_decide", "review_lab_ae"}
)


def _is_system(user: Any) -> bool:
    return user is not None and user.get_username() == SYSTEM_USERNAME


def role_of(user: Any) -> str | None:
    """The user's role (``None``: no role, so no permission); ``"system"`` for the system
    account."""
    if user is None:
        return None
    if _is_system(user):
        return "system"
    profile = getattr(user, "trial_profile", None) if user.pk is not None else None
    if profile is not None:
        return str(profile.role)
    if user.is_superuser:
        return "admin"
    roles = sorted(
        set(SiteMembership.objects.filter(user=user).values_list("role", flat=True))
    )
    return roles[0] if len(roles) == 1 and roles[0] in ROLES else None


def site_ids_of(user: Any) -> set[int]:
    """Ids of the sites the user acts on (every site for all-sites roles and the system)."""
    role = role_of(user)
    if role is None:
        return set()
    if role == "system" or role in ALL_SITES_ROLES:
        return set(Site.objects.values_list("pk", flat=True))
    return set(SiteMembership.objects.filter(user=user).values_list("site_id", flat=True))


def allowed(action: str, role: str | None) -> bool:
    """Pure: may ``role`` do ``action`` (ignoring sites)? Unknown actions raise ``KeyError``."""
    roles, _ = PERMISSIONS[action]
    if role == "system":
        return action not in PERSONAL_ACTIONS
    return role in roles


def require_permission(
    user: Any,
    action: str,
    participant: Participant | str | None = None,
    *,
    site: Site | str | None = None,
) -> str:
    """Raise :class:`~hepatrial.errors.PermissionDenied` unless ``user`` may do ``action``
    (on ``participant``'s site, or on ``site``). Returns the user's role.

    ``user`` is a Django user (``None`` is refused: services pass the acting user, the system
    account for CLI/import writes). A deactivated account may do nothing (the system account
    is inactive by design: it cannot log in, but it acts for the CLI).
    """
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    if user is None:
        raise PermissionDenied(f"{action}: no acting user")
    name = user.get_username()
    role = role_of(user)
    if role == "system":
        if action in PERSONAL_ACTIONS:
            raise PermissionDenied(
                f"{action}: the system account cannot {action}; a named user must "
                f"(--user NAME; roles allowed: {', '.join(sorted(PERMISSIONS[action][0]))})"
            )
        return role
    if not user.is_active:
        raise PermissionDenied(f"{action}: account {name!r} is deactivated")
    if role is None:
        raise PermissionDenied(f"{action}: account {name!r} has no role in the trial")
    if not allowed(action, role):
        raise PermissionDenied(
            f"{action}: user {name!r} is {role}; only "
            f"{', '.join(sorted(PERMISSIONS[action][0]))} may "
            f"{PERMISSIONS[action][1].split(':')[0]}"
        )
    if role in ALL_SITES_ROLES:
        return role
    site_id = _site_id(participant, site)
    if site_id is None:
        if participant is not None or site is not None:
            return role  # pragma: no cover - _site_id raises for unknown ones
        raise PermissionDenied(
            f"{action}: user {name!r} is {role}, which acts on its sites' participants only"
        )
    if not _member(user, site_id):
        code = Site.objects.filter(pk=site_id).values_list("code", flat=True).first()
        what = f"participant {participant}" if participant is not None else f"site {code}"
        raise PermissionDenied(
            f"{action}: user {name!r} ({role}) is not a member of site {code} ({what})"
        )
    return role


def _member(user: Any, site_id: int) -> bool:
    """Whether ``user`` is a member of site ``site_id`` (inside a unit of work, e.g. one eCRF
    save, read once per user and site until the unit writes a membership)."""
    return remembered(
        (SiteMembership,), ("member", user.pk, site_id),
        lambda: SiteMembership.objects.filter(user=user, site_id=site_id).exists())


def _site_id(participant: Participant | str | None, site: Site | str | None) -> int | None:
    if participant is not None:
        return int(_participant(participant).site_id)
    if site is not None:
        return int(_site(site).pk)
    return None
