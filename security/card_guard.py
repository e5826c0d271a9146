"""Refuse any request that carries a card number, before any view runs.

Card numbers only ever go from the browser to Stripe or Braintree (their
hosted fields). If one reaches us in a query string, a form field or a JSON
body (or any other text body), the middleware answers ``400`` with a plain
message and writes a ``security.card_number_refused`` audit event that says
where it was found, never the number. No path is exempt unless listed in
``CARD_GUARD_EXEMPT_PATH_PREFIXES`` (empty by default).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, UnreadablePostError

from security.logs import redact
from security.pan import contains_card_number

MESSAGE = (
    "This request was refused because it contains a payment card number. Card numbers must only be "
    "typed into the secure card fields of the payment form; nothing was saved."
)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _walk_json(value: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", str(key)
            yield from _walk_json(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk_json(item, f"{path}[{i}]")
    elif isinstance(value, bool) or value is None:
        return
    else:
        yield path, str(value)


def find_card_in_request(request: HttpRequest) -> tuple[str, str] | None:
    """``(where, name)`` of the first card number in the request, e.g. ``("form", "notes")``."""
    if contains_card_number(unquote_plus(request.path), strict=True):
        return "path", ""
    query = request.META.get("QUERY_STRING", "")
    if query and contains_card_number(unquote_plus(query), strict=True):
        for key, values in request.GET.lists():
            if any(contains_card_number(v, strict=True) for v in [key, *values]):
                return "query", key[:100]
        return "query", ""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    content_type = (request.content_type or "").lower()
    if content_type in _FORM_TYPES:
        for key, values in request.POST.lists():
            if any(contains_card_number(v, strict=True) for v in [key, *values]):
                return "form", key[:100]
        return None
    body = request.body
    if not body or not may_carry_card_number(body, content_type):
        # Without escapes every JSON key and string appears verbatim in the text, so a
        # number absent from the text is absent from every value: no need to parse.
        return None
    text = body.decode("utf-8", "replace")
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            for where, value in _walk_json(parsed):
                if contains_card_number(value, strict=True):
                    return "json", where[:100]
            return None
    if contains_card_number(text, strict=True):
        return "body", ""
    return None


def may_carry_card_number(body: bytes, content_type: str) -> bool:
    """Whether a request body *might* hold a card number :func:`find_card_in_request` would find.

    A cheap superset of its body checks, for code that answers a request without building a
    Django request first (the webhook WSGI fast path): False means there is certainly nothing
    to refuse; True means the request must go through the full guard.
    """
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return True  # parts may carry their own transfer encoding: only the full guard can tell
    text = body.decode("utf-8", "replace")
    if kind == "application/x-www-form-urlencoded":
        text = unquote_plus(text)  # every decoded key and value appears in the decoded body
    return "\\" in text or contains_card_number(text, strict=True)


def _identify(request: HttpRequest) -> Any:
    """Who sent it, from the session cookie (this middleware runs before the session middleware)."""
    from django.contrib import auth

    try:
        engine = import_module(settings.SESSION_ENGINE)
        request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        user = auth.get_user(request)
    except Exception:  # noqa: BLE001 - identifying the sender must never hide the refusal
        return None
    finally:
        if hasattr(request, "session"):
            del request.session
    return user if getattr(user, "is_authenticated", False) else None


class CardNumberGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        exempt = getattr(settings, "CARD_GUARD_EXEMPT_PATH_PREFIXES", [])
        if not any(request.path_info.startswith(prefix) for prefix in exempt):
            try:
                found = find_card_in_request(request)
            except (RequestDataTooBig, SuspiciousOperation, UnreadablePostError):
                found = None  # Django refuses these itself further on
            if found is not None:
                return self.refuse(request, *found)
        return self.get_response(request)

    def refuse(self, request: HttpRequest, where: str, name: str) -> HttpResponse:
        from security import audit

        audit.record(
            actor=_identify(request),
            action="security.card_number_refused",
            details={
                "method": request.method,
                "path": redact(request.path)[:200],
                "where": where,
                "field": name,
            },
        )
        return HttpResponse(MESSAGE, status=400, content_type="text/plain; charset=utf-8")
