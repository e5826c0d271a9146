"""Simulated gateway failure matrix: every case end to end, webhooks delivered by the Celery task.

The simulated gateway is what ``make run`` uses: Stripe's test PaymentMethods on a labelled
test-mode checkout, its own 3D Secure challenge page, and Stripe-shaped signed events that
``deliver_simulated_webhook`` (Celery, eager in tests) POSTs over HTTP to ``SITE_URL`` +
``/webhooks/stripe/``. Here ``SITE_URL`` is pytest-django's live server, so each event
travels the production path: HTTP → signature check → stored → apply task → payment.

=====================================  ==========================================================
case                                   test
=====================================  ==========================================================
success                                test_card_outcome[success]
generic decline                        test_card_outcome[generic_decline]
expired card                           test_card_outcome[expired_card]
insufficient funds                     test_card_outcome[insufficient_funds]
incorrect CVC                          test_card_outcome[incorrect_cvc]
processing error                       test_card_outcome[processing_error]
Radar highest risk                     test_card_outcome[radar_highest_risk]
3DS required then success              test_three_d_secure_then_success
3DS required then failure              test_three_d_secure_then_failure
partial refund, status by webhook      test_partial_refund_is_confirmed_by_the_refund_webhook
refund of an unfinished payment        test_refund_of_a_payment_waiting_for_authentication_is_refused
refund of a payment it has no record   test_a_refund_of_a_payment_the_gateway_has_no_record_of_is_refused
duplicate webhooks                     test_duplicate_webhooks_are_applied_once
out-of-order webhooks                  test_out_of_order_webhooks_end_succeeded
=====================================  ==========================================================
"""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse

from payments import tasks
from payments.gateways import registry
from payments.gateways.simulated import build_signed_event
from payments.models import Payment, Refund, SimulatedIntent, WebhookEvent
from tests.payments.helpers import latest_payment, new_session, pay
from tests.payments.matrix_helpers import (
    CREATED,
    STRIPE_CARD_CASES,
    CardCase,
    assert_declined_at_checkout,
    assert_refund_refused,
    history,
    merchant_page,
    refund_from_page,
    refunds,
    status_steps,
    text,
    webhooks_received,
)

pytestmark = pytest.mark.django_db(transaction=True)

APPLIED, IGNORED = WebhookEvent.Status.APPLIED, WebhookEvent.Status.IGNORED


@pytest.fixture
def shop(settings, live_server, tenant):  # noqa: ANN201
    """A merchant on the simulated gateway whose webhooks come back to a live server."""
    settings.SITE_URL = live_server.url
    settings.STRIPE_SECRET_KEY = settings.STRIPE_PUBLISHABLE_KEY = ""
    settings.BRAINTREE_MERCHANT_ID = ""
    assert registry.default_gateway_name() == "simulated"
    return tenant


CARD_CASES = STRIPE_CARD_CASES


@pytest.mark.parametrize("case", CARD_CASES.values(), ids=CARD_CASES.keys())
def test_card_outcome(shop, case: CardCase) -> None:  # noqa: ANN001
    browser = Client()
    session = new_session(shop, amount=2500)
    checkout = browser.get(f"/pay/{session.public_id}/")
    assert "TEST MODE" in text(checkout) and case.payment_method in text(checkout)

    response = pay(browser, session, case.payment_method)
    payment = latest_payment(session)
    if case.status == "succeeded":
        assert response["Location"] == reverse("checkout_done", args=[session.public_id])
        assert "Payment successful" in text(browser.get(response["Location"]))
    else:
        assert_declined_at_checkout(response, case.customer_message)

    # The gateway's webhook came back through Celery and HTTP, and was applied once.
    assert webhooks_received() == [(case.event_type, APPLIED)]
    payment.refresh_from_db()
    assert payment.status == case.status
    assert (payment.amount, payment.currency, payment.amount_refunded) == (2500, "EUR", 0)
    assert payment.amount_captured == (2500 if case.status == "succeeded" else 0)
    assert (payment.decline_code, payment.decline_message) == (case.decline_code, case.customer_message)
    assert (payment.risk_provider, payment.risk_level, payment.risk_type) == (
        "simulated_radar",
        case.risk_level,
        case.risk_type,
    )
    if case.risk_level == "highest":
        assert payment.risk_score == 95
    assert status_steps(payment) == [CREATED, ("status", "requires_payment_method", case.status)]

    page = merchant_page(shop, payment)
    assert f'data-testid="payment-status">{payment.get_status_display()}<' in page
    assert "Test mode" in page and "25.00 EUR" in page
    if case.decline_code:
        assert f'{case.customer_message} <code class="small">{case.decline_code}</code>' in page


def test_three_d_secure_then_success(shop) -> None:  # noqa: ANN001
    browser = Client()
    session = new_session(shop)
    response = pay(browser, session, "pm_card_threeDSecure2Required")
    payment = latest_payment(session)
    assert response["Location"] == reverse("checkout_simulated_3ds", args=[payment.gateway_payment_id])
    challenge = text(browser.get(response["Location"]))
    assert "Simulated 3D Secure" in challenge and "49.90 EUR" in challenge

    done = browser.post(response["Location"], {"decision": "approve"})
    assert done["Location"] == reverse("checkout_done", args=[session.public_id])
    assert "Payment successful" in text(browser.get(done["Location"]))

    payment.refresh_from_db()
    assert (payment.status, payment.three_d_secure, payment.amount_captured) == (
        "succeeded",
        "authenticated",
        4990,
    )
    assert status_steps(payment) == [
        CREATED,
        ("status", "requires_payment_method", "requires_action"),
        ("status", "requires_action", "succeeded"),
    ]
    assert webhooks_received() == [
        ("payment_intent.requires_action", APPLIED),
        ("payment_intent.succeeded", APPLIED),
    ]
    page = merchant_page(shop, payment)
    assert 'data-testid="payment-status">Succeeded<' in page and "<dd>authenticated</dd>" in page


def test_three_d_secure_then_failure(shop) -> None:  # noqa: ANN001
    browser = Client()
    session = new_session(shop)
    response = pay(browser, session, "pm_card_threeDSecure2Required")
    back = browser.post(response["Location"], {"decision": "fail"})
    assert back["Location"] == reverse("checkout_pay", args=[session.public_id])
    assert "We could not verify your card with your bank. Try again or use another card." in text(
        browser.get(back["Location"])
    )

    payment = latest_payment(session)
    assert (payment.status, payment.decline_code, payment.amount_captured) == (
        "failed",
        "authentication_failed",
        0,
    )
    assert webhooks_received() == [
        ("payment_intent.requires_action", APPLIED),
        ("payment_intent.payment_failed", APPLIED),
    ]
    page = merchant_page(shop, payment)
    assert 'data-testid="payment-status">Failed<' in page and "authentication_failed" in page


def test_partial_refund_is_confirmed_by_the_refund_webhook(shop) -> None:  # noqa: ANN001
    session = new_session(shop, amount=2500)
    pay(Client(), session, "pm_card_visa")
    payment = latest_payment(session)

    answer = refund_from_page(shop, payment, amount="10.00", reason="One item returned")
    assert answer.status_code == 302
    assert refunds(payment) == [(1000, "succeeded", "refund")]
    assert webhooks_received() == [("payment_intent.succeeded", APPLIED), ("refund.updated", APPLIED)]
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured, payment.amount_refunded) == ("succeeded", 2500, 1000)
    page = merchant_page(shop, payment)
    assert "<dt>Refunded</dt><dd>10.00 EUR</dd>" in page
    assert "Up to <strong>15.00 EUR</strong> can be refunded" in page


def test_refund_of_a_payment_waiting_for_authentication_is_refused(shop) -> None:  # noqa: ANN001
    session = new_session(shop)
    pay(Client(), session, "pm_card_threeDSecure2Required")  # the customer never finishes the challenge
    payment = latest_payment(session)
    assert payment.status == Payment.Status.REQUIRES_ACTION

    answer = refund_from_page(shop, payment)
    assert_refund_refused(
        answer, payment, "Only a payment that succeeded can be refunded.", status="requires_action"
    )
    assert SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).data["refunds"] == []


def test_a_refund_of_a_payment_the_gateway_has_no_record_of_is_refused(shop) -> None:  # noqa: ANN001
    session = new_session(shop, amount=2500)
    pay(Client(), session, "pm_card_visa")
    payment = latest_payment(session)
    SimulatedIntent.objects.filter(intent_id=payment.gateway_payment_id).delete()  # the test data was wiped

    answer = refund_from_page(shop, payment, amount="")

    assert_refund_refused(answer, payment, "The payment provider has no record of this payment.")


def test_duplicate_webhooks_are_applied_once(shop) -> None:  # noqa: ANN001
    session = new_session(shop, amount=2500)
    pay(Client(), session, "pm_card_visa")
    payment = latest_payment(session)
    # A worker that dies after sending, before acknowledging, runs the delivery again.
    tasks.deliver_simulated_webhook.delay(payment.pk)
    refund_from_page(shop, payment, amount="7.50")
    refund = Refund.objects.get()
    steps = history(payment)
    tasks.deliver_simulated_refund_webhook.delay(refund.pk)
    tasks.deliver_simulated_refund_webhook.delay(refund.pk)

    assert webhooks_received() == [("payment_intent.succeeded", APPLIED), ("refund.updated", APPLIED)]
    assert history(payment) == steps
    payment.refresh_from_db()
    assert (payment.amount_captured, payment.amount_refunded) == (2500, 750)
    assert refunds(payment) == [(750, "succeeded", "refund")]
    assert "<dt>Refunded</dt><dd>7.50 EUR</dd>" in merchant_page(shop, payment)


def test_out_of_order_webhooks_end_succeeded(shop) -> None:  # noqa: ANN001
    browser = Client()
    session = new_session(shop)
    response = pay(browser, session, "pm_card_threeDSecure2Required")
    payment = latest_payment(session)
    waiting = dict(SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).data["intent"])
    browser.post(response["Location"], {"decision": "approve"})

    # Earlier states, re-sent late (a retry after our endpoint was briefly down).
    secret = registry.stripe_webhook_secrets()[0]
    now = int(time.time())
    for event_type, intent, age in (
        ("payment_intent.requires_action", waiting, 30),
        ("payment_intent.processing", waiting | {"status": "processing", "next_action": None}, 20),
    ):
        body, headers = build_signed_event(event_type, intent, secret=secret, created=now - age)
        late = Client().post(
            "/webhooks/stripe/",
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=headers["Stripe-Signature"],
        )
        assert late.status_code == 200

    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("succeeded", 4990)
    assert [h for h in history(payment) if h[0] == "ignored"] == [
        ("ignored", "succeeded", "requires_action"),
        ("ignored", "succeeded", "processing"),
    ]
    assert webhooks_received() == [
        ("payment_intent.requires_action", APPLIED),
        ("payment_intent.succeeded", APPLIED),
        ("payment_intent.requires_action", IGNORED),
        ("payment_intent.processing", IGNORED),
    ]
    page = merchant_page(shop, payment)
    assert 'data-testid="payment-status">Succeeded<' in page
    assert page.count("Older than the state already applied; ignored.") == 2
