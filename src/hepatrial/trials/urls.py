"""URLs of the trial store: the Django admin (login required) and nothing else."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

admin.site.site_header = "hepatrial trial store"
admin.site.site_title = "hepatrial"
admin.site.index_title = "Trial records"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
