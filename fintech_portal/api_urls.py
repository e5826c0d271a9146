"""``/api/v1/``: each app contributes its endpoints here."""

from django.urls import path

from accounts import api

urlpatterns = [
    path("me", api.MeView.as_view(), name="api_me"),
]
