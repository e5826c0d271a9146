"""The public checkout pages' request budget: ``CHECKOUT_RATE_LIMIT`` per client address.

The same limiter as the merchant API (Django REST framework's ``SimpleRateThrottle``, counting
in the shared cache, so every web process agrees), keyed by the client address as
:func:`security.client_ip.client_ip` reads it. Every page under ``/pay/`` opens or reads a
payment at the gateway, so one address cannot make them call it without end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.throttling import SimpleRateThrottle

from security.client_ip import client_ip

BUSY_MESSAGE = "Too many requests from your network. Wait a minute, then reload this page."


class CheckoutRateThrottle(SimpleRateThrottle):
    scope = "checkout"

    def get_rate(self) -> str:
        return settings.CHECKOUT_RATE_LIMIT

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "unknown"}


def checkout_rate_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 429 (with ``Retry-After``) once the client address has spent its budget; the
    view, and so the gateway, is not reached."""

    @wraps(view)
    def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        throttle = CheckoutRateThrottle()
        if throttle.allow_request(request, None):
            return view(request, *args, **kwargs)
        response = render(request, "payments/checkout_busy.html", {"message": BUSY_MESSAGE}, status=429)
        response["Retry-After"] = str(max(1, math.ceil(throttle.wait() or 1)))
        return response

    return limited
