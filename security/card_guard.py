"""Refuse any request that carries a card number, before any view runs.

Card numbers only ever go from the browser to Stripe or Braintree (their
hosted fields). If one reaches us in a query string, a form field or a JSON
body (or any other text body), the middleware answers ``400`` with a plain
message and writes a ``security.card_number_refused`` audit event that says
where it was found, never the number. No path is exempt unless listed in
``CARD_GUARD_EXEMPT_PATH_PREFIXES`` (empty by default).

The search (``security.pan``) is linear in what it reads, and what it reads is
capped: at most ``CARD_GUARD_MAX_BYTES`` characters per request, each body read
at most once unless a card-like number was found in it. A body the guard cannot
read whole (over ``DATA_UPLOAD_MAX_MEMORY_SIZE``) or that would take more than
the cap is refused with ``413``, never let through unchecked. (Most routes refuse
large bodies earlier, unread: see ``security.body_limits``.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any, cast
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, QueryDict, UnreadablePostError

from security.logs import redact
from security.pan import CheckBudget, TooManyToCheck, contains_card_number

MESSAGE = (
    "This request was refused because it contains a payment card number. Card numbers must only be "
    "typed into the secure card fields of the payment form; nothing was saved."
)
TOO_LARGE = (
    "This request is too large to be checked for card numbers; nothing was saved. Send less at a time."
)
UNCHECKED = "This request could not be read to check it for card numbers; nothing was saved."
TOO_MANY = (
    "This request holds too many long runs of digits to be checked for card numbers; nothing was "
    "saved. Send fewer numbers at a time."
)
# Python-level checks (possible card starts, see security.pan.CheckBudget) a request may ask
# for: a few dozen, plus one per this many characters searched. Ordinary pages and webhooks use
# a handful; a body crafted to be all possible starts is refused after a bounded amount of work,
# so a body of digit groups costs about what a body of letters of the same size costs.
CHECKS_PER_REQUEST = 64
CHARS_PER_EXTRA_CHECK = 4096
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


class TooLargeToCheck(Exception):
    """The request holds more text than the guard checks (``CARD_GUARD_MAX_BYTES``)."""


class _Scanner:
    """``contains_card_number(strict=True)`` under a per-request budget of characters and checks.

    Raises :class:`TooLargeToCheck` past ``CARD_GUARD_MAX_BYTES`` characters and
    :class:`security.pan.TooManyToCheck` past the checks the characters so far allow.
    """

    def __init__(self, budget: int | None = None) -> None:
        self.left = settings.CARD_GUARD_MAX_BYTES if budget is None else budget
        self.checks = CheckBudget(CHECKS_PER_REQUEST)

    def __call__(self, text: str) -> bool:
        self.left -= len(text)
        if self.left < 0:
            raise TooLargeToCheck
        self.checks.left += len(text) // CHARS_PER_EXTRA_CHECK
        return contains_card_number(text, strict=True, budget=self.checks)


# Set by the WSGI fast path (fintech_portal.webhook_wsgi) when it has already searched the body
# and hands the request to Django to be refused: the guard does not search the body again. A
# client cannot set it (WSGI servers put request headers under ``HTTP_`` keys).
BODY_RESULT_ENVIRON_KEY = "fintech_portal.card_guard.body"
TOO_MANY_TO_CHECK = "too-many-to-check"  # that key's value when the search ran out of checks


def _find_in_fields(fields: Any, scan: _Scanner) -> tuple[str, str] | None:
    for key, values in fields.lists():
        if scan(key) or any(scan(v) for v in values):
            return "form", key[:100]
    return None


def find_card_in_body(
    body: bytes, content_type: str, *, scanner: _Scanner | None = None
) -> tuple[str, str] | None:
    """``(where, name)`` of the first card number in a JSON, form-urlencoded or other text body.

    What the guard does for a request body, without a Django request (the webhook WSGI fast
    path calls it). Not for multipart bodies (only Django's parser can split those).
    """
    scan = scanner or _Scanner()
    if not body:
        return None
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return _find_in_fields(QueryDict(body, encoding=settings.DEFAULT_CHARSET), scan)
    text = body.decode("utf-8", "replace")
    if kind == "application/json" or kind.endswith("+json"):
        # Without escapes every JSON key and string appears verbatim in the text, so a number
        # absent from the text is absent from every value: one search of the text settles it,
        # and the values are searched (to name the field) only when it found something.
        # With escapes only the decoded values tell, so those are searched instead of the text.
        if "\\" in text or scan(text):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if parsed is not None:
                for where, value in _walk_json(parsed):
                    if scan(value):
                        return "json", where[:100]
                return None
            return ("body", "") if "\\" not in text or scan(text) else None
        return None
    return ("body", "") if scan(text) else None


def find_card_in_request(request: HttpRequest) -> tuple[str, str] | None:
    """``(where, name)`` of the first card number in the request, e.g. ``("form", "notes")``.

    Raises :class:`TooLargeToCheck` when the request holds more than the guard checks,
    :class:`security.pan.TooManyToCheck` when it holds more possible card numbers than it may
    ask the guard to check, and Django's ``RequestDataTooBig`` when the body is over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
    """
    scan = _Scanner()
    if scan(unquote_plus(request.path)):
        return "path", ""
    query = request.META.get("QUERY_STRING", "")
    if query and scan(unquote_plus(query)):
        for key, values in request.GET.lists():
            if any(scan(v) for v in [key, *values]):
                return "query", key[:100]
        return "query", ""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    already = request.META.get(BODY_RESULT_ENVIRON_KEY)
    if already == TOO_MANY_TO_CHECK:
        raise TooManyToCheck
    if already is not None:
        return cast("tuple[str, str]", already)
    content_type = (request.content_type or "").lower()
    if content_type in _FORM_TYPES:
        return _find_in_fields(request.POST, scan)
    return find_card_in_body(request.body, content_type, scanner=scan)


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
            except (RequestDataTooBig, TooLargeToCheck):
                # Never let through what was not checked.
                return HttpResponse(TOO_LARGE, status=413, content_type="text/plain; charset=utf-8")
            except TooManyToCheck:
                return HttpResponse(TOO_MANY, status=400, content_type="text/plain; charset=utf-8")
            except (SuspiciousOperation, UnreadablePostError):
                # Too many fields, a broken upload: a view reading the raw body could still get it.
                return HttpResponse(UNCHECKED, status=400, content_type="text/plain; charset=utf-8")
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
