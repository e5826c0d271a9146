"""Celery tasks for payments: they take ids, are idempotent, ack late and retry with backoff.

Every task has soft and hard time limits: the defaults in settings (``CELERY_TASK_SOFT_TIME_LIMIT``,
``CELERY_TASK_TIME_LIMIT``), or its own where it needs others (merchant webhook deliveries, exports).
Merchant webhook deliveries run on their own queue (``settings.CELERY_TASK_ROUTES``).
"""

from __future__ import annotations

import logging
import time
import urllib.request

from celery import shared_task
from django.conf import settings

from payments import key_hygiene
from payments.merchant_webhooks import attempt_time_limits

log = logging.getLogger("fintech_portal.payments")

RETRY = {"max_retries": 12, "retry_backoff": 2, "retry_backoff_max": 600, "retry_jitter": True}
# One merchant webhook attempt: above the outbound client's overall deadline, below the lease.
WEBHOOK_SOFT_TIME_LIMIT, WEBHOOK_TIME_LIMIT = attempt_time_limits()
# A CSV export of a large date range (it starts over when interrupted, and is retried).
EXPORT_SOFT_TIME_LIMIT, EXPORT_TIME_LIMIT = 15 * 60, 16 * 60


@shared_task(name="payments.remind_gateway_key_rotation", acks_late=True, ignore_result=True)
def remind_gateway_key_rotation() -> int:
    """Daily: record gateway secret sightings and email admins about keys older than 90 days."""
    return key_hygiene.gateway_secrets_remind()


@shared_task(
    bind=True, name="payments.apply_webhook_event", acks_late=True, ignore_result=True, max_retries=12
)
def apply_webhook_event(self, webhook_pk: int) -> str:  # noqa: ANN001
    """Apply a stored webhook. Retries with backoff while the gateway (for a re-fetch) is down
    or while the payment it names is not known yet; applying twice does nothing."""
    from payments.gateways.base import GatewayError
    from payments.services import PaymentNotFoundYet, webhook_apply

    last_try = self.request.retries >= self.max_retries
    try:
        return webhook_apply(webhook_pk=webhook_pk, give_up_on_missing=last_try or self.request.retries >= 5)
    except PaymentNotFoundYet as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc
    except GatewayError as exc:
        if not exc.retryable or last_try:
            from payments.services import webhook_event_fail

            webhook_event_fail(webhook_pk=webhook_pk, reason=exc.message)
            raise
        raise self.retry(exc=exc, countdown=min(2 ** (self.request.retries + 1), 600)) from exc


# --- Draining stored gateway webhooks ---------------------------------------------------------------
#
# Ingestion stores an event and calls ``schedule_webhook_drain``: one cache ``add`` (SET NX in
# Redis), and none at all for ``WEBHOOK_DRAIN_TRUST_MS`` after it found the flag taken. The first
# event of a burst wins it and enqueues ``drain_webhook_events``; later events find the flag taken
# (or trust that they would) and cost nothing more, because the running drain picks them up. A
# drain applies waiting events in batches: the common case (a payment event that carries the
# state) in one transaction per batch (``services.webhook_apply_batch``), anything else one event
# per transaction; both hold the events' row locks (``skip_locked``: two drains never take the
# same event). It asks for a second drain slot when a full batch shows a backlog, up to
# ``WEBHOOK_DRAIN_PARALLELISM``. It stops when nothing is waiting, releasing its flag and waiting
# out the trust window *before* a last look, so an event stored meanwhile is either seen by that
# look or finds the flag free and schedules a new drain. A flag left by a worker that died expires
# after ``WEBHOOK_DRAIN_FLAG_SECONDS``, and the beat sweep schedules a drain every minute anyway.
# An event that fails (payment not known yet, gateway down for a re-fetch) leaves the drain and
# retries with backoff in ``apply_webhook_event``.

DRAIN_BATCH = 50


def _drain_flag(slot: int) -> str:
    return f"payments:webhook-drain:{slot}"


# When this process last saw slot 0's drain running: the time just *before* it asked Redis.
# For WEBHOOK_DRAIN_TRUST_MS after that it does not ask again. Safe because a drain, having
# released its flag, waits as long before its last look: an event stored on that trust was
# committed before ask + trust <= release + trust <= the last look, so the look sees it.
_drain_seen_running_at = [float("-inf")]


def schedule_webhook_drain(slot: int = 0) -> bool:
    """Make sure a drain runs for ``slot``; True when this call enqueued it."""
    from django.core.cache import cache

    trust = settings.WEBHOOK_DRAIN_TRUST_MS / 1000
    asked = time.monotonic()
    if slot == 0 and asked - _drain_seen_running_at[0] < trust:
        return False  # a drain was running a moment ago; it will see this event
    if not cache.add(_drain_flag(slot), 1, timeout=settings.WEBHOOK_DRAIN_FLAG_SECONDS):
        if slot == 0:
            _drain_seen_running_at[0] = asked
        return False
    try:
        drain_webhook_events.delay(slot)
    except Exception:
        cache.delete(_drain_flag(slot))  # let the next event (or the sweep) try again
        raise
    return True


@shared_task(name="payments.drain_webhook_events", acks_late=True, ignore_result=True)
def drain_webhook_events(slot: int = 0) -> int:
    """Apply every waiting gateway webhook; returns how many this drain handled."""
    from django.core.cache import cache

    from payments import selectors
    from payments.services import BatchApplied, webhook_apply, webhook_apply_batch

    flag, handled, tried = _drain_flag(slot), 0, set()
    started = time.monotonic()
    try:
        while True:
            waiting = [
                pk
                for pk in selectors.webhook_events_waiting(limit=DRAIN_BATCH, newest_first=slot % 2 == 1)
                if pk not in tried
            ]
            if not waiting:
                cache.delete(flag)
                if slot == 0 and settings.WEBHOOK_DRAIN_TRUST_MS:
                    # Ingestion trusts a drain it saw running a moment ago (schedule_webhook_drain).
                    time.sleep(settings.WEBHOOK_DRAIN_TRUST_MS / 1000)
                if not selectors.webhook_events_waiting(limit=1):
                    return handled
                if not cache.add(flag, 1, timeout=settings.WEBHOOK_DRAIN_FLAG_SECONDS):
                    return handled  # another drain took over
                continue
            if len(waiting) == DRAIN_BATCH and slot + 1 < settings.WEBHOOK_DRAIN_PARALLELISM:
                schedule_webhook_drain(slot + 1)
            cache.touch(flag, settings.WEBHOOK_DRAIN_FLAG_SECONDS)
            tried.update(waiting)
            try:
                batch = webhook_apply_batch(webhook_pks=waiting)
            except Exception:  # noqa: BLE001 - rolled back whole (a deadlock, say): one at a time instead
                log.warning("webhook batch failed; applying its events one at a time", exc_info=True)
                batch = BatchApplied(done=[], leftover=waiting)
            handled += len(batch.done)
            for pk in batch.leftover:
                try:
                    if webhook_apply(webhook_pk=pk, skip_locked=True) == "busy":
                        continue  # another drain holds it and counts it
                except Exception:  # noqa: BLE001 - counted on the row; retried on its own with backoff
                    log.warning("webhook %s: first attempt failed; retrying with backoff", pk, exc_info=True)
                    apply_webhook_event.apply_async(args=[pk], countdown=2)
                handled += 1
            if (
                len(waiting) == DRAIN_BATCH
                and time.monotonic() - started >= settings.WEBHOOK_DRAIN_MAX_SECONDS
            ):
                # A backlog, and this drain has run long enough: well inside the task's time
                # limits, it hands its flag to a fresh drain task and stops.
                cache.touch(flag, settings.WEBHOOK_DRAIN_FLAG_SECONDS)
                drain_webhook_events.delay(slot)
                return handled
    except BaseException:
        cache.delete(flag)
        raise


@shared_task(name="payments.sweep_webhook_events", acks_late=True, ignore_result=True)
def sweep_webhook_events() -> bool:
    """Every minute: a drain for anything waiting (a safety net behind the flags' expiry)."""
    from payments import selectors

    return bool(selectors.webhook_events_waiting(limit=1)) and schedule_webhook_drain()


def _post_to_our_webhook(body: bytes, headers: dict[str, str]) -> int:
    """POST a signed event to our own /webhooks/stripe/ (SITE_URL is our configuration, not user input)."""
    url = settings.SITE_URL.rstrip("/") + "/webhooks/stripe/"
    if not url.startswith(("http://", "https://")):
        raise ValueError("SITE_URL must be an http(s) URL")
    headers = {**headers, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status


@shared_task(
    bind=True, name="payments.deliver_simulated_webhook", acks_late=True, ignore_result=True, **RETRY
)
def deliver_simulated_webhook(self, payment_pk: int) -> None:  # noqa: ANN001
    """The simulated gateway sends the payment's current state to our webhook endpoint, like Stripe."""
    from payments.gateways import registry
    from payments.models import Payment

    payment = Payment.objects.filter(pk=payment_pk, gateway="simulated").first()
    if payment is None or not payment.gateway_payment_id:
        return
    gateway = registry.gateway_for("simulated")
    body, headers = gateway.signed_payment_event(  # type: ignore[attr-defined]
        payment.gateway_payment_id, merchant_account=payment.merchant_account or None
    )
    try:
        _post_to_our_webhook(body, headers)
    except OSError as exc:
        raise self.retry(exc=exc) from exc


@shared_task(
    bind=True, name="payments.deliver_simulated_refund_webhook", acks_late=True, ignore_result=True, **RETRY
)
def deliver_simulated_refund_webhook(self, refund_pk: int) -> None:  # noqa: ANN001
    from payments.gateways import registry
    from payments.models import Refund

    refund = (
        Refund.objects.select_related("payment").filter(pk=refund_pk, payment__gateway="simulated").first()
    )
    if refund is None or not refund.gateway_refund_id or not refund.payment.gateway_payment_id:
        return
    gateway = registry.gateway_for("simulated")
    body, headers = gateway.signed_refund_event(  # type: ignore[attr-defined]
        refund.payment.gateway_payment_id,
        refund.gateway_refund_id,
        merchant_account=refund.payment.merchant_account or None,
        event_type="refund.updated",
    )
    try:
        _post_to_our_webhook(body, headers)
    except OSError as exc:
        raise self.retry(exc=exc) from exc


@shared_task(bind=True, name="payments.cancel_blocked_payment", acks_late=True, ignore_result=True, **RETRY)
def cancel_blocked_payment(self, payment_pk: int) -> str:  # noqa: ANN001
    """Cancel at the gateway an authorised payment our fraud rules blocked on its result.

    Idempotent (a payment no longer authorised is left alone); retries with backoff while the
    gateway is unreachable, and asks a person (review queue) when it cannot be canceled.
    """
    from payments.fraud_rules import payment_cancel_blocked
    from payments.gateways.base import GatewayError

    try:
        return payment_cancel_blocked(
            payment_pk=payment_pk, final_attempt=self.request.retries >= self.max_retries
        )
    except GatewayError as exc:
        raise self.retry(exc=exc, countdown=min(2 ** (self.request.retries + 1), 600)) from exc


# --- Merchant API and outgoing merchant webhooks ---------------------------------------------------


@shared_task(
    name="payments.deliver_merchant_webhook",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=WEBHOOK_SOFT_TIME_LIMIT,
    time_limit=WEBHOOK_TIME_LIMIT,
)
def deliver_merchant_webhook(delivery_pk: int) -> str:
    """One attempt at a merchant webhook delivery, if it is due. The service schedules the next
    attempt (exponential backoff, up to three days), or defers it when the merchant already has
    its cap of deliveries in flight; running twice, or early, does nothing. Routed to the
    ``merchant_webhooks`` queue."""
    from payments.merchant_webhooks import webhook_delivery_attempt

    return webhook_delivery_attempt(delivery_pk=delivery_pk).status


@shared_task(name="payments.sweep_merchant_webhooks", acks_late=True, ignore_result=True)
def sweep_merchant_webhooks() -> int:
    """Every minute: enqueue deliveries that are due (heals lost or long-delayed messages)."""
    from payments.merchant_webhooks import webhook_deliveries_sweep

    return webhook_deliveries_sweep()


@shared_task(name="payments.purge_idempotency_keys", acks_late=True, ignore_result=True)
def purge_idempotency_keys() -> int:
    """Hourly: forget API idempotency keys older than 24 hours."""
    from payments.idempotency import idempotency_records_purge

    return idempotency_records_purge()


@shared_task(name="payments.purge_merchant_webhook_log", acks_late=True, ignore_result=True)
def purge_merchant_webhook_log() -> int:
    """Daily: delete finished merchant webhook deliveries older than 30 days."""
    from payments.merchant_webhooks import webhook_deliveries_purge

    return webhook_deliveries_purge()


# --- Merchant dashboard: CSV exports and the charts' rollup -----------------------------------------


@shared_task(
    bind=True,
    name="payments.export_payments",
    acks_late=True,
    ignore_result=True,
    max_retries=5,
    soft_time_limit=EXPORT_SOFT_TIME_LIMIT,
    time_limit=EXPORT_TIME_LIMIT,
)
def export_payments(self, export_pk: int) -> str:  # noqa: ANN001
    """Build a payments CSV export. Idempotent (a finished export is left alone; an interrupted
    one starts over); retried with backoff, then marked failed."""
    from payments.exports import payment_export_fail, payment_export_run
    from security.errors import ApplicationError

    try:
        return payment_export_run(export_pk=export_pk)
    except ApplicationError as exc:  # e.g. its filters no longer validate: retrying cannot help
        payment_export_fail(export_pk=export_pk, reason=exc.message)
        return "failed"
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            log.exception("payments export %s failed", export_pk)
            payment_export_fail(export_pk=export_pk, reason="The export could not be built. Try again.")
            return "failed"
        raise self.retry(exc=exc, countdown=min(2 ** (self.request.retries + 1), 300)) from exc


@shared_task(name="payments.purge_payment_exports", acks_late=True, ignore_result=True)
def purge_payment_exports() -> int:
    """Hourly: drop the files of exports older than 7 days."""
    from payments.exports import payment_exports_purge

    return payment_exports_purge()


@shared_task(name="payments.refresh_payment_stats", acks_late=True, ignore_result=True)
def refresh_payment_stats(days: int = 3) -> int:
    """Nightly: recompute the charts' rollup for the last few days (repairs any drift)."""
    import datetime as dt

    from django.utils import timezone

    from payments.stats import stats_rebuild

    today = timezone.now().astimezone(dt.UTC).date()
    return stats_rebuild(first=today - dt.timedelta(days=days - 1), last=today)
