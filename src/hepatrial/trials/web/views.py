"""Views of the eCRF: sign-in and sign-out (the pages are in the modules beside this one:
``worklist``, ``dashboard``, ``casebook``, ``screening``, ``crf``)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views

from hepatrial.trials.web.worklist import home

__all__ = ["LoginView", "LogoutView", "home"]


class LoginView(auth_views.LoginView):
    """Sign-in page; failed attempts are counted by django-axes (lockout after 5)."""

    template_name = "hepatrial/web/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """Sign-out (POST only, as Django requires)."""
