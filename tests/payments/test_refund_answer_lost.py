"""A refund whose gateway answer is lost is kept, shown pending, found at the gateway, never sent twice.

The gateways' real SDKs talk to the HTTP fakes; ``drop_answers`` makes a fake do the refund
and then lose its answer (the connection closes with no response, as when a request times out
after reaching the vendor). The merchant then tries again from a freshly rendered refund form
(a new refund id, so no idempotency key can help).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from payments import services
from payments.models import Payment, Refund
from security.audit import verify_chain
from security.ids import new_public_id
from tests.fakes.braintree_fake import BraintreeFake
from tests.fakes.stripe_fake import StripeFake
from tests.payments.api_helpers import call, key_for
from tests.payments.helpers import latest_payment, new_session, pay, use_braintree, use_stripe
from tests.payments.matrix_helpers import merchant_client, merchant_page, refund_from_page, text

pytestmark = pytest.mark.django_db

STRIPE_REFUND = ("POST", "/v1/refunds")
BRAINTREE_REFUND = ("POST", r"/merchants/[^/]+/transactions/[^/]+/refund")
# The Stripe SDK tries a request whose connection failed twice more (the platform's default),
# with the same idempotency key: every one of those answers is lost too.
STRIPE_TRIES = 3


@pytest.fixture
def on_stripe(settings, stripe_fake: StripeFake, tenant: Any) -> StripeFake:
    return use_stripe(settings, stripe_fake, tenant)


@pytest.fixture
def on_braintree(settings, braintree_fake: BraintreeFake, tenant: Any) -> BraintreeFake:
    return use_braintree(settings, braintree_fake, tenant)


def stripe_paid(tenant: Any, amount: int = 2500) -> Payment:
    session = new_session(tenant, amount=amount, currency="EUR")
    pay(Client(), session, "pm_card_visa")
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED
    return payment


def braintree_settled(tenant: Any, fake: BraintreeFake, amount: int = 2500) -> Payment:
    session = new_session(tenant, amount=amount, currency="USD")
    Client().post(f"/pay/{session.public_id}/", {"payment_method_nonce": "fake-valid-nonce"})
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED
    fake.settle(payment.gateway_payment_id)  # overnight settlement: now it can be refunded
    return payment


def stripe_refunds(fake: StripeFake) -> list[int]:
    return [r["amount"] for r in fake.account().refunds.values()]


def braintree_credits(fake: BraintreeFake) -> list[str]:
    return [t["amount"] for t in fake.transactions.values() if t["type"] == "credit"]


def ours(payment: Payment) -> list[tuple[int, str]]:
    return list(Refund.objects.filter(payment=payment).order_by("pk").values_list("amount", "status"))


# --- The merchant tries again from a fresh form ------------------------------------------------------


def test_stripe_refund_answered_by_a_timeout_is_kept_pending_and_never_sent_twice(
    tenant: Any, on_stripe: StripeFake
) -> None:
    payment = stripe_paid(tenant)
    on_stripe.drop_answers(*STRIPE_REFUND, count=STRIPE_TRIES)

    merchant = merchant_client(tenant)
    first = merchant.post(
        f"/payments/{payment.public_id}/refund/",
        {"refund_id": new_public_id("re"), "amount": "10.00", "reason": "One item returned"},
    )

    # Stripe made the refund; its answer never came. We keep it, and say so.
    assert first.status_code == 302
    assert stripe_refunds(on_stripe) == [1000]
    [refund] = Refund.objects.filter(payment=payment)
    assert (refund.amount, refund.status, refund.gateway_refund_id) == (1000, "pending", "")
    page = text(merchant.get(first["Location"]))
    assert "Refund of 10.00 EUR: pending. The payment provider's answer did not arrive" in page
    assert ">Pending<" in page and "Being confirmed with the payment provider" in page
    assert "Up to <strong>15.00 EUR</strong> can be refunded" in page  # the pending refund counts

    # The merchant, thinking it failed, refunds 10.00 again from a freshly rendered form.
    again = refund_from_page(tenant, payment, amount="10.00", reason="One item returned")

    assert again.status_code == 400
    assert (
        "An earlier refund of 10.00 EUR on this payment has just been confirmed with the payment "
        "provider: it was refunded. Check the payment's refunds before refunding again."
    ) in text(again)
    assert stripe_refunds(on_stripe) == [1000]  # exactly one refund at Stripe
    assert ours(payment) == [(1000, "succeeded")]  # and exactly one here, settled from Stripe's record
    refund.refresh_from_db()
    assert refund.gateway_refund_id == next(iter(on_stripe.account().refunds))
    payment.refresh_from_db()
    assert payment.amount_refunded == 1000
    page = merchant_page(tenant, payment)
    assert "Being confirmed with the payment provider" not in page
    assert "Up to <strong>15.00 EUR</strong> can be refunded" in page
    assert verify_chain().ok


def test_braintree_refund_answered_by_a_timeout_is_found_among_the_sales_credits(
    tenant: Any, on_braintree: BraintreeFake
) -> None:
    payment = braintree_settled(tenant, on_braintree)
    on_braintree.drop_answers(*BRAINTREE_REFUND)

    first = refund_from_page(tenant, payment, amount="10.00", reason="One item returned")

    assert first.status_code == 302
    assert braintree_credits(on_braintree) == ["10.00"]
    assert ours(payment) == [(1000, "pending")]
    assert ">Pending<" in merchant_page(tenant, payment)

    on_braintree.clear_requests()
    again = refund_from_page(tenant, payment, amount="10.00", reason="One item returned")

    assert again.status_code == 400
    assert "An earlier refund of 10.00 USD on this payment has just been confirmed" in text(again)
    # The sale's credits were searched; no refund was sent.
    assert [r.method for r in on_braintree.requests if r.path.endswith("/refund")] == []
    assert braintree_credits(on_braintree) == ["10.00"]
    [refund] = Refund.objects.filter(payment=payment)
    assert (refund.status, refund.gateway_refund_id) == (
        "succeeded",
        on_braintree.transaction(payment.gateway_payment_id)["refund_ids"][0],
    )
    payment.refresh_from_db()
    assert payment.amount_refunded == 1000

    # Now the merchant, having looked, really wants a second refund: it goes through.
    third = refund_from_page(tenant, payment, amount="5.00", reason="Another item returned")
    assert third.status_code == 302
    assert braintree_credits(on_braintree) == ["10.00", "5.00"]
    assert ours(payment) == [(1000, "succeeded"), (500, "succeeded")]


def test_while_the_gateway_cannot_be_asked_no_other_refund_is_sent(
    tenant: Any, on_braintree: BraintreeFake
) -> None:
    payment = braintree_settled(tenant, on_braintree)
    on_braintree.drop_answers(*BRAINTREE_REFUND)
    refund_from_page(tenant, payment, amount="", reason="Order canceled")
    assert braintree_credits(on_braintree) == ["25.00"]

    on_braintree.clear_requests()
    on_braintree.fail_next(503, count=5)  # Braintree is down now
    again = refund_from_page(tenant, payment, amount="5.00", reason="Order canceled")

    assert again.status_code == 400
    assert "An earlier refund of this payment is still being confirmed with the payment provider" in text(
        again
    )
    assert not any(r.path.endswith("/refund") for r in on_braintree.requests)
    assert ours(payment) == [(2500, "pending")]


def test_a_refund_refused_in_plain_words_leaves_nothing(tenant: Any, on_stripe: StripeFake) -> None:
    payment = stripe_paid(tenant)
    on_stripe.fail_next(429)  # rate-limited: Stripe did nothing

    answer = refund_from_page(tenant, payment, amount="5.00")

    assert answer.status_code == 400
    assert "The payment provider is busy. Try again in a moment." in text(answer)
    assert ours(payment) == [] and stripe_refunds(on_stripe) == []
    assert verify_chain().ok


# --- Settled by reconcile_payments ----------------------------------------------------------------------


def test_reconcile_settles_a_refund_whose_answer_was_lost_and_a_second_run_changes_nothing(
    tenant: Any, on_stripe: StripeFake
) -> None:
    payment = stripe_paid(tenant)
    on_stripe.drop_answers(*STRIPE_REFUND, count=STRIPE_TRIES)
    refund_from_page(tenant, payment, amount="", reason="Order canceled")
    assert ours(payment) == [(2500, "pending")]

    call_command("reconcile_payments", "--since", "1d")

    assert ours(payment) == [(2500, "succeeded")]
    payment.refresh_from_db()
    assert payment.amount_refunded == 2500
    steps = list(payment.events.filter(kind="refund").values_list("from_status", "to_status"))
    call_command("reconcile_payments", "--since", "1d")
    assert ours(payment) == [(2500, "succeeded")]
    assert list(payment.events.filter(kind="refund").values_list("from_status", "to_status")) == steps
    assert stripe_refunds(on_stripe) == [2500]


def test_a_refund_the_gateway_never_received_fails_once_the_grace_has_passed(
    tenant: Any, on_stripe: StripeFake
) -> None:
    payment = stripe_paid(tenant)
    on_stripe.fail_next(500, count=STRIPE_TRIES)  # Stripe's own error: the outcome is unknown

    refund_from_page(tenant, payment, amount="7.00", reason="Damaged")
    [refund] = Refund.objects.filter(payment=payment)
    assert refund.awaiting_confirmation and stripe_refunds(on_stripe) == []

    soon = services.refunds_reconcile(since=timedelta(days=1))
    assert soon == {"checked": 1, "settled": 0, "errors": 0}  # it may still be on its way
    later = timezone.now() + services.REFUND_CONFIRM_GRACE + timedelta(seconds=1)
    assert services.refunds_reconcile(since=timedelta(days=1), now=later)["settled"] == 1

    refund.refresh_from_db()
    assert (refund.status, refund.failure_reason) == ("failed", services.REFUND_NEVER_ARRIVED)
    page = merchant_page(tenant, payment)
    assert services.REFUND_NEVER_ARRIVED in page
    assert "Up to <strong>25.00 EUR</strong> can be refunded" in page  # nothing was refunded


# --- The API shows it pending too ------------------------------------------------------------------------


def test_api_refund_whose_answer_was_lost_is_answered_as_pending(tenant: Any, on_stripe: StripeFake) -> None:
    payment = stripe_paid(tenant)
    key = key_for(tenant)
    on_stripe.drop_answers(*STRIPE_REFUND, count=STRIPE_TRIES)

    created = call(
        "POST", "/api/v1/refunds", key=key, body={"payment": payment.public_id, "reason": "Order canceled"}
    )

    assert created.status_code == 201, created.content
    assert (created.json()["status"], created.json()["amount"]) == ("pending", 2500)
    shown = call("GET", f"/api/v1/refunds/{created.json()['id']}", key=key)
    assert shown.json()["status"] == "pending"
    assert stripe_refunds(on_stripe) == [2500]


# --- The same flaw at checkout: a Braintree sale whose answer was lost ------------------------------------


def test_a_braintree_sale_whose_answer_was_lost_is_found_before_the_customer_is_charged_again(
    tenant: Any, on_braintree: BraintreeFake
) -> None:
    session = new_session(tenant, amount=2500, currency="USD")
    browser = Client()
    on_braintree.drop_answers("POST", r"/merchants/[^/]+/transactions")

    first = browser.post(f"/pay/{session.public_id}/", {"payment_method_nonce": "fake-valid-nonce"})

    assert first.status_code == 400
    assert "We could not reach the payment provider. Try again in a moment." in text(first)
    sales = [t for t in on_braintree.transactions.values() if t["type"] == "sale"]
    assert [s["status"] for s in sales] == ["submitted_for_settlement"]  # the card was charged

    # The customer presses Pay again.
    again = browser.post(f"/pay/{session.public_id}/", {"payment_method_nonce": "fake-valid-nonce"})

    assert again.status_code == 302 and again["Location"].endswith("/done/")
    assert [t["id"] for t in on_braintree.transactions.values() if t["type"] == "sale"] == [sales[0]["id"]]
    payment = latest_payment(session)
    assert (payment.status, payment.gateway_payment_id, payment.attempts) == ("succeeded", sales[0]["id"], 1)
