"""URLs of the trial store: the eCRF at ``/``, the Django admin at ``/admin/``."""

from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "hepatrial trial store"
admin.site.site_title = "hepatrial"
admin.site.index_title = "Trial records"
admin.site.login_template = None

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("hepatrial.trials.api.urls")),
    path("", include("hepatrial.trials.web.urls")),
]
