"""Marking a session as second-factor verified, and asking again before sensitive actions."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

import django_otp
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django_otp.models import Device

OTP_VERIFIED_AT = "otp_verified_at"


def mark_verified(request: HttpRequest, device: Device) -> None:
    """Persist the verified device in the session and note when it happened."""
    if not request.user.is_verified():
        # A new privilege level gets a new session id (session fixation).
        request.session.cycle_key()
    django_otp.login(request, device)
    request.session[OTP_VERIFIED_AT] = int(time.time())


def otp_is_recent(request: HttpRequest, minutes: int) -> bool:
    verified_at = request.session.get(OTP_VERIFIED_AT)
    if not verified_at or not request.user.is_verified():
        return False
    return (time.time() - float(verified_at)) <= minutes * 60


def _step_up_response(request: HttpRequest) -> HttpResponse:
    if request.path_info.startswith("/api/"):
        return JsonResponse(
            {
                "error": {
                    "code": "recent_otp_required",
                    "message": "Confirm with a fresh authentication code before this action.",
                }
            },
            status=403,
        )
    back_to = (
        request.get_full_path()
        if request.method == "GET"
        else request.META.get("HTTP_REFERER", request.get_full_path())
    )
    return HttpResponseRedirect(f"{reverse('two_factor_step_up')}?{urlencode({'next': back_to})}")


def require_recent_otp(
    minutes: int = 5,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Decorator: the session must have entered a code within ``minutes``.

    Otherwise the user is asked for a fresh code and brought back. A POST that
    arrives stale is not performed.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not otp_is_recent(request, minutes):
                return _step_up_response(request)
            return view(request, *args, **kwargs)

        wrapped.recent_otp_minutes = minutes  # type: ignore[attr-defined]
        return wrapped

    return decorator


class RecentOTPRequiredMixin:
    """Class-based-view form of :func:`require_recent_otp`."""

    recent_otp_minutes = 5

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not otp_is_recent(request, self.recent_otp_minutes):
            return _step_up_response(request)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
