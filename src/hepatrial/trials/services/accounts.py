"""Sites, user accounts, site memberships and roles."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from hepatrial.trials.models import (
    Site,
    SiteMembership,
)
from hepatrial.trials.services._common import (
    StoreError,
    _site,
    _user,
)


def create_site(*, code: str, name: str = "", user: Any = None) -> Site:
    """Create a site (centre)."""
    code = str(code).strip()
    if not code:
        raise StoreError("site: code is empty")
    if Site.objects.filter(code=code).exists():
        raise StoreError(f"site {code!r} already exists")
    site = Site(code=code, name=name)
    site.save(user=_user(user))
    return site


def create_user(
    *,
    username: str,
    password: str | None,
    site_codes: list[str] | tuple[str, ...] = (),
    superuser: bool = False,
    user: Any = None,
) -> Any:
    """Create an admin account: a superuser, or a staff coordinator limited to ``site_codes``.

    Coordinators get view/add/change permissions on participant-level records; they never get
    delete permission. The password is validated by Django's password validators.
    """
    from django.contrib.auth.models import Permission
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    User = get_user_model()
    acting = _user(user)
    if User.objects.filter(username=username).exists():
        raise StoreError(f"user {username!r} already exists")
    if not superuser and not site_codes:
        raise StoreError(f"user {username!r}: a coordinator needs --site")
    sites = [_site(c) for c in site_codes]
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
        new._change_reason = "account created"
        new.save()
        if not superuser:
            models = [
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
            ]
            perms = Permission.objects.filter(
                content_type__app_label="trials",
                content_type__model__in=models,
                codename__regex=r"^(view|add|change)_",
            )
            new.user_permissions.add(*perms)
            perms_site = Permission.objects.filter(
                content_type__app_label="trials", codename__in=["view_site", "view_arm"]
            )
            new.user_permissions.add(*perms_site)
        for s in sites:
            add_site_membership(user_account=new, site=s, user=acting)
    return new


def add_site_membership(*, user_account: Any, site: Site | str, user: Any = None) -> SiteMembership:
    """Give ``user_account`` access to ``site``'s participants."""
    m = SiteMembership(user=user_account, site=_site(site))
    m.save(user=_user(user))
    return m
