"""``POST /webhooks/stripe/`` and ``POST /webhooks/braintree/``: verify, store, acknowledge.

Bad signature, stale timestamp, oversized (over 1 MB) or malformed body: 400 and
nothing stored. A verified event is stored and answered with 200 at once; a
Celery task applies it. A redelivery gets 200 and is applied once.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.gateways.base import InvalidWebhook
from payments.services import webhook_ingest
from security.errors import ApplicationError

log = logging.getLogger("fintech_portal.payments.webhooks")
MAX_BODY_BYTES = 1024 * 1024


def _read_body(request: HttpRequest) -> bytes | None:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if declared > MAX_BODY_BYTES:
        return None
    body = request.read(MAX_BODY_BYTES + 1)
    return None if len(body) > MAX_BODY_BYTES else body


def _receive(request: HttpRequest, gateway: str) -> JsonResponse:
    body = _read_body(request)
    if body is None:
        return JsonResponse(
            {"error": {"code": "too_large", "message": "Webhook bodies are limited to 1 MB."}}, status=400
        )
    # Stripe signs in a header; Braintree posts a form (bt_signature, bt_payload) that its parser reads.
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        ingested = webhook_ingest(gateway=gateway, body=body, headers=headers)
    except InvalidWebhook as exc:
        log.info("webhook refused", extra={"gateway": gateway, "reason": exc.reason})
        return JsonResponse({"error": {"code": exc.reason, "message": exc.message}}, status=400)
    except ApplicationError as exc:
        return JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=exc.status_code)
    return JsonResponse({"received": True, "duplicate": ingested.duplicate})


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    return _receive(request, "stripe")


@csrf_exempt
@require_POST
def braintree_webhook(request: HttpRequest) -> JsonResponse:
    return _receive(request, "braintree")
