"""Merchant webhooks cannot hold workers: each attempt ends at the outbound deadline, a delivery in
flight stays with its worker past the task's hard time limit, and one merchant gets at most
``MERCHANT_WEBHOOK_MAX_CONCURRENT`` deliveries attempted at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection, connections
from django.utils import timezone

from payments import merchant_webhooks, tasks
from payments.merchant_webhooks import (
    webhook_deliveries_due,
    webhook_delivery_attempt,
    webhook_endpoint_create,
)
from payments.models import WebhookDelivery
from tests.fakes.drip_server import DripServer
from tests.payments.api_helpers import succeeded_payment
from tests.payments.webhook_helpers import register

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_an_endpoint_dripping_its_answer_fails_the_attempt_at_the_deadline_and_is_retried_later(
    tenant, receiver, settings, scheduled, django_capture_on_commit_callbacks, phase
):
    # Every byte within the 0.2 s read timeout; the whole answer far beyond 0.2 + 2 × 0.2 s.
    settings.OUTBOUND_CONNECT_TIMEOUT = 0.2
    settings.OUTBOUND_READ_TIMEOUT = 0.2
    with DripServer(interval=0.05, body=b'{"received": true, "note": "' + b"x" * 200 + b'"}') as drip:
        drip.drip_body() if phase == "body" else drip.drip_headers()
        webhook_endpoint_create(
            actor=tenant.owner, merchant=tenant.merchant, url=f"http://hooks.example.com:{drip.port}/hooks"
        )
        succeeded_payment(tenant)
        delivery = WebhookDelivery.objects.get()
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.deliver_merchant_webhook(delivery.pk) == "pending"
        exchange = drip.wait_for_hang_up()
    assert exchange.hung_up_after is not None and not exchange.finished
    assert b"Fintech-Signature" in exchange.request  # it was a real, signed attempt
    attempt = delivery.attempt_log.get()
    assert attempt.status_code is None
    assert attempt.error == "Timed out talking to hooks.example.com: no complete answer within 0.6 seconds."
    assert attempt.duration_ms < 2500  # the drip alone would take over 10 s
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 1 and delivery.lease_until is None
    assert delivery.last_error == attempt.error
    assert delivery.next_attempt_at > timezone.now()
    assert len(scheduled) == 1 and 60 <= scheduled[0] <= 70  # the first retry, a minute later


def test_a_delivery_in_flight_is_not_handed_to_another_worker_before_its_hard_time_limit_has_passed(
    tenant, receiver
):
    register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    started = timezone.now()
    assert merchant_webhooks._claim(delivery.pk, started).delivery is not None  # a worker took it
    hard = tasks.deliver_merchant_webhook.time_limit
    assert hard and hard > tasks.deliver_merchant_webhook.soft_time_limit
    at_hard_limit = started + timedelta(seconds=hard)
    # Until the worker running it has certainly been stopped, the sweeper and other copies of
    # the task leave it alone.
    assert webhook_deliveries_due(now=at_hard_limit) == []
    result = webhook_delivery_attempt(delivery_pk=delivery.pk, now=at_hard_limit)
    assert not result.attempted and result.reason == "being attempted by another worker"
    assert receiver.posts == []
    # Once its lease is over (that worker is gone), it is due again.
    assert webhook_deliveries_due(now=started + merchant_webhooks.attempt_lease()) == [delivery.pk]


@pytest.mark.parametrize("cap", [1, 2])
def test_over_the_cap_a_merchants_delivery_waits_its_turn_while_another_merchants_goes_through(
    tenant, outsider, receiver, settings, scheduled, django_capture_on_commit_callbacks, cap
):
    settings.MERCHANT_WEBHOOK_MAX_CONCURRENT = cap
    register(tenant, receiver)
    register(outsider, receiver)
    for _ in range(cap + 1):
        succeeded_payment(tenant)
    succeeded_payment(outsider)
    *in_flight, waiting = WebhookDelivery.objects.filter(merchant=tenant.merchant).order_by("id")
    theirs = WebhookDelivery.objects.get(merchant=outsider.merchant)
    now = timezone.now()
    for delivery in in_flight:  # being attempted by other workers right now
        assert merchant_webhooks._claim(delivery.pk, now).delivery is not None

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.deliver_merchant_webhook(waiting.pk) == "deferred"
    assert receiver.posts == []
    waiting.refresh_from_db()
    assert waiting.status == "pending" and waiting.attempts == 0 and not waiting.attempt_log.exists()
    assert waiting.lease_until is None
    # Re-queued with a countdown instead of holding a worker, and not due before then, so the
    # sweeper does not hand it out again meanwhile.
    [countdown] = scheduled
    assert 5 <= countdown <= 8
    assert waiting.next_attempt_at >= timezone.now() + timedelta(seconds=countdown - 1)
    assert waiting.pk not in webhook_deliveries_due()

    # Another merchant's delivery is not held up by this one's.
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.deliver_merchant_webhook(theirs.pk) == "succeeded"
    assert len(receiver.posts) == 1

    # One attempt in flight finishes: when the deferred delivery comes due, it goes out.
    WebhookDelivery.objects.filter(pk=in_flight[0].pk).update(lease_until=None)
    result = webhook_delivery_attempt(delivery_pk=waiting.pk, now=waiting.next_attempt_at)
    assert result.attempted and result.status == "succeeded"
    assert len(receiver.posts) == 2


def test_deferred_deliveries_wait_longer_the_more_of_their_merchants_queue_behind_the_cap(
    tenant, receiver, settings, scheduled, django_capture_on_commit_callbacks
):
    settings.MERCHANT_WEBHOOK_MAX_CONCURRENT = 1
    register(tenant, receiver)
    for _ in range(12):
        succeeded_payment(tenant)
    first, *rest = WebhookDelivery.objects.order_by("id")
    now = timezone.now()
    assert merchant_webhooks._claim(first.pk, now).delivery is not None
    with django_capture_on_commit_callbacks(execute=True):
        results = [webhook_delivery_attempt(delivery_pk=d.pk, now=now) for d in rest]
    assert {r.status for r in results} == {"deferred"} and receiver.posts == []
    # Eleven queue for the one busy slot: each comes back after about 11 × 5 s, not every few
    # seconds (a lone deferred delivery comes back after 5 to 7.5 s).
    assert all(11 * 5 <= r.retry_in <= 11 * 5 * 1.5 for r in results), [r.retry_in for r in results]


@pytest.mark.django_db(transaction=True)
def test_workers_attempting_one_merchants_deliveries_at_once_never_exceed_the_cap(
    tenant, receiver, settings, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent workers need PostgreSQL's row locks; the cap itself is tested above")
    monkeypatch.setattr(tasks.deliver_merchant_webhook, "delay", lambda *args: None)
    monkeypatch.setattr(tasks.deliver_merchant_webhook, "apply_async", lambda *args, **kwargs: None)
    settings.MERCHANT_WEBHOOK_MAX_CONCURRENT = 2
    register(tenant, receiver)
    for n in range(6):
        merchant_webhooks.event_emit(
            merchant_id=tenant.merchant.pk,
            event_type="payment.succeeded",
            build_object=lambda n=n: {"object": "payment", "n": n},
            livemode=False,
        )
    pks = list(WebhookDelivery.objects.values_list("pk", flat=True))
    receiver.delay = 0.5  # a slow merchant: every answer takes half a second
    results: dict[int, str] = {}
    failures: list[str] = []
    start = threading.Barrier(len(pks))

    def worker(pk: int) -> None:
        try:
            start.wait(10)
            results[pk] = webhook_delivery_attempt(delivery_pk=pk).status
        except Exception as exc:  # noqa: BLE001 - report any failure to the test
            failures.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(pk,)) for pk in pks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    receiver.delay = 0
    assert not failures, failures[:3]
    assert sorted(results.values()) == ["deferred"] * 4 + ["succeeded"] * 2
    assert len(receiver.posts) == 2
    WebhookDelivery.objects.all().delete()
