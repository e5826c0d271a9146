"""The gateways' webhooks answered at the WSGI level, before Django's request machinery.

Stripe and Braintree may POST hundreds of signed events a second. Under gunicorn,
building a Django request, running the middleware chain and rendering a response
costs about as much CPU as verifying and storing the event itself, so
:func:`webhook_fast_path` wraps the Django WSGI application and answers the common
case directly: a ``POST`` to exactly ``/webhooks/stripe/`` or ``/webhooks/braintree/``,
no query string, a declared length (not chunked) of at most 1 MB, over HTTPS (or TLS
redirects off), a JSON or form body in which the card-number guard's search (run once, here)
finds no card number.

Anything else is handed to Django unchanged (the body re-wrapped when it was read),
which answers as it always does: the TLS redirect, the 405, the card-number guard's
refusal and its audit event. The exchange itself is ``payments.webhooks.receive``,
the same function the Django views call, so both paths store and answer alike; the
responses carry the same security headers as Django's (``tests/payments/
test_webhook_wsgi.py`` compares them). Database connections are looked after the way
Django does it, through its ``request_started`` and ``request_finished`` signals.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import SuspiciousOperation
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections

from payments import webhooks
from security.card_guard import (
    BODY_RESULT_ENVIRON_KEY,
    TOO_MANY_TO_CHECK,
    TooLargeToCheck,
    find_card_in_body,
)
from security.client_ip import client_ip_from_meta
from security.context import RequestContext, bind
from security.pan import TooManyToCheck

log = logging.getLogger("django.request")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
CONTENT_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})


def _is_secure(environ: dict[str, Any]) -> bool:
    """``HttpRequest.is_secure()`` without a request: the trusted proxy header, else the scheme."""
    header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if header:
        name, secure_value = header
        value = environ.get(name)
        if value is not None:
            return str(value).split(",", 1)[0].strip() == secure_value
    return environ.get("wsgi.url_scheme") == "https"


def _security_headers(secure: bool) -> list[tuple[str, str]]:
    """What SecurityMiddleware, XFrameOptionsMiddleware and the CSP middleware add to a response
    (built once per combination of the settings they read)."""
    return _headers_for(
        secure,
        settings.SECURE_HSTS_SECONDS,
        settings.SECURE_HSTS_INCLUDE_SUBDOMAINS,
        settings.SECURE_HSTS_PRELOAD,
        settings.SECURE_CONTENT_TYPE_NOSNIFF,
        str(settings.SECURE_REFERRER_POLICY),
        settings.SECURE_CROSS_ORIGIN_OPENER_POLICY,
        getattr(settings, "X_FRAME_OPTIONS", "DENY"),
        id(getattr(settings, "CONTENT_SECURITY_POLICY", None)),
    )


@lru_cache(maxsize=16)
def _headers_for(secure: bool, *setting_values: object) -> list[tuple[str, str]]:
    from csp.utils import build_policy

    headers: list[tuple[str, str]] = []
    if secure and settings.SECURE_HSTS_SECONDS:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers.append(("Strict-Transport-Security", hsts))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        headers.append(("Referrer-Policy", policy if isinstance(policy, str) else ",".join(policy)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))
    directives = (getattr(settings, "CONTENT_SECURITY_POLICY", None) or {}).get("DIRECTIVES")
    if directives:
        headers.append(("Content-Security-Policy", build_policy(config=directives)))
    return headers


def _answer(
    start_response: Callable[..., Any], status: int, payload: dict[str, Any], secure: bool
) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *_security_headers(secure),  # a copy: the cached list stays as built
        ],
    )
    return [body]


def _handle(environ: dict[str, Any], gateway: str, body: bytes | None) -> tuple[int, dict[str, Any]]:
    """One delivery between Django's request signals, as its request handler would run it."""
    signals.request_started.send(sender=WSGIHandler, environ=environ)
    try:
        # The one INSERT needs no ``SELECT 1`` health check first (see LeanPathMiddleware).
        for conn in connections.all(initialized_only=True):
            conn.health_check_done = True
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        context = RequestContext(
            ip=client_ip_from_meta(environ),
            user_agent=str(environ.get("HTTP_USER_AGENT", ""))[:300],
            request_id=str(environ.get("HTTP_X_REQUEST_ID", ""))[:64],
        )
        try:
            with bind(context):
                return webhooks.receive(gateway=gateway, body=body, headers=headers)
        except Exception:
            log.error("Internal Server Error: %s", environ.get("PATH_INFO"), exc_info=True)
            return 500, {
                "error": {"code": "server_error", "message": "The event could not be stored; retry."}
            }
    finally:
        signals.request_finished.send(sender=WSGIHandler)


def webhook_fast_path(django_app: WSGIApp) -> WSGIApp:
    """Wrap Django's WSGI application so the gateways' webhooks skip its request machinery."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        gateway = webhooks.GATEWAY_PATHS.get(environ.get("PATH_INFO", ""))
        if (
            gateway is None
            or environ.get("REQUEST_METHOD") != "POST"
            or environ.get("QUERY_STRING")
            or not environ.get("CONTENT_LENGTH")  # a chunked body: Django reads it
            or str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower() not in CONTENT_TYPES
        ):
            return django_app(environ, start_response)
        secure = _is_secure(environ)
        if settings.SECURE_SSL_REDIRECT and not secure:
            return django_app(environ, start_response)  # Django redirects to https
        if not webhooks.declared_length_ok(environ.get("CONTENT_LENGTH")):
            return _answer(start_response, *webhooks.receive(gateway=gateway, body=None, headers={}), secure)
        length = int(environ["CONTENT_LENGTH"])
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            found = find_card_in_body(body, environ.get("CONTENT_TYPE", ""))
        except (TooLargeToCheck, SuspiciousOperation):
            environ["wsgi.input"] = io.BytesIO(body)  # Django's guard refuses it
            return django_app(environ, start_response)
        except TooManyToCheck:
            # Django's guard refuses it without searching it all over again.
            environ[BODY_RESULT_ENVIRON_KEY] = TOO_MANY_TO_CHECK
            environ["wsgi.input"] = io.BytesIO(body)
            return django_app(environ, start_response)
        if found is not None:
            # Django's card-number guard refuses it (and audits who sent it) without searching
            # the body a second time.
            environ[BODY_RESULT_ENVIRON_KEY] = found
            environ["wsgi.input"] = io.BytesIO(body)
            return django_app(environ, start_response)
        status, payload = _handle(environ, gateway, body)
        return _answer(start_response, status, payload, secure)

    return application
