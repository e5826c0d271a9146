"""Outgoing merchant webhooks: endpoints, events, signing and delivery with retries.

Events
    ``payments.signals`` fire inside the transaction that changes a payment or
    refund. :func:`event_emit` writes one :class:`WebhookDelivery` per enabled,
    subscribed endpoint in that same transaction (so an event exists exactly
    when the change committed) and enqueues the delivery task on commit.

Payload
    ``{"id": "evt_…", "object": "event", "type": "payment.succeeded",
    "created": <unix>, "livemode": false, "data": {"object": {…}}}``: the object
    is the API's own representation (public ids, minor units, masked email).

Signature
    ``Fintech-Signature: t=<unix>,v1=<hex>`` where ``v1`` is
    HMAC-SHA256(endpoint secret, f"{t}.{body}"). Receivers recompute it over the
    raw body, compare in constant time and refuse timestamps older than a few
    minutes (:func:`signature_verify` does exactly that).

Delivery
    Through ``security.outbound`` (SSRF-safe, https only outside DEBUG, the
    resolved address pinned). A 2xx answer is success; anything else, a
    redirect, a timeout or a refused address is a failed attempt, logged with
    status code, duration, a response snippet and the error, then retried with
    exponential backoff (1 minute doubling to 6 hours) until three days after the
    event (or the last manual resend), when the delivery is marked failed.

Workers
    Deliveries run on their own Celery queue (``settings.MERCHANT_WEBHOOK_QUEUE``) so a slow
    merchant never holds the workers that apply gateway events, build exports or cancel
    payments. One attempt is bounded by the outbound client's overall deadline (connect +
    2 × read timeout, enforced on every socket operation); the task's soft and hard time
    limits sit above it (:func:`attempt_time_limits`) and the lease that keeps other workers
    off a delivery being attempted lasts longer still, so a delivery is never handed to a
    second worker while the first may still be sending it. At most
    ``MERCHANT_WEBHOOK_MAX_CONCURRENT`` deliveries per merchant are attempted at once; the
    rest are deferred (re-queued with a countdown, without holding a worker).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import random
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import merchant_roles
from accounts.models import Merchant, User
from accounts.selectors import member_can
from payments import batch_memo
from payments.models import Payment, Refund, WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from payments.models.endpoints import EVENT_TYPES
from security import audit, outbound
from security.crypto import ERASED
from security.errors import ApplicationError, PermissionDeniedError
from security.ids import new_public_id

log = logging.getLogger("fintech_portal.payments")

SIGNATURE_HEADER = "Fintech-Signature"
SIGNATURE_TOLERANCE = timedelta(minutes=5)
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_LENGTH = 32
MAX_ENDPOINTS_PER_MERCHANT = 16
MAX_URL_LENGTH = 2000
RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=6)
RETRY_WINDOW = timedelta(days=3)
# Margins between the outbound deadline, the task's soft and hard time limits and the lease.
TIME_LIMIT_MARGIN = 15
LEASE_MARGIN = 30
# A delivery over its merchant's concurrency cap waits DEFER_MIN for each of the merchant's
# deliveries queued (due, or deferred within DEFER_MAX), divided by the cap, between DEFER_MIN
# and DEFER_MAX, plus up to half again at random: a long queue is not re-polled every second.
DEFER_MIN = timedelta(seconds=5)
DEFER_MAX = timedelta(minutes=10)
DEFER_COUNT_LIMIT = 1000
SNIPPET_LENGTH = 500
MAX_RESPONSE_BYTES = 256 * 1024
USER_AGENT = "fintech_portal-webhooks/1"
PAYMENT_STATUSES_SENT = frozenset(
    {
        Payment.Status.REQUIRES_ACTION,
        Payment.Status.PROCESSING,
        Payment.Status.REQUIRES_CAPTURE,
        Payment.Status.SUCCEEDED,
        Payment.Status.FAILED,
        Payment.Status.CANCELED,
    }
)


# --- Signing ----------------------------------------------------------------------------------


def secret_generate() -> str:
    alphabet = string.ascii_letters + string.digits
    return SECRET_PREFIX + "".join(secrets.choice(alphabet) for _ in range(SECRET_LENGTH))


def signature_compute(*, secret: str, timestamp: int, body: str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def signature_header(*, secret: str, timestamp: int, body: str) -> str:
    return f"t={timestamp},v1={signature_compute(secret=secret, timestamp=timestamp, body=body)}"


def signature_verify(
    *,
    secret: str,
    body: str,
    header: str,
    now: float | None = None,
    tolerance: timedelta = SIGNATURE_TOLERANCE,
) -> bool:
    """What a receiver does: parse ``t`` and every ``v1``, check the age, compare in constant time."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance.total_seconds():
        return False
    expected = signature_compute(secret=secret, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


# --- Endpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def _require_manager(actor: User, merchant: Merchant) -> None:
    if not member_can(actor, merchant.pk, merchant_roles.WEBHOOKS_MANAGE):
        raise PermissionDeniedError("Only owners, admins and developers manage webhook endpoints.")


def endpoint_url_validate(url: str) -> str:
    """The URL, stripped, if outbound HTTP may reach it; otherwise an error with the reason."""
    url = (url or "").strip()
    if not url:
        raise ApplicationError("Enter the URL that should receive events.", code="invalid_url")
    if len(url) > MAX_URL_LENGTH:
        raise ApplicationError(f"Keep the URL under {MAX_URL_LENGTH} characters.", code="invalid_url")
    try:
        outbound.check_url(url)
    except outbound.UnsafeURL as exc:
        raise ApplicationError(f"This URL cannot receive webhooks: {exc.reason}.", code="unsafe_url") from exc
    return url


def _event_types_validate(event_types: list[str] | None) -> list[str]:
    chosen = sorted(set(event_types or []))
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown:
        raise ApplicationError(f"Unknown event types: {', '.join(unknown)}.", code="invalid_event_types")
    return [] if set(chosen) == set(EVENT_TYPES) else chosen


def webhook_endpoint_create(
    *,
    actor: User,
    merchant: Merchant,
    url: str,
    description: str = "",
    event_types: list[str] | None = None,
) -> IssuedEndpoint:
    """Register an endpoint; the returned secret is the only time anyone sees it."""
    url = endpoint_url_validate(url)
    description = (description or "").strip()
    if len(description) > 200:
        raise ApplicationError("Keep the description under 200 characters.")
    types = _event_types_validate(event_types)
    with transaction.atomic():
        merchant = Merchant.objects.select_for_update().get(pk=merchant.pk)
        _require_manager(actor, merchant)
        if WebhookEndpoint.objects.filter(merchant=merchant).count() >= MAX_ENDPOINTS_PER_MERCHANT:
            raise ApplicationError(
                f"A merchant can have at most {MAX_ENDPOINTS_PER_MERCHANT} webhook endpoints; "
                "delete one you no longer use.",
                code="too_many_endpoints",
            )
        secret = secret_generate()
        endpoint = WebhookEndpoint.objects.create(
            merchant=merchant,
            url=url,
            description=description,
            event_types=types,
            secret=secret,
            created_by=actor,
        )
        audit.record(
            actor=actor,
            action="webhook_endpoint.created",
            target=endpoint,
            merchant=merchant,
            details={"host": _host(url), "events": types or "all"},
        )
    return IssuedEndpoint(endpoint=endpoint, secret=secret)


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "")[:200]


def webhook_endpoint_set_enabled(*, actor: User, endpoint: WebhookEndpoint, enabled: bool) -> WebhookEndpoint:
    """Disable (no new events; pending deliveries are canceled when they come due) or enable again."""
    with transaction.atomic():
        locked = (
            WebhookEndpoint.objects.select_for_update(of=("self",))
            .select_related("merchant")
            .get(pk=endpoint.pk)
        )
        _require_manager(actor, locked.merchant)
        if locked.enabled == enabled:
            raise ApplicationError(f"This endpoint is already {'enabled' if enabled else 'disabled'}.")
        locked.enabled = enabled
        locked.disabled_at = None if enabled else timezone.now()
        locked.save(update_fields=["enabled", "disabled_at"])
        audit.record(
            actor=actor,
            action="webhook_endpoint.enabled" if enabled else "webhook_endpoint.disabled",
            target=locked,
            merchant=locked.merchant,
        )
    return locked


def webhook_endpoint_delete(*, actor: User, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its deliveries and their log. Nothing more is sent to it."""
    with transaction.atomic():
        locked = (
            WebhookEndpoint.objects.select_for_update(of=("self",))
            .select_related("merchant")
            .get(pk=endpoint.pk)
        )
        _require_manager(actor, locked.merchant)
        audit.record(
            actor=actor,
            action="webhook_endpoint.deleted",
            target=locked,
            merchant=locked.merchant,
            details={"host": _host(locked.url)},
        )
        locked.delete()


def webhook_delivery_resend(*, actor: User, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now; failed deliveries get a fresh three-day retry window."""
    with transaction.atomic():
        locked = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint", "merchant")
            .get(pk=delivery.pk)
        )
        _require_manager(actor, locked.merchant)
        if not locked.endpoint.enabled:
            raise ApplicationError("Enable the endpoint before resending to it.", code="endpoint_disabled")
        now = timezone.now()
        if locked.lease_until and locked.lease_until > now:
            raise ApplicationError(
                "This delivery is being attempted right now; look again in a minute.",
                code="delivery_in_progress",
            )
        locked.status = WebhookDelivery.Status.PENDING
        locked.next_attempt_at = now
        locked.window_started_at = now
        locked.manual_pending = True
        locked.save(update_fields=["status", "next_attempt_at", "window_started_at", "manual_pending"])
        audit.record(
            actor=actor,
            action="webhook_delivery.resent",
            target=locked,
            merchant=locked.merchant,
            details={"event": locked.event_id, "type": locked.event_type},
        )
        pk = locked.pk
        transaction.on_commit(lambda: _enqueue(pk))
    return locked


# --- Events -------------------------------------------------------------------------------------


def _enqueue(delivery_pk: int, countdown: float | None = None) -> None:
    from payments import tasks

    if countdown:
        tasks.deliver_merchant_webhook.apply_async(args=[delivery_pk], countdown=countdown)
    else:
        tasks.deliver_merchant_webhook.delay(delivery_pk)


def _enqueue_all(pks: list[int]) -> None:
    for pk in pks:
        _enqueue(pk)


def event_payload(
    *, event_id: str, event_type: str, obj: dict[str, Any], livemode: bool, created: int
) -> str:
    payload = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": created,
        "livemode": livemode,
        "data": {"object": obj},
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def event_emit(
    *, merchant_id: int, event_type: str, build_object: Any, livemode: bool, now: datetime | None = None
) -> list[WebhookDelivery]:
    """Record one delivery per enabled endpoint of the merchant that wants ``event_type``.

    Call inside the transaction that made the change; the deliveries are sent on commit.
    ``build_object`` is called only when some endpoint wants the event.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(merchant_id=merchant_id, enabled=True)
        if e.receives(event_type)
    ]
    if not endpoints:
        return []
    now = now or timezone.now()
    event_id = new_public_id("evt")
    body = event_payload(
        event_id=event_id,
        event_type=event_type,
        obj=build_object(),
        livemode=livemode,
        created=int(now.timestamp()),
    )
    deliveries = [
        WebhookDelivery(
            merchant_id=merchant_id,
            endpoint=endpoint,
            event_id=event_id,
            event_type=event_type,
            body=body,
            next_attempt_at=now,
            window_started_at=now,
            created_at=now,
        )
        for endpoint in endpoints
    ]
    WebhookDelivery.objects.bulk_create(deliveries)
    pks = [d.pk for d in deliveries]
    if None in pks:  # a database that cannot return ids from a bulk insert
        pks = list(WebhookDelivery.objects.filter(event_id=event_id).values_list("pk", flat=True))
    transaction.on_commit(lambda: _enqueue_all(pks))
    return deliveries


def _emit_safely(
    *, merchant_id: int, event_type: str, build_object: Any, livemode: Callable[[], bool]
) -> None:
    """A webhook problem must never undo a payment: a savepoint, and a logged error.

    ``livemode`` is asked only when the merchant has an endpoint (it may need a query).
    """
    if not batch_memo.remember(
        ("webhook_endpoint_enabled", merchant_id),
        lambda: WebhookEndpoint.objects.filter(merchant_id=merchant_id, enabled=True).exists(),
    ):
        return  # most merchants have no endpoint: one read (per webhook batch), no savepoint
    try:
        with transaction.atomic():
            event_emit(
                merchant_id=merchant_id, event_type=event_type, build_object=build_object, livemode=livemode()
            )
    except Exception:  # noqa: BLE001 - the payment's transaction must go on; the failure is logged
        log.exception("merchant webhooks: could not record %s", event_type)


def _payment_object(payment: Payment) -> dict[str, Any]:
    from payments.api_serializers import PaymentSerializer

    return dict(PaymentSerializer(payment).data)


def _refund_object(refund: Refund) -> dict[str, Any]:
    from payments.api_serializers import RefundSerializer

    return dict(RefundSerializer(refund).data)


def on_payment_status_changed(sender: Any, payment: Payment, status: str, **kwargs: Any) -> None:
    if status not in PAYMENT_STATUSES_SENT:
        return
    _emit_safely(
        merchant_id=payment.merchant_id,
        event_type=f"payment.{status}",
        build_object=lambda: _payment_object(payment),
        livemode=lambda: payment.mode == "live",
    )


def on_refund_created(sender: Any, refund: Refund, **kwargs: Any) -> None:
    _emit_safely(
        merchant_id=refund.merchant_id,
        event_type="refund.created",
        build_object=lambda: _refund_object(refund),
        livemode=lambda: refund.payment.mode == "live",
    )


def on_refund_status_changed(sender: Any, refund: Refund, status: str, **kwargs: Any) -> None:
    event_type = f"refund.{status}"
    if event_type not in EVENT_TYPES:
        return
    _emit_safely(
        merchant_id=refund.merchant_id,
        event_type=event_type,
        build_object=lambda: _refund_object(refund),
        livemode=lambda: refund.payment.mode == "live",
    )


def connect_signals() -> None:
    from payments import signals

    signals.payment_status_changed.connect(
        on_payment_status_changed, dispatch_uid="merchant_webhooks.payment"
    )
    signals.refund_created.connect(on_refund_created, dispatch_uid="merchant_webhooks.refund_created")
    signals.refund_status_changed.connect(on_refund_status_changed, dispatch_uid="merchant_webhooks.refund")


# --- Delivery -----------------------------------------------------------------------------------


def retry_delay(failed_attempts: int, *, jitter: float | None = None) -> timedelta:
    """Wait after the ``failed_attempts``-th failure: 1 min, 2, 4, … capped at 6 hours, plus up to 10 %."""
    base = RETRY_BASE.total_seconds() * (2 ** max(failed_attempts - 1, 0))
    seconds = min(base, RETRY_MAX.total_seconds())
    spread = random.random() if jitter is None else jitter  # noqa: S311 - spreading load, not security
    return timedelta(seconds=seconds * (1 + 0.1 * spread))


@dataclass(frozen=True)
class AttemptResult:
    attempted: bool
    status: str
    retry_in: float | None = None  # seconds until the next attempt, when one is scheduled
    reason: str = ""


def attempt_time_limits() -> tuple[int, int]:
    """(soft, hard) Celery time limits, in seconds, of one delivery attempt.

    Above the outbound client's overall deadline (connect + 2 × read timeout), so they only
    ever stop an attempt stuck somewhere the deadline cannot reach (DNS, the database).
    """
    soft = math.ceil(outbound.overall_deadline_seconds()) + TIME_LIMIT_MARGIN
    return soft, soft + TIME_LIMIT_MARGIN


def attempt_lease() -> timedelta:
    """How long a claimed delivery is kept from other workers: past the task's hard time limit,
    when the worker process running the attempt has been killed if it had not finished."""
    return timedelta(seconds=attempt_time_limits()[1] + LEASE_MARGIN)


def _defer_delay(waiting: int, cap: int) -> timedelta:
    spread = random.random()  # noqa: S311 - spreading load, not security
    seconds = DEFER_MIN.total_seconds() * max(1.0, waiting / cap)
    return timedelta(seconds=min(seconds, DEFER_MAX.total_seconds()) * (1 + 0.5 * spread))


@dataclass(frozen=True)
class _Claim:
    delivery: WebhookDelivery | None
    reason: str = ""
    defer_for: timedelta | None = None


def _claim(delivery_pk: int, now: datetime) -> _Claim:
    with transaction.atomic():
        # The merchant's row serialises claims for one merchant (always taken before the
        # delivery's), so two workers cannot both count the same free slot under the cap.
        # Found and locked in one statement (the delivery's merchant never changes).
        merchant_id = (
            Merchant.objects.select_for_update()
            .filter(pk__in=WebhookDelivery.objects.filter(pk=delivery_pk).values("merchant_id"))
            .values_list("pk", flat=True)
            .first()
        )
        if merchant_id is None:
            return _Claim(None, "gone")
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_pk)
            .first()
        )
        if delivery is None:
            return _Claim(None, "gone")
        if delivery.status != WebhookDelivery.Status.PENDING:
            return _Claim(None, f"already {delivery.status}")
        if delivery.next_attempt_at and delivery.next_attempt_at > now:
            return _Claim(None, "not due")
        if delivery.lease_until and delivery.lease_until > now:
            return _Claim(None, "being attempted by another worker")
        if not delivery.endpoint.enabled:
            delivery.status = WebhookDelivery.Status.CANCELED
            delivery.last_error = "The endpoint was disabled; not sent."
            delivery.next_attempt_at = None
            delivery.save(update_fields=["status", "last_error", "next_attempt_at"])
            return _Claim(None, "endpoint disabled")
        cap = int(settings.MERCHANT_WEBHOOK_MAX_CONCURRENT)
        in_flight = (
            WebhookDelivery.objects.filter(merchant_id=merchant_id, lease_until__gt=now)
            .exclude(pk=delivery.pk)
            .count()
        )
        if in_flight >= cap:
            # Its place in the merchant's queue: deliveries due now or already deferred, not in flight.
            waiting = (
                WebhookDelivery.objects.filter(
                    merchant_id=merchant_id,
                    status=WebhookDelivery.Status.PENDING,
                    next_attempt_at__lte=now + DEFER_MAX,
                )
                .exclude(lease_until__gt=now)
                .order_by()[:DEFER_COUNT_LIMIT]
                .count()
            )
            wait = _defer_delay(waiting, cap)
            # Not due before then: the sweeper leaves it alone and early copies of the task skip it.
            delivery.next_attempt_at = now + wait
            delivery.save(update_fields=["next_attempt_at"])
            return _Claim(
                None,
                f"deferred: {in_flight} deliveries to this merchant are being attempted "
                f"(at most {cap} at once)",
                defer_for=wait,
            )
        delivery.lease_until = now + attempt_lease()
        delivery.save(update_fields=["lease_until"])
    return _Claim(delivery)


def _snippet(content: bytes) -> str:
    text = content[: SNIPPET_LENGTH * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:SNIPPET_LENGTH]


def _send(endpoint: WebhookEndpoint, body: str) -> tuple[int | None, str, str]:
    """POST the body, signed now. Returns (status code, response snippet, error)."""
    secret = endpoint.secret
    if secret is ERASED or not secret:
        return None, "", "The signing secret was erased; create a new endpoint."
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(secret=str(secret), timestamp=timestamp, body=body),
    }
    try:
        response = outbound.post(
            endpoint.url, data=body.encode(), headers=headers, max_bytes=MAX_RESPONSE_BYTES
        )
    except outbound.UnsafeURL as exc:
        return None, "", f"Refused: {exc.reason}."[:300]
    except outbound.OutboundError as exc:
        return None, "", str(exc)[:300]
    except OSError as exc:
        return None, "", f"Connection failed: {exc.__class__.__name__}."
    except SoftTimeLimitExceeded:
        return None, "", "The attempt ran past its time limit and was stopped."
    snippet = _snippet(response.content)
    if response.redirects:
        return response.status, snippet, "Redirects are not followed for webhooks; use the final URL."
    if not 200 <= response.status < 300:
        return response.status, snippet, f"The endpoint answered {response.status}."
    return response.status, snippet, ""


def webhook_delivery_attempt(*, delivery_pk: int, now: datetime | None = None) -> AttemptResult:
    """Make one attempt if the delivery is due; schedule the next or give up after three days.

    Idempotent: a delivery that is not pending, not yet due, or being attempted
    by another worker right now is left alone. One over its merchant's concurrency cap is
    deferred: made due a little later and re-queued with that countdown.
    """
    now = now or timezone.now()
    claim = _claim(delivery_pk, now)
    delivery = claim.delivery
    if delivery is None:
        if claim.defer_for is not None:
            # Over the merchant's cap: come back later instead of waiting here, holding a worker.
            wait = max(claim.defer_for.total_seconds(), 1.0)
            transaction.on_commit(lambda: _enqueue(delivery_pk, countdown=wait))
            return AttemptResult(False, "deferred", retry_in=wait, reason=claim.reason)
        return AttemptResult(False, "skipped", reason=claim.reason)
    started = time.monotonic()
    status_code, snippet, error = _send(delivery.endpoint, delivery.body)
    duration_ms = int((time.monotonic() - started) * 1000)
    finished = now + timedelta(milliseconds=duration_ms)
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        number = locked.attempts + 1
        WebhookDeliveryAttempt.objects.create(
            delivery=locked,
            number=number,
            manual=locked.manual_pending,
            started_at=now,
            duration_ms=duration_ms,
            status_code=status_code,
            response_snippet=snippet,
            error=error,
        )
        locked.attempts = number
        locked.last_attempt_at = now
        locked.last_status_code = status_code
        locked.last_error = error
        locked.manual_pending = False
        locked.lease_until = None
        retry_in: float | None = None
        if not error:
            locked.status = WebhookDelivery.Status.SUCCEEDED
            locked.delivered_at = finished
            locked.next_attempt_at = None
        else:
            deadline = locked.window_started_at + RETRY_WINDOW
            if finished >= deadline:
                locked.status = WebhookDelivery.Status.FAILED
                locked.next_attempt_at = None
                locked.last_error = f"{error} Gave up after 3 days of retries."[:300]
            else:
                due = min(finished + retry_delay(number), deadline)
                locked.next_attempt_at = due
                retry_in = max((due - finished).total_seconds(), 1.0)
        locked.save()
    if retry_in is not None:
        pk = locked.pk
        transaction.on_commit(lambda: _enqueue(pk, countdown=retry_in))
    return AttemptResult(True, locked.status, retry_in=retry_in, reason=error)


def webhook_deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Pending deliveries whose time has come (the sweeper re-enqueues them; lost messages heal)."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .exclude(lease_until__gt=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def webhook_deliveries_sweep(*, now: datetime | None = None) -> int:
    due = webhook_deliveries_due(now=now)
    for pk in due:
        _enqueue(pk)
    return len(due)


DELIVERY_LOG_RETENTION = timedelta(days=30)


def webhook_deliveries_purge(*, now: datetime | None = None, batch: int = 2000) -> int:
    """Delete finished deliveries (and their attempt log) older than 30 days. Returns how many."""
    cutoff = (now or timezone.now()) - DELIVERY_LOG_RETENTION
    finished = [
        WebhookDelivery.Status.SUCCEEDED,
        WebhookDelivery.Status.FAILED,
        WebhookDelivery.Status.CANCELED,
    ]
    total = 0
    while True:
        ids = list(
            WebhookDelivery.objects.filter(created_at__lt=cutoff, status__in=finished).values_list(
                "pk", flat=True
            )[:batch]
        )
        if not ids:
            return total
        WebhookDelivery.objects.filter(pk__in=ids).delete()
        total += len(ids)
