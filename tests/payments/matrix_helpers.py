"""Shared pieces of the failure matrices (``test_failure_matrix_*.py``).

Each matrix drives a payment end to end the way people and gateways do: the customer
on ``/pay/<id>/``, the gateway (its real SDK against the HTTP fake, or the simulated
gateway), signed webhooks on our real endpoints, the Celery task that applies them
(eager in tests), and the merchant's payment page. These helpers only read what the
product shows; they never call into it on a path a user or a gateway would not take.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass

from django.test import Client

from payments.models import Payment, PaymentEvent, Refund, WebhookEvent
from security.ids import new_public_id
from tests.conftest import login_verified
from tests.payments.helpers import STRIPE_TEST_CARD_DECLINES

# Kind, from, to: the payment's history as the merchant's timeline lists it.
Step = tuple[str, str, str]

# Every payment's first step.
CREATED: Step = ("created", "", "requires_payment_method")


@dataclass(frozen=True)
class CardCase:
    """One of Stripe's test PaymentMethods on the checkout page, and what it ends in."""

    payment_method: str
    status: str
    event_type: str
    decline_code: str = ""
    customer_message: str = ""
    risk_level: str = "normal"
    risk_type: str = "authorized"


# Stripe's test cards (the simulated gateway mirrors them), one case each.
STRIPE_CARD_CASES = {
    "success": CardCase("pm_card_visa", "succeeded", "payment_intent.succeeded"),
    **{
        decline_code: CardCase(
            payment_method,
            "failed",
            "payment_intent.payment_failed",
            decline_code,
            message,
            risk_type="issuer_declined",
        )
        for payment_method, decline_code, message, _retryable in STRIPE_TEST_CARD_DECLINES
    },
    # Radar blocks it; the customer is not told why (that would help a fraudster).
    "radar_highest_risk": CardCase(
        "pm_card_radarBlock",
        "failed",
        "payment_intent.payment_failed",
        "fraudulent",
        "Your card was declined.",
        risk_level="highest",
        risk_type="blocked",
    ),
}


def history(payment: Payment) -> list[Step]:
    return list(
        PaymentEvent.objects.filter(payment=payment)
        .order_by("recorded_at", "id")
        .values_list("kind", "from_status", "to_status")
    )


def status_steps(payment: Payment) -> list[Step]:
    """Only the created and status-change rows: the path the payment took."""
    return [step for step in history(payment) if step[0] in ("created", "status")]


def event_kinds(payment: Payment) -> Counter[str]:
    return Counter(PaymentEvent.objects.filter(payment=payment).values_list("kind", flat=True))


def webhooks_received() -> list[tuple[str, str]]:
    """``(event type, stored status)`` for every webhook received, oldest first (one row per event id)."""
    return list(WebhookEvent.objects.order_by("received_at", "id").values_list("type", "status"))


def text(response) -> str:  # noqa: ANN001 - a Django test response
    """A page's HTML with entities decoded, so sentences with apostrophes can be searched."""
    return html.unescape(response.content.decode())


def assert_declined_at_checkout(response, message: str) -> None:  # noqa: ANN001 - a test response
    """The checkout page came back (400) with the decline's ``message`` and what to do next."""
    assert response.status_code == 400
    page = text(response)
    assert message in page
    assert "Pay with another card, or contact Alpha Shop if this keeps happening." in page


def merchant_client(tenant) -> Client:  # noqa: ANN001 - tests.conftest.Tenant
    """The merchant's owner, signed in with both factors moments ago (refunds need a fresh code)."""
    return login_verified(Client(), tenant.owner)


def merchant_page(tenant, payment: Payment) -> str:  # noqa: ANN001
    response = merchant_client(tenant).get(f"/payments/{payment.public_id}/")
    assert response.status_code == 200
    return text(response)


def refund_from_page(tenant, payment: Payment, *, amount: str = "", reason: str = "Customer asked"):  # noqa: ANN001, ANN201
    """The merchant submits the refund form on the payment page (``amount`` in major units)."""
    return merchant_client(tenant).post(
        f"/payments/{payment.public_id}/refund/",
        {"refund_id": new_public_id("re"), "amount": amount, "reason": reason},
    )


def refunds(payment: Payment) -> list[tuple[int, str, str]]:
    return list(
        Refund.objects.filter(payment=payment)
        .order_by("created_at")
        .values_list("amount", "status", "method")
    )


def assert_refund_refused(answer, payment: Payment, message: str, *, status: str = "succeeded") -> None:  # noqa: ANN001
    """The refund form came back (400) with ``message``, and nothing changed: no refund is
    recorded and the payment keeps its ``status`` with nothing refunded."""
    assert answer.status_code == 400
    assert message in text(answer)
    assert not Refund.objects.exists()
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == (status, 0)
