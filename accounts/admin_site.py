"""The Django admin requires an OTP-verified session; a password alone never opens it."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django_otp.admin import OTPAdminSite


class PortalAdminSite(OTPAdminSite):
    site_header = "fintech_portal administration"
    site_title = "fintech_portal admin"
    index_title = "Platform administration"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name=name)

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        from accounts.notices import admin_notices

        context = {**(extra_context or {}), "platform_notices": admin_notices()}
        return super().index(request, extra_context=context)

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and user.is_verified())

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # One sign-in path for everyone: password, then the second factor.
        user = request.user
        if user.is_authenticated and user.is_verified() and not self.has_permission(request):
            raise PermissionDenied("The admin is for platform administrators.")
        next_url = request.GET.get("next") or reverse("admin:index")
        return redirect_to_login(next_url, reverse("account_login"))
