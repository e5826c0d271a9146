"""The webhook fast path: a lean middleware chain, one-statement storage, one locked apply.

What it must not lose: the security headers, the card-number guard, the 400s that store
nothing, and "applied once" however many deliveries or workers see the same event.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments.gateways import registry
from payments.gateways.simulated import build_signed_event
from payments.models import Payment, PaymentEvent, WebhookEvent
from payments.services import PaymentNotFoundYet, webhook_apply
from tests.payments.helpers import all_at_once, latest_payment, new_session, post_stripe_event

pytestmark = pytest.mark.django_db


def started_payment(client, tenant) -> Payment:
    session = new_session(tenant)
    client.get(f"/pay/{session.public_id}/")
    return latest_payment(session)


def intent_for(payment: Payment, status: str) -> dict:
    from payments.models import SimulatedIntent

    intent = dict(SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).data["intent"])
    return intent | {"status": status, "amount_received": payment.amount if status == "succeeded" else 0}


def signed(event_type: str, obj: dict, *, event_id: str, created: int | None = None) -> tuple[bytes, str]:
    body, headers = build_signed_event(
        event_type,
        obj,
        secret=registry.stripe_webhook_secrets()[0],
        event_id=event_id,
        created=created or int(time.time()),
    )
    return body, headers["Stripe-Signature"]


def test_a_webhook_response_still_carries_every_security_header(client, tenant, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    payment = started_payment(client, tenant)
    body, signature = signed(
        "payment_intent.processing", intent_for(payment, "processing"), event_id="evt_h1"
    )

    response = client.post(
        "/webhooks/stripe/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
        secure=True,
    )

    assert response.status_code == 200
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "Set-Cookie" not in response  # no session, CSRF or messages cookie for a gateway


def test_a_refused_webhook_also_carries_the_security_headers(client, tenant):
    response = client.post(
        "/webhooks/stripe/", data=b"{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response
    assert WebhookEvent.objects.count() == 0


def test_a_webhook_carrying_a_card_number_is_still_refused_by_the_guard(client, tenant):
    payment = started_payment(client, tenant)
    intent = intent_for(payment, "processing") | {"description": "card 4242 4242 4242 4242"}
    body, signature = signed("payment_intent.processing", intent, event_id="evt_pan")

    response = client.post(
        "/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
    )

    assert response.status_code == 400
    assert "card number" in response.content.decode()
    assert WebhookEvent.objects.count() == 0


def test_an_oversized_or_wrongly_signed_webhook_gets_400_and_stores_nothing(client, tenant):
    payment = started_payment(client, tenant)
    body, _signature = signed(
        "payment_intent.processing", intent_for(payment, "processing"), event_id="evt_b"
    )
    _other, foreign = signed("payment_intent.processing", intent_for(payment, "processing"), event_id="evt_c")

    wrong = client.post(
        "/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=foreign
    )
    big = client.post(
        "/webhooks/stripe/",
        data=b'{"pad": "' + b"x" * (1024 * 1024) + b'"}',
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=foreign,
    )

    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "bad_signature"
    assert big.status_code == 400 and big.json()["error"]["code"] == "too_large"
    assert WebhookEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # committed, so this month's data key is cached after first use
def test_a_webhook_is_stored_by_one_statement_and_a_redelivery_takes_one_query(client, tenant):
    payment = started_payment(client, tenant)
    body, signature = signed(
        "payment_intent.processing", intent_for(payment, "processing"), event_id="evt_q1"
    )
    warm_body, warm_signature = signed(
        "customer.created", {"id": "cus_1", "object": "customer"}, event_id="evt_w"
    )
    client.post(  # the first event of the month creates the month's data key
        "/webhooks/stripe/",
        data=warm_body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=warm_signature,
    )

    with CaptureQueriesContext(connection) as first_queries:
        first = client.post(
            "/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
        )
    with CaptureQueriesContext(connection) as again_queries:
        again = client.post(
            "/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
        )

    assert first.json() == {"received": True, "duplicate": False}
    assert again.json() == {"received": True, "duplicate": True}
    # Storing is the first statement, one INSERT ... ON CONFLICT DO NOTHING outside any transaction
    # block; what follows it is the apply task (eager in tests).
    stored = first_queries.captured_queries[0]["sql"]
    assert stored.startswith('INSERT INTO "payments_webhookevent"') and "ON CONFLICT" in stored
    # A redelivery is that one statement and nothing else: not read back, not applied again.
    assert len(again_queries.captured_queries) == 1
    assert "ON CONFLICT" in again_queries.captured_queries[0]["sql"]
    assert WebhookEvent.objects.filter(event_id="evt_q1").count() == 1
    assert PaymentEvent.objects.filter(gateway_event_id="evt_q1").count() <= 1


def test_a_stored_webhook_payload_is_still_encrypted(client, tenant):
    payment = started_payment(client, tenant)
    post_stripe_event(
        client, "payment_intent.processing", intent_for(payment, "processing"), event_id="evt_e1", created=1
    )

    with connection.cursor() as cursor:
        cursor.execute("SELECT event, key_period FROM payments_webhookevent")
        stored, period = cursor.fetchone()
    assert payment.gateway_payment_id not in str(stored)
    row = WebhookEvent.objects.get()
    assert period == row.key_period and row.event["event_id"] == "evt_e1"


def test_applying_an_event_twice_applies_it_once(client, tenant, django_capture_on_commit_callbacks):
    payment = started_payment(client, tenant)
    post_stripe_event(
        client,
        "payment_intent.succeeded",
        intent_for(payment, "succeeded"),
        event_id="evt_twice",
        created=int(time.time()),
    )
    row = WebhookEvent.objects.get(event_id="evt_twice")

    assert webhook_apply(webhook_pk=row.pk) == "applied"
    assert webhook_apply(webhook_pk=row.pk) == "applied"

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert PaymentEvent.objects.filter(gateway_event_id="evt_twice").count() == 1
    row.refresh_from_db()
    assert row.attempts == 1


def test_an_event_for_an_unknown_payment_rolls_back_and_counts_the_attempt(client, tenant):
    intent = {
        "id": "pi_" + "Z" * 24,
        "object": "payment_intent",
        "amount": 100,
        "currency": "eur",
        "status": "succeeded",
        "metadata": {},
    }
    post_stripe_event(
        client, "payment_intent.succeeded", intent, event_id="evt_nobody", created=int(time.time())
    )
    row = WebhookEvent.objects.get(event_id="evt_nobody")

    with pytest.raises(PaymentNotFoundYet):
        webhook_apply(webhook_pk=row.pk)

    row.refresh_from_db()
    assert (row.status, row.attempts) == ("received", 1)
    assert "PaymentNotFoundYet" in row.last_error
    assert webhook_apply(webhook_pk=row.pk, give_up_on_missing=True) == "ignored"


@pytest.mark.django_db(transaction=True)
def test_workers_applying_the_same_event_at_once_apply_it_once(client, tenant):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite has no row locks (SELECT ... FOR UPDATE) to race on")
    payment = started_payment(client, tenant)
    post_stripe_event(
        client,
        "payment_intent.succeeded",
        intent_for(payment, "succeeded"),
        event_id="evt_race",
        created=int(time.time()),
    )
    pk = WebhookEvent.objects.get(event_id="evt_race").pk
    workers = 4
    results = all_at_once(lambda: webhook_apply(webhook_pk=pk), workers)

    assert results == ["applied"] * workers
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert PaymentEvent.objects.filter(gateway_event_id="evt_race").count() == 1
    assert WebhookEvent.objects.get(pk=pk).attempts == 1
