"""Who sees and does what in the eCRF, checked on the server for every view.

One rule for every page (the role matrix is :mod:`hepatrial.trials.services.permissions`):

* a user without a role in the trial gets 403 on every page but the sign-in;
* every object is looked up **within the sites the user acts on**
  (:func:`~hepatrial.trials.services.permissions.site_ids_of`: a site-scoped role sees its
  sites' participants only; data manager, auditor and admin see all). An object of another
  site does not exist for the user: 404, whatever the URL, filter or search;
* an action the role may not do on an object it can see is refused with 403
  (:func:`~hepatrial.trials.services.permissions.require_permission`, the services' check).

Views are wrapped with :func:`ecrf_view`, which signs the user in (redirect to the sign-in
page), attaches an :class:`Access` as ``request.access`` and, for ``action``, checks the
role before the view runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from hepatrial import errors
from hepatrial.trials import selectors_web
from hepatrial.trials.models import Participant, Site, Visit
from hepatrial.trials.services import permissions


@dataclass
class Access:
    """The acting user's role and sites, and the scoped lookups of the eCRF."""

    user: Any
    role: str | None
    site_ids: frozenset[int]

    @classmethod
    def of(cls, user: Any) -> Access:
        """The access of a signed-in user."""
        role = permissions.role_of(user)
        if role == "system" or not user.is_active:
            role = None
        ids = frozenset(permissions.site_ids_of(user)) if role else frozenset()
        return cls(user, role, ids)

    def may(self, action: str, participant: Participant | None = None) -> bool:
        """Whether the user may do ``action`` (on ``participant``, which it can see)."""
        if self.role is None or not permissions.allowed(action, self.role):
            return False
        return participant is None or participant.site_id in self.site_ids

    def require(self, action: str, participant: Participant | None = None) -> None:
        """403 unless :meth:`may` (the services' own permission message is kept)."""
        if not self.may(action, participant):
            try:
                permissions.require_permission(self.user, action, participant)
            except errors.PermissionDenied as exc:
                raise PermissionDenied(str(exc)) from None
            raise PermissionDenied(f"{action}: not allowed")

    # ------------------------------------------------------------------ scoped lookups
    def sites(self) -> list[Site]:
        """The sites the user acts on, by code."""
        return selectors_web.sites_in(self.site_ids)

    def site(self, code: str) -> Site:
        """A site the user acts on, else 404."""
        s = selectors_web.site_in(code, self.site_ids)
        if s is None:
            raise Http404("no such site")
        return s

    def participant(self, study_id: str) -> Participant:
        """A participant the user can see, else 404."""
        p = selectors_web.participant_in(study_id, self.site_ids)
        if p is None:
            raise Http404("no such participant")
        return p

    def visit(self, participant: Participant, code: str) -> Visit:
        """A visit of a participant the user can see, else 404."""
        v = selectors_web.visit_of(participant, code)
        if v is None:
            raise Http404("no such visit")
        return v


def ecrf_view(action: str | None = "view") -> Callable[[Callable[..., HttpResponse]],
                                                       Callable[..., HttpResponse]]:
    """Decorator of every eCRF view: signed in, a role in the trial, and ``action`` allowed
    for the role (None: only signed in, e.g. the worklist of an account without a role)."""

    def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            access = Access.of(request.user)
            request.access = access  # type: ignore[attr-defined]
            if action is not None:
                if access.role is None:
                    raise PermissionDenied("your account has no role in the trial")
                access.require(action)
            return view(request, *args, **kwargs)

        inner.ecrf_action = action  # type: ignore[attr-defined]
        return inner

    return wrap
