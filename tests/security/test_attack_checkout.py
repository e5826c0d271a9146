"""The customer cannot change what a payment link charges, and a replayed 3D Secure return does
nothing twice.

Amount and currency: the customer's browser is the attacker. It adds or alters every field it
could (amount, currency, hidden inputs, Braintree's ``data-amount``/``data-currency`` read by the
Drop-in script, query strings on the page that creates the payment and on the return URL) in the
create (GET ``/pay/<id>/``) and confirm (POST) requests of the simulated, Stripe and Braintree
checkouts. The payment, and what the gateway was asked to charge, keep the link's amount and
currency.

3D Secure replay: after the challenge is approved, the same return request (the challenge's POST,
the return URL with the same query) replayed, and a "fail" posted after the approval, change
nothing: one status change, one audit event per action, one merchant webhook delivery.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from payments.merchant_webhooks import webhook_endpoint_create
from payments.models import CheckoutSession, Payment, PaymentEvent, WebhookDelivery
from payments.models.gateway_state import SimulatedIntent
from security.models import AuditEvent
from tests.conftest import Tenant
from tests.payments.conftest import (  # noqa: F401 - fixtures
    STRIPE_PUBLISHABLE_KEY,
    STRIPE_SECRET_KEY,
    WEBHOOK_SECRET,
    braintree_fake,
    braintree_fake_server,
    stripe_fake,
    stripe_fake_server,
)
from tests.payments.helpers import latest_payment, new_session, use_braintree, use_stripe
from tests.payments.webhook_helpers import dns  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

# What a tampering browser adds to every request it can.
TAMPERED: dict[str, str] = {
    "amount": "1",
    "amount_minor": "1",
    "amount_major": "0.01",
    "currency": "JPY",
    "data-amount": "0.01",
    "data-currency": "JPY",
    "session": "cs_other",
    "checkout_session": "cs_other",
    "payment_intent": "pi_other",
    "gateway_payment_id": "pi_other",
    "client_secret": "pi_other_secret_x",
    "merchant_account_id": "fake_eur",
    "capture_method": "manual",
    "mode": "live",
}


def _assert_kept(session: CheckoutSession, payment: Payment) -> None:
    payment.refresh_from_db()
    assert (payment.amount, payment.currency) == (session.amount, session.currency)
    assert payment.checkout_session_id == session.pk and payment.merchant_id == session.merchant_id
    session.refresh_from_db()
    assert (session.amount, session.currency) == (2500, session.currency)
    if payment.status == Payment.Status.SUCCEEDED:
        assert payment.amount_captured == session.amount


# --- Simulated gateway ---------------------------------------------------------------------------------


@pytest.mark.parametrize("card", ["pm_card_visa", "pm_card_threeDSecure2Required"])
def test_simulated_checkout_keeps_the_links_amount_and_currency(
    client: Client, tenant: Tenant, card: str
) -> None:
    session = new_session(tenant, amount=2500, currency="EUR")
    assert client.get(f"/pay/{session.public_id}/", TAMPERED).status_code == 200
    response = client.post(
        f"/pay/{session.public_id}/?amount=1&currency=JPY", {"payment_method": card, **TAMPERED}
    )
    assert response.status_code == 302
    payment = latest_payment(session)
    if payment.status == Payment.Status.REQUIRES_ACTION:
        client.post(response["Location"], {"decision": "approve", **TAMPERED})
    _assert_kept(session, payment)
    assert payment.status == Payment.Status.SUCCEEDED
    intent = SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id)
    assert (intent.amount, intent.currency.upper()) == (2500, "EUR")


# --- Stripe (the real SDK against the HTTP fake) -----------------------------------------------------------


@pytest.fixture
def stripe_shop(settings, stripe_fake, tenant: Tenant):  # noqa: ANN201, F811
    return use_stripe(settings, stripe_fake, tenant)


def _stripe_amounts(fake) -> list[tuple[Any, Any]]:  # noqa: ANN001
    """The amount and currency of every request our server sent Stripe that named one."""
    seen = []
    for request in fake.requests:
        params = request.params or {}
        if "amount" in params or "currency" in params:
            seen.append((params.get("amount"), params.get("currency")))
    return seen


@pytest.mark.parametrize("card", ["pm_card_visa", "pm_card_threeDSecure2Required"])
def test_stripe_checkout_keeps_the_links_amount_and_currency(
    client: Client, tenant: Tenant, stripe_shop, card: str
) -> None:
    session = new_session(tenant, amount=2500, currency="EUR")
    assert session.gateway == "stripe"
    assert client.get(f"/pay/{session.public_id}/", TAMPERED).status_code == 200
    client.post(f"/pay/{session.public_id}/", {"payment_method": card, **TAMPERED})
    payment = latest_payment(session)
    if payment.status == Payment.Status.REQUIRES_ACTION:
        stripe_shop.complete_three_ds(payment.gateway_payment_id, succeed=True)
        client.get(reverse("checkout_return", args=[session.public_id]), TAMPERED)
    _assert_kept(session, payment)
    assert payment.status == Payment.Status.SUCCEEDED
    intent = stripe_shop.intent(payment.gateway_payment_id)
    assert (intent["amount"], intent["currency"]) == (2500, "eur")
    assert set(_stripe_amounts(stripe_shop)) == {("2500", "eur")}, _stripe_amounts(stripe_shop)


def test_stripe_return_with_another_intent_in_the_query_does_not_pay_the_link(
    client: Client, tenant: Tenant, stripe_shop
) -> None:
    """The customer pays a cheap link, then opens an expensive link's return URL naming the cheap
    link's succeeded PaymentIntent: the expensive link stays unpaid."""
    cheap = new_session(tenant, amount=100, currency="EUR")
    client.post(f"/pay/{cheap.public_id}/", {"payment_method": "pm_card_visa"})
    paid = latest_payment(cheap)
    assert paid.status == Payment.Status.SUCCEEDED
    dear = new_session(tenant, amount=2500, currency="EUR")
    client.get(f"/pay/{dear.public_id}/")  # the dear link's own PaymentIntent, never confirmed
    query = {
        "payment_intent": paid.gateway_payment_id,
        "payment_intent_client_secret": stripe_shop.intent(paid.gateway_payment_id)["client_secret"],
        "redirect_status": "succeeded",
    }
    client.get(reverse("checkout_return", args=[dear.public_id]), query)
    dear.refresh_from_db()
    assert dear.status == CheckoutSession.Status.OPEN
    assert not dear.payments.filter(status=Payment.Status.SUCCEEDED).exists()


# --- Braintree (the real SDK against the HTTP fake) ----------------------------------------------------


@pytest.fixture
def braintree_shop(settings, braintree_fake, tenant: Tenant):  # noqa: ANN201, F811
    return use_braintree(settings, braintree_fake, tenant)


def _braintree_sales(fake) -> list[tuple[Any, Any]]:  # noqa: ANN001
    sales = []
    for request in fake.requests:
        params = request.params or {}
        txn = params.get("transaction") if isinstance(params, dict) else None
        if isinstance(txn, dict) and "amount" in txn:
            sales.append((txn.get("amount"), txn.get("merchant_account_id")))
    return sales


@pytest.mark.parametrize("nonce", ["fake-valid-nonce", "fake-three-d-secure-visa-full-authentication-nonce"])
def test_braintree_checkout_keeps_the_links_amount_and_currency(
    client: Client, tenant: Tenant, braintree_shop, nonce: str
) -> None:
    session = new_session(tenant, amount=2500, currency="USD")
    assert session.gateway == "braintree"
    page = client.get(f"/pay/{session.public_id}/", TAMPERED)
    assert page.status_code == 200
    assert b'data-amount="25.00"' in page.content and b'data-currency="USD"' in page.content
    client.post(
        f"/pay/{session.public_id}/",
        {"payment_method_nonce": nonce, "device_data": '{"correlation_id":"x"}', **TAMPERED},
    )
    payment = latest_payment(session)
    _assert_kept(session, payment)
    assert payment.status == Payment.Status.SUCCEEDED
    sales = _braintree_sales(braintree_shop)
    assert sales and all(Decimal(str(amount)) == Decimal("25.00") for amount, _ in sales), sales
    assert all(account in (None, "fake_usd") for _, account in sales), sales


# --- 3D Secure replay ----------------------------------------------------------------------------------


def _counts(payment: Payment) -> dict[str, int]:
    return {
        "status changes": PaymentEvent.objects.filter(payment=payment, kind="status").count(),
        "audit events": AuditEvent.objects.count(),
        "webhook deliveries": WebhookDelivery.objects.filter(merchant=payment.merchant).count(),
        "succeeded deliveries": WebhookDelivery.objects.filter(
            merchant=payment.merchant, event_type="payment.succeeded"
        ).count(),
    }


def test_replayed_simulated_3ds_return_does_nothing_twice(
    client: Client,
    tenant: Tenant,
    dns,  # noqa: F811 - the fixture imported above
    django_capture_on_commit_callbacks,
) -> None:
    webhook_endpoint_create(
        actor=tenant.owner, merchant=tenant.merchant, url="https://public.example.com/hooks"
    )
    session = new_session(tenant, amount=2500, currency="EUR")
    challenge = client.post(f"/pay/{session.public_id}/", {"payment_method": "pm_card_threeDSecure2Required"})
    challenge_url = challenge["Location"]
    payment = latest_payment(session)
    assert payment.status == Payment.Status.REQUIRES_ACTION

    with django_capture_on_commit_callbacks() as first_callbacks:
        done = client.post(challenge_url, {"decision": "approve"})
    assert done["Location"] == reverse("checkout_done", args=[session.public_id])
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    after_first = _counts(payment)
    assert after_first["succeeded deliveries"] == 1
    assert first_callbacks, "the approval schedules the gateway's webhook"

    return_url = reverse("checkout_return", args=[session.public_id])
    query = {"payment_intent": payment.gateway_payment_id, "redirect_status": "succeeded"}
    with django_capture_on_commit_callbacks() as replay_callbacks:
        for _ in range(3):
            client.post(challenge_url, {"decision": "approve"})
            Client().post(challenge_url, {"decision": "approve"})  # from another browser
            client.get(return_url, query)
            client.get(challenge_url)
        client.post(challenge_url, {"decision": "fail"})
        client.post(f"/pay/{session.public_id}/", {"payment_method": "pm_card_threeDSecure2Required"})
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.amount_captured == 2500
    assert _counts(payment) == after_first
    assert replay_callbacks == [], "a replay scheduled more work (a webhook, a task)"
    assert Payment.objects.filter(checkout_session=session).count() == 1


def test_replayed_stripe_3ds_return_does_nothing_twice(
    client: Client, tenant: Tenant, stripe_shop, django_capture_on_commit_callbacks
) -> None:
    session = new_session(tenant, amount=2500, currency="EUR")
    client.post(f"/pay/{session.public_id}/", {"payment_method": "pm_card_threeDSecure2Required"})
    payment = latest_payment(session)
    assert payment.status == Payment.Status.REQUIRES_ACTION
    stripe_shop.complete_three_ds(payment.gateway_payment_id, succeed=True)
    intent = stripe_shop.intent(payment.gateway_payment_id)
    return_url = reverse("checkout_return", args=[session.public_id])
    query = {
        "payment_intent": payment.gateway_payment_id,
        "payment_intent_client_secret": intent["client_secret"],
        "redirect_status": "succeeded",
    }
    client.get(return_url, query)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    after_first = _counts(payment)
    calls = len(stripe_shop.requests)
    with django_capture_on_commit_callbacks() as replay_callbacks:
        for _ in range(3):
            client.get(return_url, query)
            Client().get(return_url, query)
            Client().get(return_url, {**query, "redirect_status": "failed"})
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.amount_captured == 2500
    assert _counts(payment) == after_first
    assert replay_callbacks == []
    assert len(stripe_shop.requests) == calls  # a finished payment is not even asked about again
