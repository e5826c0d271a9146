"""Session policy and the rule that nothing opens without a second factor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.functional import SimpleLazyObject

from accounts import selectors

MERCHANT_SESSION_KEY = "current_merchant"


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


class SessionPolicyMiddleware:
    """Staff sessions expire after a short idle period; exposes ``request.membership``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated and user.is_platform_staff:
            # Sliding window: every request pushes the expiry out again.
            request.session.set_expiry(settings.STAFF_SESSION_IDLE_SECONDS)
        request.membership = SimpleLazyObject(lambda: _current_membership(request))  # type: ignore[attr-defined]
        return self.get_response(request)


def _current_membership(request: HttpRequest) -> Any:
    user = request.user
    if not user.is_authenticated:
        return None
    return selectors.membership_for(user, request.session.get(MERCHANT_SESSION_KEY))


class RequireTwoFactorMiddleware:
    """Every URL that is not on the public allow-list needs an OTP-verified session.

    Anonymous users go to sign-in; users who gave only a password go to the
    code step (or to enrolment if they have no authenticator yet). API calls
    get JSON errors instead of redirects; requests that carry an
    ``Authorization`` header are left to the API's own key authentication.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.public = settings.PUBLIC_URL_NAMES
        self.partial = settings.PARTIAL_AUTH_URL_NAMES

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable, view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        match = request.resolver_match
        name = match.view_name if match else ""
        if name in self.public:
            return None
        if _is_api(request) and request.META.get("HTTP_AUTHORIZATION"):
            return None
        user = request.user
        if not user.is_authenticated:
            if _is_api(request):
                return JsonResponse(
                    {"error": {"code": "not_authenticated", "message": "Sign in or use an API key."}},
                    status=401,
                )
            return redirect_to_login(request.get_full_path(), reverse("account_login"))
        if user.is_verified():
            return None
        if name in self.partial:
            return None
        if _is_api(request):
            return JsonResponse(
                {
                    "error": {
                        "code": "second_factor_required",
                        "message": "Finish signing in with your authentication code.",
                    }
                },
                status=403,
            )
        from accounts.services import has_second_factor

        target = "two_factor_verify" if has_second_factor(user) else "two_factor_enrol"
        query = urlencode({"next": request.get_full_path()})
        return HttpResponseRedirect(f"{reverse(target)}?{query}")
