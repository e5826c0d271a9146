"""Drains apply the common webhook (a payment event carrying its state) in batches.

One transaction per batch: the events' rows in one read, their payments in another, each
event in its own savepoint writing what it writes alone (history, audit, rollup, merchant
webhooks). What must hold: every event applied once and in the gateway's order, anything
unusual left untouched for the one-at-a-time path, and merchants' endpoints and fraud rules
still honoured for every event of the batch.
"""

from __future__ import annotations

import json
import time

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments import tasks
from payments.gateways import registry
from payments.gateways.simulated import build_signed_event
from payments.models import Payment, PaymentEvent, SimulatedIntent, WebhookDelivery, WebhookEvent
from payments.services import webhook_apply, webhook_apply_batch, webhook_ingest
from security.models import AuditEvent
from tests.payments.fraud_helpers import add_rule
from tests.payments.helpers import all_at_once, started_payments
from tests.payments.webhook_helpers import dns, receiver, receiver_server, register  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def intent_of(payment: Payment) -> dict:
    return dict(SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).data["intent"])


def store(payment: Payment | dict, event_id: str, status: str, *, created: int) -> int:
    """A verified delivery stored as the webhook endpoint stores it (nothing applied yet)."""
    intent = payment if isinstance(payment, dict) else intent_of(payment)
    amount = intent["amount"]
    intent = intent | {"status": status, "amount_received": amount if status == "succeeded" else 0}
    kind = {"succeeded": "payment_intent.succeeded", "requires_action": "payment_intent.requires_action"}.get(
        status, "payment_intent.processing"
    )
    body, headers = build_signed_event(
        kind, intent, secret=registry.stripe_webhook_secrets()[0], event_id=event_id, created=created
    )
    stored = webhook_ingest(gateway="stripe", body=body, headers={k.lower(): v for k, v in headers.items()})
    assert stored.webhook_pk is not None
    return stored.webhook_pk


def statements(queries, table: str, verb: str) -> int:
    return sum(1 for q in queries if q["sql"].startswith(verb) and f'"{table}"' in q["sql"].split("WHERE")[0])


def test_a_batch_applies_every_event_reading_the_events_and_the_payments_once(client, tenant):
    payments = started_payments(client, tenant, 6)
    now = int(time.time())
    pks = [store(p, f"evt_b{i}", "processing", created=now) for i, p in enumerate(payments)]

    with CaptureQueriesContext(connection) as queries:
        batch = webhook_apply_batch(webhook_pks=pks)

    assert sorted(batch.done) == sorted(pks) and batch.leftover == []
    assert {p.status for p in Payment.objects.filter(pk__in=[p.pk for p in payments])} == {"processing"}
    assert set(WebhookEvent.objects.filter(pk__in=pks).values_list("status", "attempts")) == {("applied", 1)}
    assert AuditEvent.objects.filter(action="payment.status_changed").count() == 6
    captured = queries.captured_queries
    assert statements(captured, "payments_webhookevent", "SELECT") == 1
    assert statements(captured, "payments_payment", "SELECT") == 1
    assert statements(captured, "payments_webhookevent", "UPDATE") == 1
    assert statements(captured, "payments_webhookendpoint", "SELECT") == 1  # one merchant, asked once


def test_a_payments_events_in_one_batch_apply_in_the_gateways_order(client, tenant):
    (payment,) = started_payments(client, tenant, 1)
    now = int(time.time())
    late = store(payment, "evt_late", "succeeded", created=now)
    early = store(payment, "evt_early", "processing", created=now - 5)

    batch = webhook_apply_batch(webhook_pks=[late, early])

    assert sorted(batch.done) == sorted([late, early])
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert list(
        PaymentEvent.objects.filter(payment=payment, kind="status")
        .order_by("pk")
        .values_list("gateway_event_id")
    ) == [("evt_early",), ("evt_late",)]


def test_refunds_and_unknown_payments_are_left_untouched_for_one_at_a_time(client, tenant):
    (payment,) = started_payments(client, tenant, 1)
    now = int(time.time())
    known = store(payment, "evt_known", "processing", created=now)
    body, headers = build_signed_event(
        "charge.refunded",
        {
            "id": "ch_1",
            "object": "charge",
            "payment_intent": payment.gateway_payment_id,
            "amount": 100,
            "amount_refunded": 100,
            "currency": "eur",
            "status": "succeeded",
        },
        secret=registry.stripe_webhook_secrets()[0],
        event_id="evt_refund",
        created=now,
    )
    refund = webhook_ingest(gateway="stripe", body=body, headers={k.lower(): v for k, v in headers.items()})
    stranger = intent_of(payment) | {"id": "pi_nobody_knows", "metadata": {}}
    unknown = store(stranger, "evt_unknown", "processing", created=now)

    batch = webhook_apply_batch(webhook_pks=[known, refund.webhook_pk, unknown])

    assert batch.done == [known]
    assert sorted(batch.leftover) == sorted([refund.webhook_pk, unknown])
    waiting = WebhookEvent.objects.filter(pk__in=batch.leftover)
    assert set(waiting.values_list("status", "attempts")) == {("received", 0)}


def test_a_payments_events_after_one_left_for_one_at_a_time_stay_behind_it(client, tenant):
    (payment,) = started_payments(client, tenant, 1)
    now = int(time.time())
    body, headers = build_signed_event(
        "charge.refunded",
        {
            "id": "ch_2",
            "object": "charge",
            "payment_intent": payment.gateway_payment_id,
            "amount": 100,
            "amount_refunded": 0,
            "currency": "eur",
            "status": "succeeded",
        },
        secret=registry.stripe_webhook_secrets()[0],
        event_id="evt_charge_first",
        created=now - 5,
    )
    charge = webhook_ingest(gateway="stripe", body=body, headers={k.lower(): v for k, v in headers.items()})
    later = store(payment, "evt_after_charge", "processing", created=now)

    batch = webhook_apply_batch(webhook_pks=[later, charge.webhook_pk])

    assert batch.done == []
    assert batch.leftover == [charge.webhook_pk, later]


def test_an_event_that_needs_the_gateway_is_left_with_its_payments_later_events(client, tenant):
    first, second = started_payments(client, tenant, 2)
    now = int(time.time())
    webhook_apply(webhook_pk=store(first, "evt_p1", "processing", created=now - 10))
    backwards = store(first, "evt_back", "requires_action", created=now - 5)  # processing -> requires_action
    after = store(first, "evt_after", "succeeded", created=now)
    other = store(second, "evt_other", "processing", created=now)

    batch = webhook_apply_batch(webhook_pks=[backwards, after, other])

    assert batch.done == [other]
    assert batch.leftover == [backwards, after]
    first.refresh_from_db()
    assert first.status == Payment.Status.PROCESSING
    # Rolled back to its savepoint: not even the "ignored" line of the timeline was kept.
    assert not PaymentEvent.objects.filter(gateway_event_id__in=["evt_back", "evt_after"]).exists()
    # One at a time, the first asks the gateway what is true now, and the next applies.
    for pk in batch.leftover:
        webhook_apply(webhook_pk=pk)
    first.refresh_from_db()
    assert first.status == Payment.Status.SUCCEEDED
    assert set(WebhookEvent.objects.values_list("status", flat=True)) <= {"applied", "ignored"}


def test_every_event_of_a_batch_reaches_the_merchants_endpoint_and_fraud_rules(client, tenant, receiver):  # noqa: F811
    register(tenant, receiver)
    add_rule(tenant, "risk_level", "review", min_level="elevated")
    payments = started_payments(client, tenant, 3)
    Payment.objects.filter(pk__in=[p.pk for p in payments]).update(risk_level="elevated")
    now = int(time.time())
    pks = [store(p, f"evt_m{i}", "succeeded", created=now) for i, p in enumerate(payments)]

    batch = webhook_apply_batch(webhook_pks=pks)

    assert sorted(batch.done) == sorted(pks)
    sent = [json.loads(d.body) for d in WebhookDelivery.objects.filter(event_type="payment.succeeded")]
    assert sorted(d["data"]["object"]["id"] for d in sent) == sorted(p.public_id for p in payments)
    flagged = Payment.objects.filter(pk__in=[p.pk for p in payments])
    assert set(flagged.values_list("status", "review_status", "fraud_outcome")) == {
        ("succeeded", "pending", "review")
    }


@pytest.mark.django_db(transaction=True)
def test_two_drains_batching_the_same_events_at_once_apply_each_once(client, tenant):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite has no row locks (SELECT ... FOR UPDATE) to race on")
    payments = started_payments(client, tenant, 8)
    now = int(time.time())
    cache.set(tasks._drain_flag(0), 1)  # a drain "runs": storing enqueues none (tasks are eager here)
    try:
        pks = [store(p, f"evt_r{i}", "succeeded", created=now) for i, p in enumerate(payments)]
    finally:
        cache.delete(tasks._drain_flag(0))
    assert set(WebhookEvent.objects.filter(pk__in=pks).values_list("status", flat=True)) == {"received"}
    results = all_at_once(lambda: webhook_apply_batch(webhook_pks=pks), 2)

    done = [pk for result in results for pk in result.done]
    assert sorted(done) == sorted(pks)  # each event done by exactly one of them
    assert all(result.leftover == [] for result in results)
    assert set(Payment.objects.values_list("status", flat=True)) == {"succeeded"}
    for i in range(8):
        assert PaymentEvent.objects.filter(gateway_event_id=f"evt_r{i}").count() == 1
