"""The login form's target and heartwire's connect hook."""

from django.urls import path

from . import views

urlpatterns = [
    path("login", views.log_in),
    path("heartwire/connect", views.connect_hook),
]
