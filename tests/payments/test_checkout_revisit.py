"""Visiting a checkout page again retrieves the payment at the gateway; ``/pay/`` is rate-limited.

A payment link lives up to 30 days; Stripe forgets an idempotency key after 24 hours (the
fake does too). Time moves by patching ``django.utils.timezone.now`` and the fake's clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import stripe
from django.test import Client
from django.utils import timezone

from payments import services
from payments.checkout_limits import BUSY_MESSAGE
from payments.models import CheckoutSession, Payment
from tests.fakes.stripe_fake import StripeFake
from tests.payments.conftest import STRIPE_SECRET_KEY
from tests.payments.helpers import latest_payment, use_stripe
from tests.payments.matrix_helpers import text

pytestmark = pytest.mark.django_db

CREATE = ("POST", "/v1/payment_intents")


@pytest.fixture
def on_stripe(settings, stripe_fake: StripeFake, tenant: Any) -> StripeFake:
    return use_stripe(settings, stripe_fake, tenant)


def month_long_link(tenant: Any) -> CheckoutSession:
    return services.checkout_session_create(
        actor=tenant.owner,
        merchant=tenant.merchant,
        amount=4200,
        currency="EUR",
        description="Annual plan",
        expires_in=timedelta(days=30),
    )


def calls(fake: StripeFake, method: str, path: str) -> int:
    return sum(1 for r in fake.requests if (r.method, r.path) == (method, path))


def hours_later(monkeypatch: pytest.MonkeyPatch, fake: StripeFake, hours: int) -> None:
    later = timezone.now() + timedelta(hours=hours)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    fake.advance_clock(hours * 3600)


def test_a_second_visit_after_25_hours_makes_no_create_call(
    tenant: Any, on_stripe: StripeFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = month_long_link(tenant)
    browser = Client()
    assert browser.get(f"/pay/{session.public_id}/").status_code == 200
    payment = latest_payment(session)
    intent_id = payment.gateway_payment_id
    assert calls(on_stripe, *CREATE) == 1

    hours_later(monkeypatch, on_stripe, 25)  # past Stripe's idempotency window
    on_stripe.clear_requests()
    again = browser.get(f"/pay/{session.public_id}/")

    assert again.status_code == 200
    assert calls(on_stripe, *CREATE) == 0
    assert calls(on_stripe, "GET", f"/v1/payment_intents/{intent_id}") == 1
    assert list(on_stripe.account().intents) == [intent_id]  # one PaymentIntent, the one we keep
    assert on_stripe.intent(intent_id)["client_secret"] in again.content.decode()
    assert latest_payment(session).gateway_payment_id == intent_id

    # And the customer pays that PaymentIntent.
    paid = browser.post(f"/pay/{session.public_id}/", {"payment_method": "pm_card_visa"})
    assert paid.status_code == 302
    assert on_stripe.intent(intent_id)["status"] == "succeeded"
    assert latest_payment(session).status == Payment.Status.SUCCEEDED


def test_a_payment_intent_canceled_at_stripe_is_replaced_on_the_next_visit(
    tenant: Any, on_stripe: StripeFake
) -> None:
    session = month_long_link(tenant)
    browser = Client()
    browser.get(f"/pay/{session.public_id}/")
    first = latest_payment(session)
    # Canceled in Stripe's dashboard; its webhook has not reached us.
    dashboard = stripe.StripeClient(STRIPE_SECRET_KEY, base_addresses={"api": on_stripe.url})
    dashboard.v1.payment_intents.cancel(first.gateway_payment_id)

    again = browser.get(f"/pay/{session.public_id}/")

    assert again.status_code == 200
    first.refresh_from_db()
    assert first.status == Payment.Status.CANCELED
    newest = session.payments.order_by("-created_at").first()
    assert newest is not None and newest.pk != first.pk
    assert newest.gateway_payment_id != first.gateway_payment_id
    assert on_stripe.intent(newest.gateway_payment_id)["client_secret"] in again.content.decode()


def test_checkout_pages_are_rate_limited_per_client_address(
    settings, tenant: Any, on_stripe: StripeFake
) -> None:
    settings.CHECKOUT_RATE_LIMIT = "3/minute"
    session = month_long_link(tenant)
    browser = Client()
    for _ in range(3):
        assert browser.get(f"/pay/{session.public_id}/").status_code == 200
    on_stripe.clear_requests()

    refused = browser.get(f"/pay/{session.public_id}/")
    posted = browser.post(f"/pay/{session.public_id}/", {"payment_method": "pm_card_visa"})

    for answer in (refused, posted):
        assert answer.status_code == 429
        assert int(answer["Retry-After"]) >= 1
        assert BUSY_MESSAGE in text(answer)
    assert on_stripe.requests == []  # the gateway was not asked
    assert latest_payment(session).status == Payment.Status.REQUIRES_PAYMENT_METHOD
    # Another customer, at another address, is not held back.
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert other.get(f"/pay/{session.public_id}/").status_code == 200
