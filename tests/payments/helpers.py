"""Helpers for payments tests: open a checkout session, pay it, post signed webhooks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connections
from django.test import Client

from payments import services
from payments.gateways import registry
from payments.gateways.simulated import build_signed_event
from payments.models import CheckoutSession, Payment, PaymentSettings
from tests.fakes.braintree_fake import BraintreeFake
from tests.fakes.stripe_fake import StripeFake
from tests.payments.conftest import STRIPE_PUBLISHABLE_KEY, STRIPE_SECRET_KEY, WEBHOOK_SECRET

T = TypeVar("T")


def use_stripe(settings: Any, fake: StripeFake, tenant: Any = None) -> StripeFake:
    """Point the platform's Stripe keys at the fake; with ``tenant``, that merchant checks out on Stripe."""
    settings.STRIPE_SECRET_KEY = STRIPE_SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = STRIPE_PUBLISHABLE_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = fake.url
    if tenant is not None:
        PaymentSettings.objects.update_or_create(merchant=tenant.merchant, defaults={"gateway": "stripe"})
    return fake


def use_braintree(settings: Any, fake: BraintreeFake, tenant: Any) -> BraintreeFake:
    """Stripe off, Braintree's sandbox keys at the fake; ``tenant`` checks out on Braintree (``fake_usd``)."""
    settings.STRIPE_SECRET_KEY = settings.STRIPE_PUBLISHABLE_KEY = ""
    settings.BRAINTREE_ENVIRONMENT = "sandbox"
    settings.BRAINTREE_MERCHANT_ID = fake.merchant_id
    settings.BRAINTREE_PUBLIC_KEY = fake.public_key
    settings.BRAINTREE_PRIVATE_KEY = fake.private_key
    settings.BRAINTREE_API_URL = fake.url
    PaymentSettings.objects.update_or_create(
        merchant=tenant.merchant, defaults={"gateway": "braintree", "braintree_merchant_account": "fake_usd"}
    )
    return fake


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


def deliver_stripe_webhook(run_on_commit: Any, payload: str, signature: str, *, apply: bool = True):  # noqa: ANN201 - a test response
    """Stripe POSTs a signed event to our endpoint, which answers 200; the apply task runs (eagerly)
    once the row is committed, unless ``apply`` is off. ``run_on_commit`` is
    ``django_capture_on_commit_callbacks``."""
    with run_on_commit(execute=apply):
        response = Client().post(
            "/webhooks/stripe/",
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature,
        )
    assert response.status_code == 200, response.content
    return response


def started_payments(client: Client, tenant, n: int) -> list[Payment]:
    """``n`` payments as a customer's visit to each checkout page leaves them."""
    payments = []
    for _ in range(n):
        session = new_session(tenant)
        client.get(f"/pay/{session.public_id}/")
        payments.append(latest_payment(session))
    return payments


def all_at_once(work: Callable[[], T], workers: int) -> list[T]:
    """Run ``work`` in ``workers`` threads released together; their results (raises what one raised)."""
    barrier = threading.Barrier(workers)
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(work())
        except BaseException as exc:  # noqa: BLE001 - raised below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    if errors:
        raise errors[0]
    return results
