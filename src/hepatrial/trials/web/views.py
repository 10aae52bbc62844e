"""Views of the eCRF (sign-in, sign-out, worklist)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class LoginView(auth_views.LoginView):
    """Sign-in page; failed attempts are counted by django-axes (lockout after 5)."""

    template_name = "hepatrial/web/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """Sign-out (POST only, as Django requires)."""


def _role(user: Any) -> str:
    profile = getattr(user, "trial_profile", None)
    if profile is not None:
        return str(profile.role)
    return "admin" if user.is_superuser else ""


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The user's worklist (landing page after sign-in)."""
    from hepatrial.trials.models import SiteMembership

    sites = list(
        SiteMembership.objects.filter(user=request.user)
        .select_related("site")
        .order_by("site__code")
        .values_list("site__code", flat=True)
    )
    return render(
        request,
        "hepatrial/web/home.html",
        {"role": _role(request.user), "sites": sites},
    )
