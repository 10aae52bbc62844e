"""URLs of the REST API (namespace ``api``), mounted at ``/api/v1/`` by
:mod:`hepatrial.trials.urls`."""

from hepatrial.trials.api.main import api

urlpatterns = api.urls[0]
app_name = api.urls_namespace  # "api": django-ninja reverses "api:api-root"
