"""URLs of the eCRF (namespace ``web``)."""

from django.urls import path

from hepatrial.trials.web import views

app_name = "web"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("", views.home, name="home"),
]
