"""Stripe failure matrix: every case end to end, through the real ``stripe`` SDK against the HTTP fake.

Each case: a checkout session → the customer on ``/pay/<id>/`` (``checkout_begin`` /
``checkout_confirm``) → PaymentIntents at the fake Stripe API → a Stripe-shaped event,
signed with ``stripe.WebhookSignature.generate_signature_header``, POSTed to our real
``/webhooks/stripe/`` → the Celery task that applies it (eager) → what the customer saw,
the payment's status, amounts and history, and the merchant's payment page.

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
partial refund, status by webhook      test_partial_refund_stays_pending_until_the_refund_webhook
refund that fails later                test_a_refund_that_fails_later_gives_the_money_back_to_refund
refund of an unfinished payment        test_refund_of_a_processing_payment_is_refused
refund already made in Stripe          test_a_refund_already_made_in_stripes_dashboard_is_refused_clearly
refund while Stripe rate-limits        test_a_refund_while_stripe_is_busy_asks_to_try_again
duplicate webhooks                     test_duplicate_webhooks_are_applied_once
out-of-order webhooks                  test_out_of_order_webhooks_end_succeeded
=====================================  ==========================================================
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
import stripe
from django.test import Client
from django.urls import reverse

from payments.models import CheckoutSession, Payment, Refund, WebhookEvent
from tests.fakes.stripe_fake import StripeFake
from tests.payments.conftest import STRIPE_SECRET_KEY, WEBHOOK_SECRET
from tests.payments.helpers import deliver_stripe_webhook, latest_payment, new_session, pay, use_stripe
from tests.payments.matrix_helpers import (
    CREATED,
    STRIPE_CARD_CASES,
    CardCase,
    assert_declined_at_checkout,
    assert_refund_refused,
    event_kinds,
    history,
    merchant_page,
    refund_from_page,
    refunds,
    status_steps,
    text,
    webhooks_received,
)

pytestmark = pytest.mark.django_db


@dataclass
class StripeWorld:
    """The merchant on Stripe, a customer's browser, and Stripe's webhook sender."""

    tenant: Any
    fake: StripeFake
    browser: Client
    run_on_commit: Any  # django_capture_on_commit_callbacks

    def session(self, amount: int = 2500) -> CheckoutSession:
        session = new_session(self.tenant, amount=amount, currency="EUR")
        assert session.gateway == "stripe"
        return session

    def event(self, event_type: str, obj: dict[str, Any], *, created: int | None = None) -> tuple[str, str]:
        """A Stripe event for ``obj`` as Stripe would send it: JSON body and ``Stripe-Signature``."""
        payload = json.dumps(self.fake.build_event(event_type, copy.deepcopy(obj), created=created))
        return payload, stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)

    def deliver(self, payload: str, signature: str):  # noqa: ANN201 - a test response
        """POST to our endpoint; the apply task runs (eagerly) once the row is committed."""
        return deliver_stripe_webhook(self.run_on_commit, payload, signature)

    def send(self, event_type: str, obj: dict[str, Any], *, created: int | None = None):  # noqa: ANN201
        return self.deliver(*self.event(event_type, obj, created=created))

    def intent(self, payment: Payment) -> dict[str, Any]:
        """The PaymentIntent as Stripe holds it now (what its events carry, ``latest_charge`` unexpanded)."""
        return copy.deepcopy(self.fake.intent(payment.gateway_payment_id))


@pytest.fixture
def world(settings, stripe_fake, tenant, client, django_capture_on_commit_callbacks) -> StripeWorld:
    use_stripe(settings, stripe_fake, tenant)
    return StripeWorld(tenant, stripe_fake, client, django_capture_on_commit_callbacks)


# --- One card, one outcome ----------------------------------------------------------------------------


CARD_CASES = STRIPE_CARD_CASES


@pytest.mark.parametrize("case", CARD_CASES.values(), ids=CARD_CASES.keys())
def test_card_outcome(world: StripeWorld, case: CardCase) -> None:
    session = world.session()
    response = pay(world.browser, session, case.payment_method)
    payment = latest_payment(session)

    # What the customer sees.
    if case.status == "succeeded":
        assert response.status_code == 302
        assert response["Location"] == reverse("checkout_done", args=[session.public_id])
        assert "Payment successful" in text(world.browser.get(response["Location"]))
    else:
        assert_declined_at_checkout(response, case.customer_message)

    # Stripe's webhook for the same outcome arrives and is applied once, changing nothing more.
    before = history(payment)
    answer = world.send(case.event_type, world.intent(payment))
    assert answer.json() == {"received": True, "duplicate": False}
    assert webhooks_received() == [(case.event_type, WebhookEvent.Status.APPLIED)]

    payment.refresh_from_db()
    assert payment.status == case.status
    assert (payment.amount, payment.currency) == (2500, "EUR")
    assert payment.amount_captured == (2500 if case.status == "succeeded" else 0)
    assert payment.amount_refunded == 0
    assert payment.decline_code == case.decline_code
    assert payment.decline_message == case.customer_message
    assert (payment.risk_provider, payment.risk_level, payment.risk_type) == (
        "stripe_radar",
        case.risk_level,
        case.risk_type,
    )
    assert history(payment) == before
    assert status_steps(payment) == [CREATED, ("status", "requires_payment_method", case.status)]
    session.refresh_from_db()
    assert session.status == ("complete" if case.status == "succeeded" else "open")

    page = merchant_page(world.tenant, payment)
    assert f'data-testid="payment-status">{payment.get_status_display()}<' in page
    assert "25.00 EUR" in page
    if case.decline_code:
        assert f'{case.customer_message} <code class="small">{case.decline_code}</code>' in page
    if case.risk_level == "highest":
        assert "highest (score 95)" in page and "blocked · highest_risk_level" in page
        assert "Stripe blocked this payment as too risky." in page


# --- 3D Secure ------------------------------------------------------------------------------------------


def test_three_d_secure_then_success(world: StripeWorld) -> None:
    session = world.session()
    response = pay(world.browser, session, "pm_card_threeDSecure2Required")
    payment = latest_payment(session)
    assert payment.status == Payment.Status.REQUIRES_ACTION
    # Back to the card page, where Stripe.js shows the bank's challenge (hooks.stripe.com).
    assert response["Location"] == reverse("checkout_pay", args=[session.public_id])
    assert world.intent(payment)["next_action"]["type"] == "redirect_to_url"
    world.send("payment_intent.requires_action", world.intent(payment))

    world.fake.complete_three_ds(payment.gateway_payment_id, succeed=True)
    back = world.browser.get(reverse("checkout_return", args=[session.public_id]))
    assert back["Location"] == reverse("checkout_done", args=[session.public_id])
    assert "Payment successful" in text(world.browser.get(back["Location"]))
    world.send("payment_intent.succeeded", world.intent(payment))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert (payment.amount_captured, payment.three_d_secure, payment.decline_code) == (
        2500,
        "authenticated",
        "",
    )
    assert status_steps(payment) == [
        CREATED,
        ("status", "requires_payment_method", "requires_action"),
        ("status", "requires_action", "succeeded"),
    ]
    assert webhooks_received() == [
        ("payment_intent.requires_action", WebhookEvent.Status.APPLIED),
        ("payment_intent.succeeded", WebhookEvent.Status.APPLIED),
    ]
    page = merchant_page(world.tenant, payment)
    assert 'data-testid="payment-status">Succeeded<' in page
    assert "<dt>3D Secure</dt><dd>authenticated</dd>" in page


def test_three_d_secure_then_failure(world: StripeWorld) -> None:
    session = world.session()
    pay(world.browser, session, "pm_card_threeDSecure2Required")
    payment = latest_payment(session)

    world.fake.complete_three_ds(payment.gateway_payment_id, succeed=False)
    back = world.browser.get(reverse("checkout_return", args=[session.public_id]))
    assert back["Location"] == reverse("checkout_pay", args=[session.public_id])
    card_page = text(world.browser.get(back["Location"]))
    assert "We could not verify your card with your bank. Try again or use another card." in card_page
    world.send("payment_intent.payment_failed", world.intent(payment))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED
    assert payment.decline_code == "authentication_failed"
    assert payment.amount_captured == 0
    assert status_steps(payment) == [
        CREATED,
        ("status", "requires_payment_method", "requires_action"),
        ("status", "requires_action", "failed"),
    ]
    assert webhooks_received() == [("payment_intent.payment_failed", WebhookEvent.Status.APPLIED)]
    page = merchant_page(world.tenant, payment)
    assert 'data-testid="payment-status">Failed<' in page
    assert "authentication_failed" in page

    # The customer tries again with another card on the same link, and it works.
    pay(world.browser, session, "pm_card_visa")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.attempts == 2


# --- Refunds --------------------------------------------------------------------------------------------


def paid(world: StripeWorld, payment_method: str = "pm_card_visa", amount: int = 2500) -> Payment:
    session = world.session(amount)
    pay(world.browser, session, payment_method)
    payment = latest_payment(session)
    world.send("payment_intent.succeeded", world.intent(payment))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    return payment


def test_partial_refund_stays_pending_until_the_refund_webhook(world: StripeWorld) -> None:
    payment = paid(world, "pm_card_pendingRefund")

    answer = refund_from_page(world.tenant, payment, amount="10.00", reason="One item returned")
    assert answer.status_code == 302
    [refund] = Refund.objects.filter(payment=payment)
    assert (refund.amount, refund.status) == (1000, Refund.Status.PENDING)
    payment.refresh_from_db()
    assert payment.amount_refunded == 0  # not yet: the bank has not confirmed
    page = merchant_page(world.tenant, payment)
    assert "10.00 EUR" in page and ">Pending<" in page
    assert "Up to <strong>15.00 EUR</strong> can be refunded" in page  # the pending refund counts

    world.fake.finish_refund(refund.gateway_refund_id, succeed=True)
    world.send("refund.updated", world.fake.account().refunds[refund.gateway_refund_id])

    refund.refresh_from_db()
    payment.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert (payment.status, payment.amount_captured, payment.amount_refunded) == ("succeeded", 2500, 1000)
    assert refunds(payment) == [(1000, "succeeded", "refund")]
    assert [h for h in history(payment) if h[0] == "refund"] == [
        ("refund", "", ""),
        ("refund", "pending", "succeeded"),
    ]
    page = merchant_page(world.tenant, payment)
    assert "<dt>Refunded</dt><dd>10.00 EUR</dd>" in page and ">Succeeded<" in page
    assert "Up to <strong>15.00 EUR</strong> can be refunded" in page


def test_a_refund_that_fails_later_gives_the_money_back_to_refund(world: StripeWorld) -> None:
    payment = paid(world, "pm_card_refundFail")
    refund_from_page(world.tenant, payment, amount="5.00")
    [refund] = Refund.objects.filter(payment=payment)
    assert refund.status == Refund.Status.SUCCEEDED
    payment.refresh_from_db()
    assert payment.amount_refunded == 500

    world.fake.finish_refund(
        refund.gateway_refund_id, succeed=False, failure_reason="expired_or_canceled_card"
    )
    world.send("refund.failed", world.fake.account().refunds[refund.gateway_refund_id])

    refund.refresh_from_db()
    payment.refresh_from_db()
    assert (refund.status, refund.failure_reason) == ("failed", "expired_or_canceled_card")
    assert payment.amount_refunded == 0
    page = merchant_page(world.tenant, payment)
    assert "expired_or_canceled_card" in page and "<dt>Refunded</dt><dd>0.00 EUR</dd>" in page


def test_refund_of_a_processing_payment_is_refused(world: StripeWorld) -> None:
    session = world.session()
    world.browser.get(f"/pay/{session.public_id}/")
    payment = latest_payment(session)
    world.send("payment_intent.processing", world.fake.hold_processing(payment.gateway_payment_id))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PROCESSING
    assert "Payment processing" in text(world.browser.get(f"/pay/{session.public_id}/", follow=True))

    world.fake.clear_requests()
    answer = refund_from_page(world.tenant, payment, amount="")
    assert_refund_refused(
        answer, payment, "Only a payment that succeeded can be refunded.", status="processing"
    )
    assert not any(r.path == "/v1/refunds" for r in world.fake.requests)


def test_a_refund_already_made_in_stripes_dashboard_is_refused_clearly(world: StripeWorld) -> None:
    payment = paid(world)
    # The merchant refunded it in Stripe's dashboard; Stripe's webhook has not arrived yet.
    dashboard = stripe.StripeClient(STRIPE_SECRET_KEY, base_addresses={"api": world.fake.url})
    dashboard.v1.refunds.create(params={"payment_intent": payment.gateway_payment_id})

    answer = refund_from_page(world.tenant, payment, amount="")

    assert_refund_refused(answer, payment, "This payment has already been fully refunded.")


def test_a_refund_while_stripe_is_busy_asks_to_try_again(world: StripeWorld) -> None:
    payment = paid(world)
    world.fake.fail_next(429)

    answer = refund_from_page(world.tenant, payment, amount="5.00")

    assert_refund_refused(answer, payment, "The payment provider is busy. Try again in a moment.")
    assert world.fake.account().refunds == {}
    # Once Stripe answers again, the same refund goes through.
    assert refund_from_page(world.tenant, payment, amount="5.00").status_code == 302
    assert refunds(payment) == [(500, "succeeded", "refund")]


# --- Webhooks twice, and in the wrong order ---------------------------------------------------------------


def test_duplicate_webhooks_are_applied_once(world: StripeWorld) -> None:
    session = world.session()
    pay(world.browser, session, "pm_card_visa")
    payment = latest_payment(session)
    succeeded = world.event("payment_intent.succeeded", world.intent(payment))
    world.deliver(*succeeded)
    kinds = event_kinds(payment)

    again = world.deliver(*succeeded)  # Stripe retries when our 200 got lost
    assert again.json() == {"received": True, "duplicate": True}
    assert event_kinds(payment) == kinds

    refund_from_page(world.tenant, payment, amount="7.50")
    charge = world.fake.account().charges[world.intent(payment)["latest_charge"]]
    refunded = world.event("charge.refunded", charge)
    world.deliver(*refunded)
    world.deliver(*refunded)
    world.deliver(*refunded)

    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured, payment.amount_refunded) == ("succeeded", 2500, 750)
    assert refunds(payment) == [(750, "succeeded", "refund")]
    assert WebhookEvent.objects.count() == 2
    assert webhooks_received() == [
        ("payment_intent.succeeded", WebhookEvent.Status.APPLIED),
        ("charge.refunded", WebhookEvent.Status.APPLIED),
    ]
    assert WebhookEvent.objects.get(type="charge.refunded").attempts == 1
    # One status change; the refund requested and succeeded once, whatever Stripe re-sent.
    assert [h for h in history(payment) if h[0] != "created"] == [
        ("status", "requires_payment_method", "succeeded"),
        ("refund", "", ""),
        ("refund", "pending", "succeeded"),
    ]
    assert "<dt>Refunded</dt><dd>7.50 EUR</dd>" in merchant_page(world.tenant, payment)


def test_out_of_order_webhooks_end_succeeded(world: StripeWorld) -> None:
    session = world.session()
    pay(world.browser, session, "pm_card_threeDSecure2Required")
    payment = latest_payment(session)
    now = int(time.time())
    requires_action = world.event("payment_intent.requires_action", world.intent(payment), created=now - 20)
    processing = world.event(
        "payment_intent.processing", world.intent(payment) | {"status": "processing"}, created=now - 10
    )
    # The customer passes the challenge and closes the tab: only webhooks tell us what happened.
    world.fake.complete_three_ds(payment.gateway_payment_id, succeed=True)
    world.send("payment_intent.succeeded", world.intent(payment), created=now)
    world.deliver(*requires_action)
    world.deliver(*processing)

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.amount_captured == 2500
    assert status_steps(payment) == [
        CREATED,
        ("status", "requires_payment_method", "requires_action"),
        ("status", "requires_action", "succeeded"),
    ]
    ignored = [h for h in history(payment) if h[0] == "ignored"]
    assert ignored == [
        ("ignored", "succeeded", "requires_action"),
        ("ignored", "succeeded", "processing"),
    ]
    assert webhooks_received() == [
        ("payment_intent.succeeded", WebhookEvent.Status.APPLIED),
        ("payment_intent.requires_action", WebhookEvent.Status.IGNORED),
        ("payment_intent.processing", WebhookEvent.Status.IGNORED),
    ]
    page = merchant_page(world.tenant, payment)
    assert 'data-testid="payment-status">Succeeded<' in page
    assert page.count("Older than the state already applied; ignored.") == 2
