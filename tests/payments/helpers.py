"""Helpers for payments tests: open a checkout session, pay it, post signed webhooks."""

from __future__ import annotations

from django.test import Client

from payments import services
from payments.gateways import registry
from payments.gateways.simulated import build_signed_event
from payments.models import CheckoutSession, Payment

# Stripe's decline test PaymentMethods and what Stripe answers for each (the simulated gateway mirrors
# them): payment method, decline code, customer message, whether trying again may succeed.
STRIPE_TEST_CARD_DECLINES = [
    ("pm_card_chargeDeclined", "generic_decline", "Your card was declined.", False),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "Your card has expired.", False),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        "insufficient_funds",
        "Your card has insufficient funds.",
        False,
    ),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "Your card's security code is incorrect.", False),
    (
        "pm_card_chargeDeclinedProcessingError",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
        True,
    ),
]


def new_session(
    tenant, *, amount: int = 4990, currency: str = "EUR", email: str = "buyer@example.com"
) -> CheckoutSession:
    return services.checkout_session_create(
        actor=tenant.owner,
        merchant=tenant.merchant,
        amount=amount,
        currency=currency,
        description="Order 1001",
        customer_email=email,
    )


def pay(client: Client, session: CheckoutSession, payment_method: str, **extra: str):
    return client.post(f"/pay/{session.public_id}/", {"payment_method": payment_method, **extra})


def latest_payment(session: CheckoutSession) -> Payment:
    return session.payments.order_by("-created_at").get()


def post_stripe_event(
    client: Client, event_type: str, obj: dict, *, event_id: str, created: int, secret=None
):
    body, headers = build_signed_event(
        event_type,
        obj,
        secret=secret or registry.stripe_webhook_secrets()[0],
        event_id=event_id,
        created=created,
    )
    return client.post(
        "/webhooks/stripe/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=headers["Stripe-Signature"],
    )
