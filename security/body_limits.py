"""How large a request body each route accepts, refused with ``413`` before the body is read.

Most routes take a form or a small JSON document, so every route accepts at most
``REQUEST_BODY_MAX_BYTES`` (64 KB by default). A route that takes more (the
gateways' webhooks; uploads such as KYC documents) declares its own limit, either
with the :func:`body_limit` view decorator or, for a view we do not own, by URL
name in ``REQUEST_BODY_LIMITS``. The declared ``Content-Length`` is what Django
reads (never more), so a larger declaration is refused here, before the card-number
guard or any view reads a byte of it, with a plain message that says the limit.

Form fields and raw bodies stay capped by Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``
on every route (files in a multipart upload are not counted there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

ATTRIBUTE = "request_body_max_bytes"
F = TypeVar("F", bound=Callable[..., Any])


def body_limit(max_bytes: int) -> Callable[[F], F]:
    """Let a view accept request bodies of up to ``max_bytes`` (an upload page, for example)."""
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")

    def decorate(view: F) -> F:
        setattr(view, ATTRIBUTE, max_bytes)
        return view

    return decorate


def declared_length(request: HttpRequest) -> int:
    """The ``Content-Length`` Django will read up to (absent or unreadable counts as 0, as Django does)."""
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def limit_for(request: HttpRequest) -> int:
    """The most body bytes the route of ``request`` accepts."""
    default: int = settings.REQUEST_BODY_MAX_BYTES
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return default
    request.resolver_match = match  # kept for LeanPathMiddleware, which would resolve it again
    own = getattr(match.func, ATTRIBUTE, None)
    if own is None:
        own = getattr(settings, "REQUEST_BODY_LIMITS", {}).get(match.view_name)
    return default if own is None else int(own)


def _size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n:,} bytes"


class RequestBodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = declared_length(request)
        # No route accepts less than the default, so only a larger body needs its route's limit.
        if length > settings.REQUEST_BODY_MAX_BYTES:
            limit = limit_for(request)
            if length > limit:
                message = (
                    f"This request is too large: this address accepts at most {_size(limit)} and the "
                    f"request declares {length:,} bytes. Nothing was read or saved."
                )
                if request.path_info.startswith("/api/"):  # the API answers every error in JSON
                    return JsonResponse({"error": {"code": "too_large", "message": message}}, status=413)
                return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
