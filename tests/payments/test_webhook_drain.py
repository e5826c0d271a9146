"""Stored gateway webhooks are applied by drain tasks: one per burst, not one Celery message per event.

Ingestion takes a cache flag and enqueues a drain only when no drain holds it; a drain applies
whatever is waiting, hands failures to the per-event task (which retries with backoff) and
releases its flag before a last look, so nothing stored is left behind.
"""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django.test import Client

from payments import tasks
from payments.gateways import registry
from payments.gateways.simulated import build_signed_event
from payments.models import Payment, WebhookEvent
from tests.payments.helpers import started_payments

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_flags():
    cache.delete_many([tasks._drain_flag(slot) for slot in range(4)])
    tasks._drain_seen_running_at[0] = float("-inf")
    yield
    cache.delete_many([tasks._drain_flag(slot) for slot in range(4)])
    tasks._drain_seen_running_at[0] = float("-inf")


def _processing_event(payment: Payment, event_id: str, **changes: object) -> tuple[bytes, str]:
    from payments.models import SimulatedIntent

    intent = dict(SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).data["intent"])
    body, headers = build_signed_event(
        "payment_intent.processing",
        intent | {"status": "processing"} | changes,
        secret=registry.stripe_webhook_secrets()[0],
        event_id=event_id,
        created=int(time.time()),
    )
    return body, headers["Stripe-Signature"]


def _post(body: bytes, signature: str) -> None:
    """A gateway's delivery; its request commits, so what it left for on-commit runs."""
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        response = Client().post(
            "/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
        )
    assert response.status_code == 200, response.content


def test_a_burst_of_webhooks_enqueues_one_drain_that_applies_them_all(client, tenant, monkeypatch):
    payments = started_payments(client, tenant, 3)
    enqueued = []
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda slot=0: enqueued.append(slot))

    for n, payment in enumerate(payments):
        _post(*_processing_event(payment, f"evt_burst_{n}"))

    assert enqueued == [0]  # the first event took the flag; the others found a drain coming
    assert WebhookEvent.objects.filter(status="received").count() == 3

    assert tasks.drain_webhook_events(0) == 3
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"applied"}
    assert {p.status for p in Payment.objects.filter(pk__in=[p.pk for p in payments])} == {"processing"}
    # The flag is free again: the next event schedules a new drain.
    assert tasks.schedule_webhook_drain() is True
    assert enqueued == [0, 0]


def test_an_event_for_an_unknown_payment_leaves_the_drain_and_retries_on_its_own(client, tenant, monkeypatch):
    [payment] = started_payments(client, tenant, 1)
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda slot=0: None)
    _post(*_processing_event(payment, "evt_known"))
    _post(*_processing_event(payment, "evt_orphan", id="pi_sim_nobodyknowsthis0000", metadata={}))
    retried = []
    monkeypatch.setattr(
        tasks.apply_webhook_event, "apply_async", lambda args, countdown: retried.append((args, countdown))
    )

    assert tasks.drain_webhook_events(0) == 2

    orphan = WebhookEvent.objects.get(event_id="evt_orphan")
    assert (orphan.status, orphan.attempts) == ("received", 1)
    assert "PaymentNotFoundYet" in orphan.last_error
    assert retried == [([orphan.pk], 2)]
    assert WebhookEvent.objects.get(event_id="evt_known").status == "applied"
    # A tried event is not picked up again by later drains: its own task retries it with backoff.
    assert tasks.drain_webhook_events(0) == 0


def test_a_held_flag_means_no_second_drain_until_it_is_released(monkeypatch):
    enqueued = []
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda slot=0: enqueued.append(slot))

    assert tasks.schedule_webhook_drain() is True
    assert tasks.schedule_webhook_drain() is False
    assert enqueued == [0]
    assert tasks.drain_webhook_events(0) == 0  # nothing waiting: it stops and lets go
    assert tasks.schedule_webhook_drain() is True


def test_a_backlog_asks_for_a_second_drain_slot(client, tenant, monkeypatch, settings):
    settings.WEBHOOK_DRAIN_PARALLELISM = 2
    monkeypatch.setattr(tasks, "DRAIN_BATCH", 2)
    payments = started_payments(client, tenant, 3)
    enqueued = []
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda slot=0: enqueued.append(slot))
    for n, payment in enumerate(payments):
        _post(*_processing_event(payment, f"evt_backlog_{n}"))

    assert tasks.drain_webhook_events(0) == 3
    assert enqueued == [0, 1]  # the full first batch showed a backlog
    assert tasks.drain_webhook_events(1) == 0  # the first drain already did everything


def test_the_sweep_schedules_a_drain_only_when_something_waits(client, tenant, monkeypatch):
    enqueued = []
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda slot=0: enqueued.append(slot))
    assert tasks.sweep_webhook_events() is False

    [payment] = started_payments(client, tenant, 1)
    _post(*_processing_event(payment, "evt_swept"))
    cache.delete(tasks._drain_flag(0))  # as if the drain's worker died and the flag expired

    assert tasks.sweep_webhook_events() is True
    assert enqueued == [0, 0]


def test_a_webhook_is_stored_and_acknowledged_even_when_the_broker_is_down(client, tenant, monkeypatch):
    [payment] = started_payments(client, tenant, 1)

    def broker_down(slot=0):
        raise ConnectionError("Redis is unreachable")

    monkeypatch.setattr(tasks.drain_webhook_events, "delay", broker_down)

    _post(*_processing_event(payment, "evt_broker_down"))  # 200: the gateway will not redeliver

    assert WebhookEvent.objects.get(event_id="evt_broker_down").status == "received"
    # The flag was released, so the sweep (or the next event) schedules the drain.
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda slot=0: None)
    assert tasks.sweep_webhook_events() is True


def test_after_seeing_a_drain_run_ingestion_trusts_it_for_a_moment(monkeypatch, settings):
    settings.WEBHOOK_DRAIN_TRUST_MS = 200
    enqueued = []
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda slot=0: enqueued.append(slot))
    flag = tasks._drain_flag(0)
    cache.set(flag, 1)  # a drain is running

    assert tasks.schedule_webhook_drain() is False  # asked Redis: taken
    cache.delete(flag)  # that drain lets go
    assert tasks.schedule_webhook_drain() is False  # trusted, without asking again
    assert cache.get(flag) is None and enqueued == []
    time.sleep(0.25)
    assert tasks.schedule_webhook_drain() is True  # the moment passed: asked, and took the flag
    assert enqueued == [0] and cache.get(flag) == 1


def test_a_drain_waits_out_that_moment_before_its_last_look(client, tenant, monkeypatch, settings):
    settings.WEBHOOK_DRAIN_TRUST_MS = 200
    first, second = started_payments(client, tenant, 2)
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda slot=0: None)
    _post(*_processing_event(first, "evt_before"))  # takes the flag: "a drain is coming"
    _post(*_processing_event(first, "evt_seen"))  # finds it taken: trusts the drain from now on
    flag = tasks._drain_flag(0)
    stored_in_the_wait = []

    def meanwhile(seconds: float) -> None:
        # While the drain waits after letting go, a trusting process stores one more event.
        assert seconds == 0.2 and cache.get(flag) is None
        if not stored_in_the_wait:
            _post(*_processing_event(second, "evt_in_the_wait"))
            stored_in_the_wait.append(cache.get(flag))

    monkeypatch.setattr(tasks.time, "sleep", meanwhile)

    assert tasks.drain_webhook_events(0) == 3

    assert stored_in_the_wait == [None]  # it trusted the drain: no flag taken, no drain enqueued
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"applied"}
    second.refresh_from_db()
    assert second.status == Payment.Status.PROCESSING


def test_a_long_drain_hands_over_to_a_fresh_task_inside_its_time_limits(
    client, tenant, monkeypatch, settings
):
    settings.WEBHOOK_DRAIN_PARALLELISM = 1
    settings.WEBHOOK_DRAIN_MAX_SECONDS = 0  # as if a batch took the whole budget
    monkeypatch.setattr(tasks, "DRAIN_BATCH", 2)
    payments = started_payments(client, tenant, 3)
    enqueued = []
    monkeypatch.setattr(tasks.drain_webhook_events, "delay", lambda slot=0: enqueued.append(slot))
    for n, payment in enumerate(payments):
        _post(*_processing_event(payment, f"evt_long_{n}"))
    assert enqueued == [0]

    assert tasks.drain_webhook_events(0) == 2  # one batch, then it stops
    assert enqueued == [0, 0]  # ... and a fresh drain carries on, holding the same flag
    assert tasks.schedule_webhook_drain() is False
    assert WebhookEvent.objects.filter(status="received").count() == 1
    assert tasks.drain_webhook_events(0) == 1
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"applied"}
    assert enqueued == [0, 0]  # the last batch was not full: it finished instead of handing over
