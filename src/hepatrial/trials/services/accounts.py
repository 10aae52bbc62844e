"""Sites, user accounts, roles, site memberships, passwords, sign-in records and lockouts,
and the password check of an e-signature.

Accounts, roles and memberships are audited records (ICH E6(R3) 4.2.2(a), 4.3.8): the user
model has a ledgered history whose rows also hold a fingerprint of the password hash and the
account's permissions and groups (:mod:`hepatrial.trials.models.audit`), and the role is a
:class:`~hepatrial.trials.models.UserProfile` (audited like every trial record). Password
changes and resets go through :func:`change_password` (a reason is required; the admin's
password forms and ``hepatrial user password`` use it); every sign-in attempt, lockout and
unlock is a :class:`~hepatrial.trials.models.LoginEvent` (:func:`record_login_event`,
:func:`unlock_account`; 21 CFR 11.300(d)). Who may do what is :mod:`.permissions`
(re-exported here: ``require_permission``, ``role_of``, ``PERMISSIONS``).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from hepatrial.errors import AuthenticationFailed, NotFoundError, PermissionDenied
from hepatrial.trials.audit.base import require_reason
from hepatrial.trials.audit.chain import lock_ledger
from hepatrial.trials.models import (
    LoginEvent,
    Site,
    SiteMembership,
    UserProfile,
)
from hepatrial.trials.services._common import (
    StoreError,
    _site,
    _user,
)
from hepatrial.trials.services.permissions import (
    ACTIONS,
    ALL_SITES_ROLES,
    PERMISSIONS,
    PERSONAL_ACTIONS,
    ROLES,
    SITE_ROLES,
    allowed,
    require_permission,
    role_of,
    site_ids_of,
)

__all__ = [
    "ACTIONS",
    "ALL_SITES_ROLES",
    "MAX_FAILED_SIGNATURES",
    "PERMISSIONS",
    "PERSONAL_ACTIONS",
    "ROLES",
    "SITE_ROLES",
    "account",
    "acting_user",
    "add_site_membership",
    "allowed",
    "change_password",
    "change_role",
    "check_signing_password",
    "create_site",
    "create_user",
    "printed_name_of",
    "reactivate_user",
    "record_login_event",
    "require_permission",
    "role_of",
    "site_ids_of",
    "unlock_account",
]

#: consecutive wrong passwords given to sign before the account is deactivated (11.300(d))
MAX_FAILED_SIGNATURES = 5

#: admin pages: Django model permissions per role (prefixes on the participant-level models)
_RECORD_MODELS = (
    "participant",
    "consent",
    "eligibilityassessment",
    "visit",
    "protocoldeviation",
    "labresult",
    "clinicalassessment",
    "administration",
    "adverseevent",
    "cellproductbatch",
)
_ROLE_PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "coordinator": (r"^(view|add|change)_", _RECORD_MODELS),
    "investigator": (r"^(view|add|change)_", _RECORD_MODELS),
    # data managers clean data: they may also delete a record entered in error (with a reason)
    "data-manager": (r"^(view|add|change|delete)_", _RECORD_MODELS),
    "monitor": (r"^view_", _RECORD_MODELS),
    "auditor": (r"^view_", _RECORD_MODELS),
    "qa": (r"^view_", _RECORD_MODELS),
}


def account(username: Any) -> Any:
    """The user account named ``username`` (or the account itself); :class:`NotFoundError`."""
    User = get_user_model()
    if isinstance(username, User):
        return username
    user = User.objects.filter(username=str(username)).first()
    if user is None:
        raise NotFoundError(f"no account {username!r}")
    return user


def acting_user(user: Any) -> Any:
    """The acting account: a user, a username, or ``None`` for the system account."""
    return account(user) if isinstance(user, str) else _user(user)


def create_site(*, code: str, name: str = "", user: Any = None) -> Site:
    """Create a site (centre). Needs ``manage_sites`` (admin; the system account)."""
    acting = acting_user(user)
    require_permission(acting, "manage_sites")
    code = str(code).strip()
    if not code:
        raise StoreError("site: code is empty")
    if Site.objects.filter(code=code).exists():
        raise StoreError(f"site {code!r} already exists")
    site = Site(code=code, name=str(name or "").strip())
    site.save(user=acting)
    return site


def create_user(
    *,
    username: str,
    password: str | None,
    site_codes: list[str] | tuple[str, ...] = (),
    superuser: bool = False,
    role: str | None = None,
    printed_name: str = "",
    user: Any = None,
) -> Any:
    """Create an account with a role (:data:`ROLES`), its sites and the printed name its
    e-signatures show (default: the username).

    ``role`` defaults to ``admin`` for ``superuser=True``, else ``coordinator``; ``admin`` is a
    Django superuser (every admin page). Site-scoped roles (:data:`SITE_ROLES`) need at least
    one site; all-sites roles may be given sites too. Every account is staff (admin pages, as
    its role's Django permissions allow); only a data manager may delete a record (with a reason). The password is
    validated by Django's password validators (``None``: unusable password, no sign-in).
    Needs ``manage_accounts`` (admin; the system account). Audited: the account, its profile
    (role) and each membership get a history row.
    """
    from django.contrib.auth.models import Permission
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    User = get_user_model()
    acting = acting_user(user)
    require_permission(acting, "manage_accounts")
    username = str(username).strip()
    if not username:
        raise StoreError("user: the username is empty")
    if role is None:
        role = "admin" if superuser else "coordinator"
    if role not in ROLES:
        raise StoreError(f"user {username!r}: role {role!r} is not one of {', '.join(ROLES)}")
    if superuser and role != "admin":
        raise StoreError(f"user {username!r}: --superuser is the admin role, not {role}")
    superuser = role == "admin"
    if User.objects.filter(username=username).exists():
        raise StoreError(f"user {username!r} already exists")
    if role in SITE_ROLES and not site_codes:
        raise StoreError(f"user {username!r}: a {role} works for sites: give --site CODE")
    sites = [_site(c) for c in dict.fromkeys(site_codes)]
    with transaction.atomic():
        new = User(username=username, is_staff=True, is_superuser=superuser, is_active=True)
        if password:
            try:
                validate_password(password, new)
            except ValidationError as exc:
                raise StoreError(f"user {username!r}: " + " ".join(exc.messages)) from None
            new.set_password(password)
        else:
            new.set_unusable_password()
        new._history_user = acting
        new._change_reason = f"account created ({role})"
        new.save()
        UserProfile(
            user=new, role=role, printed_name=str(printed_name or "").strip() or username
        ).save(user=acting)
        if role in _ROLE_PAGES:
            regex, models = _ROLE_PAGES[role]
            perms = list(Permission.objects.filter(
                content_type__app_label="trials",
                content_type__model__in=models,
                codename__regex=regex,
            ))
            if role == "qa":
                perms += Permission.objects.filter(
                    content_type__app_label="trials",
                    codename__in=["add_cellproductbatch", "change_cellproductbatch"],
                )
            perms += Permission.objects.filter(
                content_type__app_label="trials", codename__in=["view_site", "view_arm"]
            )
            # one grant: one history row of the account (the m2m signal, models.audit)
            new._change_reason = f"account created ({role}): admin pages of the role"
            new.user_permissions.add(*perms)
        new._change_reason = None  # later changes of this object need their own reason
        for s in sites:
            add_site_membership(user_account=new, site=s, user=acting)
    return new


def add_site_membership(*, user_account: Any, site: Site | str, user: Any = None) -> SiteMembership:
    """Give ``user_account`` access to ``site``'s participants (``manage_accounts``)."""
    acting = acting_user(user)
    require_permission(acting, "manage_accounts")
    target = account(user_account)
    site_obj = _site(site)
    if SiteMembership.objects.filter(user=target, site=site_obj).exists():
        raise StoreError(f"user {target.get_username()!r} is already a member of site {site_obj}")
    m = SiteMembership(user=target, site=site_obj, role=role_of(target) or "coordinator")
    m.save(user=acting)
    return m


def change_role(*, user_account: Any, role: str, reason: str, user: Any = None) -> UserProfile:
    """Change an account's role, with a reason (audited; ``manage_accounts``)."""
    acting = acting_user(user)
    require_permission(acting, "manage_accounts")
    target = account(user_account)
    if role not in ROLES:
        raise StoreError(f"user {target.get_username()!r}: role {role!r} is not one of "
                         f"{', '.join(ROLES)}")
    with transaction.atomic():
        profile = UserProfile.objects.filter(user=target).first()
        if profile is None:
            profile = UserProfile(user=target, role=role, printed_name=target.get_username())
            profile.save(user=acting, reason=reason)
        elif profile.role != role:
            profile.role = role
            profile.save(user=acting, reason=reason)
        for m in SiteMembership.objects.filter(user=target).exclude(role=role).order_by("pk"):
            m.role = role
            m.save(user=acting, reason=reason)
        if target.is_superuser != (role == "admin"):
            target.is_superuser = role == "admin"
            target._history_user = acting
            target._change_reason = reason
            target.save()
            target._change_reason = None
    return profile


def reactivate_user(*, user_account: Any, reason: str, user: Any = None) -> Any:
    """Reactivate an account (e.g. deactivated after failed signatures) and reset its count
    of failed signatures, with a reason (audited; ``manage_accounts``)."""
    acting = acting_user(user)
    require_permission(acting, "manage_accounts")
    target = account(user_account)
    why = require_reason(reason, f"reactivating account {target.get_username()!r}")
    with transaction.atomic():
        if not target.is_active:
            target.is_active = True
            target._history_user = acting
            target._change_reason = why
            target.save()
            target._change_reason = None
        profile = UserProfile.objects.filter(user=target).first()
        if profile is not None and profile.failed_signatures:
            profile.failed_signatures = 0
            profile.save(user=acting, reason=why)
    return target


def change_password(
    *, user_account: Any, password: str | None, reason: str, user: Any = None
) -> Any:
    """Set a new password for ``user_account``, with a reason (audited); ``password=None``
    disables password sign-in for the account (an unusable password).

    The account's own holder may change it (``user`` is the account); anyone else needs
    ``manage_accounts`` (a reset by an administrator, or the system account on the command
    line). The password must pass Django's password validators (length, common passwords,
    similarity to the user's name, all digits). The account's history gets a row whose reason
    says ``password changed`` (own) or ``password reset`` (by another account) with ``reason``,
    and whose password fingerprint is the new one (so ``audit verify`` can tell a hash written
    by SQL). Raises :class:`~hepatrial.errors.ChangeReasonRequired`,
    :class:`~hepatrial.errors.PermissionDenied`, :class:`NotFoundError` or ``StoreError``
    (the validators' messages).
    """
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    acting = acting_user(user)
    target = account(user_account)
    name = target.get_username()
    why = require_reason(reason, f"changing the password of {name!r}")
    own = acting is not None and acting.pk == target.pk
    if not own:
        require_permission(acting, "manage_accounts")
    elif not acting.is_active:
        raise PermissionDenied(f"password: account {name!r} is deactivated")
    if password is not None and not password:
        raise StoreError(f"user {name!r}: the new password is empty")
    User = get_user_model()
    with transaction.atomic():
        lock_ledger()
        fresh = User._base_manager.select_for_update().get(pk=target.pk)
        if password is None:
            fresh.set_unusable_password()
            what = "password sign-in disabled"
        else:
            try:
                validate_password(password, fresh)
            except ValidationError as exc:
                raise StoreError(f"user {name!r}: " + " ".join(exc.messages)) from None
            fresh.set_password(password)
            what = f"password {'changed' if own else 'reset'}"
        fresh._history_user = acting
        fresh._change_reason = f"{what}: {why}"
        fresh.save(update_fields=["password"])
    target.password = fresh.password
    return fresh


def _printable(text: Any) -> str:
    """``text`` as a string with control and other unprintable characters escaped (``\\xNN``,
    ``\\uNNNN``), so a sign-in name is stored on every engine (PostgreSQL text cannot hold
    NUL) and reads back unambiguously."""
    s = "" if text is None else str(text)
    out = []
    for ch in s:
        if ch == "\\" or unicodedata.category(ch).startswith("C"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def record_login_event(
    kind: str,
    username: Any,
    *,
    request: Any = None,
    account: Any = None,
    source: str | None = None,
    detail: str = "",
) -> LoginEvent | None:
    """Record a sign-in attempt (``success``/``failure``), a ``lockout`` or an ``unlock``.

    Called by the sign-in signals (:mod:`hepatrial.trials.models.audit`) for every sign-in
    form, and by :func:`unlock_account`. The client address is django-axes' (its proxy
    settings) or ``REMOTE_ADDR``. A lockout reported again while the account is already locked
    out (django-axes signals each refused attempt) is recorded once. Returns the event, or
    ``None`` when it was a repeat.
    """
    kinds = {k for k, _ in LoginEvent._meta.get_field("kind").choices}
    if kind not in kinds:
        raise StoreError(f"login event: kind {kind!r} is not one of {', '.join(sorted(kinds))}")
    name = _printable(username)
    User = get_user_model()
    if account is None and name:
        account = User._base_manager.filter(**{User.USERNAME_FIELD: name}).first()
    if source is None and request is not None:
        source = getattr(request, "axes_ip_address", None) or getattr(
            request, "META", {}
        ).get("REMOTE_ADDR", "")
    source = _printable(source or "")[:100]
    with transaction.atomic():
        lock_ledger()
        last = (LoginEvent.objects.filter(username=name, kind__in=("lockout", "unlock"))
                .order_by("-at", "-pk").values_list("kind", flat=True).first())
        if kind == "lockout" and last == "lockout":
            return None
        if kind == "failure" and not detail:
            detail = ("refused: the account is locked out" if last == "lockout" else
                      "wrong user name or password")
        event = LoginEvent(kind=kind, username=name, account=account, at=timezone.now(),
                           source=source, detail=str(detail or ""))
        who = account if kind == "success" else None
        reason = {"success": "signed in", "failure": "sign-in refused",
                  "lockout": "account locked out", "unlock": "lockout reset"}[kind]
        event.save(user=who, reason=reason)
    return event


def unlock_account(*, user_account: Any, reason: str, user: Any = None) -> int:
    """Reset the django-axes lockout of an account (its failed sign-ins), with a reason
    (audited as a ``LoginEvent`` of kind ``unlock``; ``manage_accounts``). Returns the number
    of failure records cleared (0: the account was not locked out and nothing is written)."""
    from axes.utils import reset

    acting = acting_user(user)
    require_permission(acting, "manage_accounts")
    target = account(user_account)
    name = target.get_username()
    why = require_reason(reason, f"unlocking account {name!r}")
    with transaction.atomic():
        lock_ledger()
        n = int(reset(username=name) or 0)
        if n:
            event = LoginEvent(kind="unlock", username=name, account=target, at=timezone.now(),
                               source="", detail=f"{n} failed sign-in record(s) cleared by "
                               f"{acting.get_username()}")
            event.save(user=acting, reason=why)
    return n


def printed_name_of(user: Any) -> str:
    """The name an e-signature shows (21 CFR 11.50(a)(1)): the profile's printed name, else
    the account's full name, else its username."""
    profile = UserProfile.objects.filter(user=user).first()
    if profile is not None and profile.printed_name.strip():
        return profile.printed_name.strip()
    return (user.get_full_name() or "").strip() or user.get_username()


def check_signing_password(user: Any, password: str | None) -> None:
    """Re-authenticate ``user`` with ``password`` to sign (21 CFR 11.200(a)).

    A deactivated account is refused. A wrong password is refused, counted in
    ``UserProfile.failed_signatures`` (audited: a history row with the reason), and at
    :data:`MAX_FAILED_SIGNATURES` consecutive failures the account is deactivated (audited;
    21 CFR 11.300(d)); a right password resets the count. Raises
    :class:`~hepatrial.errors.AuthenticationFailed`.

    The count is committed before the error is raised: call this outside any transaction the
    refusal would roll back (the services do).
    """
    name = user.get_username()
    if not user.is_active:
        raise AuthenticationFailed(
            f"account {name!r} is deactivated (an admin can reactivate it: "
            "hepatrial user reactivate NAME --reason TEXT)"
        )
    ok = bool(password) and user.check_password(password)
    with transaction.atomic():
        lock_ledger()  # serialise with other writers (no row lock taken before the ledger's)
        profile = UserProfile.objects.filter(user=user).first()
        if profile is None:
            raise PermissionDenied(f"sign: account {name!r} has no role in the trial")
        if ok:
            if profile.failed_signatures:
                profile.failed_signatures = 0
                profile.save(user=user, reason="password re-entered correctly to sign")
            return
        profile.failed_signatures += 1
        n = profile.failed_signatures
        profile.save(user=user, reason=f"wrong password given to sign (failure {n})")
        if n >= MAX_FAILED_SIGNATURES:
            user.is_active = False
            user._history_user = user
            user._change_reason = (
                f"account deactivated after {n} consecutive wrong passwords given to sign"
            )
            user.save()
    if n >= MAX_FAILED_SIGNATURES:
        raise AuthenticationFailed(
            f"sign: wrong password for {name!r}; {n} consecutive failures: the account is "
            "now deactivated"
        )
    raise AuthenticationFailed(
        f"sign: wrong password for {name!r} ({n} of {MAX_FAILED_SIGNATURES} before the "
        "account is deactivated)"
    )
