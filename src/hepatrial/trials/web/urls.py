"""URLs of the eCRF (namespace ``web``).

Every route but sign-in/sign-out is an :func:`~hepatrial.trials.web.access.ecrf_view` (role
and site checked on the server) and is listed in the URL-tampering table of the tests
(``tests/web/routes.py``), which fails for a route it does not know.

Other eCRF pages live in their own modules under ``hepatrial.trials.web`` (queries, SDV,
signing): a module named in :data:`EXTENSIONS` that exists is imported here and its
``urlpatterns`` are added to this namespace (its worklist sections register on import).
"""

from __future__ import annotations

import importlib

from django.urls import path

from hepatrial.trials.web import casebook, crf, dashboard, screening, views, worklist

app_name = "web"

#: modules of the other eCRF pages, added when present (``hepatrial.trials.web.<name>``)
EXTENSIONS: tuple[str, ...] = ("queries", "sdv", "signing", "safety_worklist",
                               "adverse_events", "sae", "product")

P = "participants/<str:study_id>/"
V = P + "visits/<str:code>/"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("", worklist.home, name="home"),
    path("sites/", dashboard.site_list, name="sites"),
    path("sites/<str:code>/", dashboard.site_dashboard, name="site"),
    path("participants/", casebook.participant_list, name="participants"),
    path("screening/new/", screening.screen_new, name="screen_new"),
    path("screening/evaluate/", screening.screen_evaluate, name="screen_evaluate"),
    path(P, casebook.casebook, name="casebook"),
    path(P + "history/<str:model>/<int:pk>/<str:field>/", casebook.field_history,
         name="history"),
    path(P + "screening/", screening.screening, name="screening"),
    path(P + "screening/evaluate/", screening.participant_evaluate, name="evaluate"),
    path(P + "consent/", screening.consent, name="consent"),
    path(P + "assess/", screening.assess, name="assess"),
    path(P + "enrol/", screening.enrol, name="enrol"),
    path(P + "status/", screening.status, name="status"),
    path(V, crf.visit_crf, name="visit"),
    path(V + "scores/", crf.visit_scores, name="visit_scores"),
    path(V + "missed/", crf.visit_missed, name="visit_missed"),
]


def _extensions() -> list:
    out = []
    for name in EXTENSIONS:
        try:
            mod = importlib.import_module(f"hepatrial.trials.web.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hepatrial.trials.web.{name}":
                raise
            continue
        out.extend(getattr(mod, "urlpatterns", []))
    return out


urlpatterns += _extensions()
