"""``POST /webhooks/stripe/`` and ``POST /webhooks/braintree/``: verify, store, acknowledge.

Bad signature, stale timestamp, oversized (over 1 MB) or malformed body: 400 and
nothing stored. A verified event is stored and answered with 200 at once; a
Celery task applies it. A redelivery gets 200 and is applied once.

:func:`receive` is the whole exchange, free of any HTTP framework: the Django views
below call it, and so does the WSGI fast path in ``fintech_portal.webhook_wsgi``
that answers these two URLs under gunicorn without Django's request machinery.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.gateways.base import InvalidWebhook
from payments.services import webhook_ingest
from security.errors import ApplicationError

log = logging.getLogger("fintech_portal.payments.webhooks")
MAX_BODY_BYTES = 1024 * 1024
GATEWAY_PATHS: Mapping[str, str] = {"/webhooks/stripe/": "stripe", "/webhooks/braintree/": "braintree"}
TOO_LARGE: dict[str, Any] = {"error": {"code": "too_large", "message": "Webhook bodies are limited to 1 MB."}}


def declared_length_ok(content_length: str | None) -> bool:
    """Whether a ``Content-Length`` header allows reading the body (absent counts as empty)."""
    try:
        return 0 <= int(content_length or 0) <= MAX_BODY_BYTES
    except ValueError:
        return False


def receive(*, gateway: str, body: bytes | None, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """Verify and store one delivery; returns the HTTP status and the JSON body to answer with.

    ``body`` is ``None`` when it was over the limit (nothing is read further or stored);
    ``headers`` are keyed in lower case.
    """
    if body is None:
        return 400, TOO_LARGE
    try:
        ingested = webhook_ingest(gateway=gateway, body=body, headers=headers)
    except InvalidWebhook as exc:
        log.info("webhook refused", extra={"gateway": gateway, "reason": exc.reason})
        return 400, {"error": {"code": exc.reason, "message": exc.message}}
    except ApplicationError as exc:
        return exc.status_code, {"error": {"code": exc.code, "message": exc.message}}
    return 200, {"received": True, "duplicate": ingested.duplicate}


def _read_body(request: HttpRequest) -> bytes | None:
    if not declared_length_ok(request.META.get("CONTENT_LENGTH")):
        return None
    body = request.read(MAX_BODY_BYTES + 1)
    return None if len(body) > MAX_BODY_BYTES else body


def _receive(request: HttpRequest, gateway: str) -> JsonResponse:
    # Stripe signs in a header; Braintree posts a form (bt_signature, bt_payload) that its parser reads.
    headers = {k.lower(): v for k, v in request.headers.items()}
    status, payload = receive(gateway=gateway, body=_read_body(request), headers=headers)
    return JsonResponse(payload, status=status)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    return _receive(request, "stripe")


@csrf_exempt
@require_POST
def braintree_webhook(request: HttpRequest) -> JsonResponse:
    return _receive(request, "braintree")
