"""Applying a gateway webhook reads the payment once (under its lock) and never re-reads the merchant."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments.models import CheckoutSession, Payment, Refund, WebhookEvent
from payments.services import webhook_apply
from tests.payments.helpers import post_stripe_event
from tests.payments.test_webhook_fast_path import intent_for, started_payment

pytestmark = pytest.mark.django_db


def selects_from(queries: CaptureQueriesContext, table: str) -> int:
    return sum(
        1
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith("SELECT") and f'FROM "{table}"' in q["sql"]
    )


def apply_counting(row: WebhookEvent) -> CaptureQueriesContext:
    with CaptureQueriesContext(connection) as queries:
        assert webhook_apply(webhook_pk=row.pk) == "applied"
    return queries


def test_a_payment_event_that_completes_the_checkout_reads_the_payment_and_merchant_once(client, tenant):
    payment = started_payment(client, tenant)
    post_stripe_event(
        client,
        "payment_intent.succeeded",
        intent_for(payment, "succeeded"),
        event_id="evt_reads_pay",
        created=int(time.time()),
    )

    queries = apply_counting(WebhookEvent.objects.get(event_id="evt_reads_pay"))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert CheckoutSession.objects.get(pk=payment.checkout_session_id).status == "complete"
    assert selects_from(queries, "payments_payment") == 1
    assert selects_from(queries, "accounts_merchant") == 0


def test_a_refund_event_reads_the_payment_once_and_updates_the_refunded_amount(client, tenant):
    payment = started_payment(client, tenant)
    post_stripe_event(
        client,
        "payment_intent.succeeded",
        intent_for(payment, "succeeded"),
        event_id="evt_reads_paid",
        created=int(time.time()),
    )
    webhook_apply(webhook_pk=WebhookEvent.objects.get(event_id="evt_reads_paid").pk)
    payment.refresh_from_db()
    refund = Refund.objects.create(
        merchant_id=payment.merchant_id,
        payment=payment,
        amount=100,
        currency=payment.currency,
        reason="Customer asked",
        gateway_refund_id="re_reads_1",
    )
    post_stripe_event(
        client,
        "refund.updated",
        {
            "id": "re_reads_1",
            "object": "refund",
            "amount": 100,
            "currency": payment.currency.lower(),
            "status": "succeeded",
            "payment_intent": payment.gateway_payment_id,
            "metadata": {"refund_id": refund.public_id},
        },
        event_id="evt_reads_refund",
        created=int(time.time()),
    )

    queries = apply_counting(WebhookEvent.objects.get(event_id="evt_reads_refund"))

    refund.refresh_from_db()
    payment.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert payment.amount_refunded == 100
    assert selects_from(queries, "payments_payment") == 1
    assert selects_from(queries, "accounts_merchant") == 0


def test_a_dispute_event_reads_the_payment_once_and_tracks_the_amount_at_risk(client, tenant):
    payment = started_payment(client, tenant)
    now = int(time.time())
    post_stripe_event(
        client,
        "payment_intent.succeeded",
        intent_for(payment, "succeeded"),
        event_id="evt_dp_paid",
        created=now,
    )
    webhook_apply(webhook_pk=WebhookEvent.objects.get(event_id="evt_dp_paid").pk)
    dispute = {
        "id": "dp_sim_reads",
        "object": "dispute",
        "amount": payment.amount,
        "currency": payment.currency.lower(),
        "reason": "fraudulent",
        "status": "needs_response",
        "payment_intent": payment.gateway_payment_id,
        "evidence_details": {"due_by": now + 7 * 86400},
    }
    post_stripe_event(client, "charge.dispute.created", dispute, event_id="evt_dp_open", created=now + 1)

    queries = apply_counting(WebhookEvent.objects.get(event_id="evt_dp_open"))

    payment.refresh_from_db()
    assert payment.amount_disputed == payment.amount
    assert selects_from(queries, "payments_payment") == 1
    assert selects_from(queries, "accounts_merchant") == 0

    post_stripe_event(
        client, "charge.dispute.closed", dispute | {"status": "won"}, event_id="evt_dp_won", created=now + 2
    )
    webhook_apply(webhook_pk=WebhookEvent.objects.get(event_id="evt_dp_won").pk)
    payment.refresh_from_db()
    assert payment.amount_disputed == 0  # won: nothing at risk any more
    assert payment.disputes.get().status == "won"


@pytest.mark.django_db(transaction=True)
def test_a_caller_outside_a_transaction_cannot_skip_the_payments_lock_and_fresh_read(client, tenant):
    """``already_locked`` only counts inside the caller's transaction: outside one, the payment is
    read again under its lock, so a stale copy cannot move a payment that has moved on."""
    from payments.gateways.base import GatewayPayment
    from payments.services import payment_apply_gateway_state

    payment = started_payment(client, tenant)
    stale = Payment.objects.get(pk=payment.pk)  # still requires_payment_method in memory
    Payment.objects.filter(pk=payment.pk).update(status=Payment.Status.SUCCEEDED)
    processing = GatewayPayment(
        gateway="simulated",
        gateway_payment_id=payment.gateway_payment_id,
        status=Payment.Status.PROCESSING,
        amount=payment.amount,
        currency=payment.currency,
    )

    result = payment_apply_gateway_state(
        payment=stale, result=processing, source="gateway", already_locked=True
    )

    assert (result.applied, result.ignored_reason) == (False, "illegal")
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.SUCCEEDED
