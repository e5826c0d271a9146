"""Braintree failure matrix: every case end to end, through the real ``braintree`` SDK against the HTTP fake.

Each case: a checkout session → the customer on ``/pay/<id>/`` posting Drop-in's nonce and
device data (``checkout_confirm``: ``transaction.sale``) → the fake Braintree gateway, which
behaves like the sandbox (test nonces; amounts 2000.00-2999.99 decline with that processor
response code, 3000.00 fails with 3000) → notifications made by the SDK's own
``webhook_testing.sample_notification`` POSTed to our real ``/webhooks/braintree/`` → the
Celery task that applies them (eager) → the payment, its history and the merchant's page.

Braintree notifies settlement (``transaction_settled``, ``transaction_disbursed``...) and
disputes, never a decline: declined sales get no webhook, so those cases end at the checkout.
A notification's transaction is a sample (always 100.00 USD): we re-fetch the transaction,
so the fake's answer, not the sample, decides what is recorded.

=====================================  ==========================================================
case                                   test
=====================================  ==========================================================
success                                test_sale_outcome[success]
generic decline (2000)                 test_sale_outcome[generic_decline]
expired card (2004)                    test_sale_outcome[expired_card]
insufficient funds (2001)              test_sale_outcome[insufficient_funds]
incorrect CVC (2010)                   test_sale_outcome[incorrect_cvc]
processing error (3000)                test_sale_outcome[processing_error]
fraud (gateway_rejected: fraud)        test_sale_outcome[fraud_decline]
3DS required then success              test_sale_outcome[three_d_secure_success]
3DS required then failure              test_sale_outcome[three_d_secure_failure]
partial refund of a settled sale       test_partial_refund_of_a_settled_sale
refund of an unsettled sale            test_refund_of_an_unsettled_sale_voids_it_in_full_only
refund already made in Braintree       test_a_refund_already_made_in_the_control_panel_is_refused_clearly
refund while Braintree rate-limits     test_a_refund_while_braintree_is_busy_asks_to_try_again
refund of a sale Braintree lacks       test_a_refund_of_a_sale_braintree_has_no_record_of_is_refused
refund answer with unreadable amount   test_a_refund_answered_without_a_readable_amount_is_kept_pending
duplicate webhooks                     test_duplicate_notifications_are_applied_once
out-of-order webhooks                  test_out_of_order_notifications_keep_the_newest
declined at settlement                 test_settlement_declined_reverses_a_succeeded_sale
refund declined at settlement          test_a_refund_declined_at_settlement_fails_and_gives_the_amount_back
=====================================  ==========================================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from braintree import BraintreeGateway as SdkGateway
from django.test import Client
from django.urls import reverse

from payments import money
from payments.models import CheckoutSession, Payment, PaymentSettings, Refund, WebhookEvent
from payments.services import payment_move_allowed
from security.ids import new_public_id
from tests.fakes.braintree_fake import BraintreeFake
from tests.payments import braintree_notifications
from tests.payments.conftest import make_braintree_gateway
from tests.payments.helpers import latest_payment, new_session, use_braintree
from tests.payments.matrix_helpers import (
    CREATED,
    assert_declined_at_checkout,
    assert_refund_refused,
    history,
    merchant_client,
    merchant_page,
    refund_from_page,
    refunds,
    status_steps,
    text,
    webhooks_received,
)

pytestmark = pytest.mark.django_db

DEVICE_DATA = '{"correlation_id":"a1b2c3d4e5"}'


@dataclass
class BraintreeWorld:
    """The merchant on Braintree, a customer's browser with Drop-in, and Braintree's notifier."""

    tenant: Any
    fake: BraintreeFake
    sdk: SdkGateway  # the SDK configured with the platform's keys (signs sample notifications)
    browser: Client
    run_on_commit: Any

    def session(self, amount: int = 2500) -> CheckoutSession:
        session = new_session(self.tenant, amount=amount, currency="USD")
        assert session.gateway == "braintree"
        return session

    def pay(self, session: CheckoutSession, nonce: str):  # noqa: ANN201 - a test response
        """What the checkout page posts once Drop-in (and its 3D Secure step) hands back a nonce."""
        return self.browser.post(
            f"/pay/{session.public_id}/", {"payment_method_nonce": nonce, "device_data": DEVICE_DATA}
        )

    def notification(self, kind: str, object_id: str) -> bytes:
        """The SDK's sample, naming the merchant's account as Braintree's own notifications do."""
        return braintree_notifications.notification(self.sdk, kind, object_id, merchant_account="fake_usd")

    def deliver(self, body: bytes):  # noqa: ANN201
        with self.run_on_commit(execute=True):
            response = Client().post(
                "/webhooks/braintree/", data=body, content_type="application/x-www-form-urlencoded"
            )
        assert response.status_code == 200, response.content
        return response

    def settle(self, payment: Payment) -> None:
        """Overnight settlement, through the SDK's sandbox testing call."""
        self.sdk.testing.settle_transaction(payment.gateway_payment_id)

    def settled(self, payment: Payment) -> None:
        """Settlement, then Braintree's ``transaction_settled`` notification."""
        self.settle(payment)
        self.deliver(self.notification("transaction_settled", payment.gateway_payment_id))


@pytest.fixture
def world(settings, braintree_fake, tenant, client, django_capture_on_commit_callbacks) -> BraintreeWorld:
    use_braintree(settings, braintree_fake, tenant)
    sdk = make_braintree_gateway(braintree_fake).sdk
    return BraintreeWorld(tenant, braintree_fake, sdk, client, django_capture_on_commit_callbacks)


# --- One sale, one outcome ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaleCase:
    nonce: str
    amount: int  # USD cents; the sandbox declines 2000.00-3000.99 with that response code
    status: str
    gateway_status: str
    decline_code: str = ""
    customer_message: str = ""
    require_sca: bool = False
    three_d_secure: str = ""
    risk_level: str = "normal"
    risk_type: str = "authorized"


def _declined(amount: int, decline_code: str, message: str, nonce: str = "fake-valid-nonce") -> SaleCase:
    return SaleCase(nonce, amount, "failed", "processor_declined", decline_code, message)


SALE_CASES = {
    "success": SaleCase("fake-valid-nonce", 2500, "succeeded", "submitted_for_settlement"),
    "generic_decline": _declined(
        2500, "do_not_honor", "Your card was declined.", nonce="fake-processor-declined-visa-nonce"
    ),
    "expired_card": _declined(200400, "expired_card", "Your card has expired."),
    "insufficient_funds": _declined(200100, "insufficient_funds", "Your card has insufficient funds."),
    "incorrect_cvc": _declined(201000, "incorrect_cvc", "Your card's security code is incorrect."),
    "processing_error": SaleCase(
        "fake-valid-nonce",
        300000,
        "failed",
        "failed",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    # Braintree's fraud tools decline it (risk_data decision "Decline"); the customer is not told why.
    "fraud_decline": SaleCase(
        "fake-gateway-rejected-fraud-nonce",
        2500,
        "failed",
        "gateway_rejected",
        "fraudulent",
        "Your card was declined.",
        risk_level="highest",
        risk_type="blocked",
    ),
    # Drop-in runs the challenge in the browser; the sale requires 3D Secure (the merchant asks for SCA).
    "three_d_secure_success": SaleCase(
        "fake-three-d-secure-visa-full-authentication-nonce",
        2500,
        "succeeded",
        "submitted_for_settlement",
        require_sca=True,
        three_d_secure="authenticate_successful",
    ),
    "three_d_secure_failure": SaleCase(
        "fake-three-d-secure-visa-failed-authentication-nonce",
        2500,
        "failed",
        "gateway_rejected",
        "authentication_failed",
        "We could not verify your card with your bank. Try again or use another card.",
        require_sca=True,
        three_d_secure="authenticate_failed",
    ),
}


@pytest.mark.parametrize("case", SALE_CASES.values(), ids=SALE_CASES.keys())
def test_sale_outcome(world: BraintreeWorld, case: SaleCase) -> None:
    PaymentSettings.objects.filter(merchant=world.tenant.merchant).update(require_sca=case.require_sca)
    session = world.session(case.amount)
    response = world.pay(session, case.nonce)
    payment = latest_payment(session)
    sale = world.fake.transaction(payment.gateway_payment_id)
    assert sale["status"] == case.gateway_status
    assert sale["order_id"] == payment.public_id and sale["merchant_account_id"] == "fake_usd"
    assert sale["risk_data"]["device_data_captured"] is True
    assert (sale["amount"], sale["currency_iso_code"]) == (f"{case.amount / 100:.2f}", "USD")

    if case.status == "succeeded":
        assert response["Location"] == reverse("checkout_done", args=[session.public_id])
        assert "Payment successful" in text(world.browser.get(response["Location"]))
        # The sale settles overnight and Braintree says so.
        world.settled(payment)
        assert webhooks_received() == [("transaction_settled", WebhookEvent.Status.APPLIED)]
    else:
        assert_declined_at_checkout(response, case.customer_message)
        assert webhooks_received() == []

    payment.refresh_from_db()
    assert payment.status == case.status
    assert (payment.amount, payment.currency) == (case.amount, "USD")
    assert payment.amount_captured == (case.amount if case.status == "succeeded" else 0)
    assert (payment.decline_code, payment.decline_message) == (case.decline_code, case.customer_message)
    assert payment.three_d_secure == case.three_d_secure
    assert (payment.risk_level, payment.risk_type) == (case.risk_level, case.risk_type)
    assert (payment.card_brand, payment.card_bin) != ("", "")
    assert status_steps(payment) == [CREATED, ("status", "requires_payment_method", case.status)]

    page = merchant_page(world.tenant, payment)
    assert f'data-testid="payment-status">{payment.get_status_display()}<' in page
    assert money.format_minor(case.amount, "USD") in page
    if case.decline_code:
        assert f'{case.customer_message} <code class="small">{case.decline_code}</code>' in page
    if case.risk_type == "blocked":
        assert "<dt>Gateway risk</dt><dd>highest (score 96)</dd>" in page


# --- Refunds --------------------------------------------------------------------------------------------


def paid(world: BraintreeWorld, amount: int = 2500) -> Payment:
    session = world.session(amount)
    world.pay(session, "fake-valid-nonce")
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED
    return payment


def test_partial_refund_of_a_settled_sale(world: BraintreeWorld) -> None:
    payment = paid(world)
    world.settled(payment)

    answer = refund_from_page(world.tenant, payment, amount="10.00", reason="One item returned")
    assert answer.status_code == 302
    [refund] = Refund.objects.filter(payment=payment)
    credit = world.fake.transaction(refund.gateway_refund_id)
    assert (credit["type"], credit["amount"], credit["refunded_transaction_id"]) == (
        "credit",
        "10.00",
        payment.gateway_payment_id,
    )
    # A credit submitted for settlement is as final as Braintree gets for a card refund.
    assert refunds(payment) == [(1000, "succeeded", "refund")]
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured, payment.amount_refunded) == ("succeeded", 2500, 1000)
    page = merchant_page(world.tenant, payment)
    assert "<dt>Refunded</dt><dd>10.00 USD</dd>" in page
    assert "Up to <strong>15.00 USD</strong> can be refunded" in page

    # More than is left is refused by us before Braintree is asked.
    too_much = refund_from_page(world.tenant, payment, amount="15.01")
    assert too_much.status_code == 400 and "You can refund at most 15.00 USD" in text(too_much)
    assert Refund.objects.filter(payment=payment).count() == 1


def test_refund_of_an_unsettled_sale_voids_it_in_full_only(world: BraintreeWorld) -> None:
    payment = paid(world)
    assert world.fake.transaction(payment.gateway_payment_id)["status"] == "submitted_for_settlement"

    part = refund_from_page(world.tenant, payment, amount="5.00")
    assert_refund_refused(part, payment, "has not settled yet, so it can only be refunded in full")
    assert world.fake.transaction(payment.gateway_payment_id)["status"] == "submitted_for_settlement"

    whole = refund_from_page(world.tenant, payment, amount="", reason="Order canceled before shipping")
    assert whole.status_code == 302
    assert world.fake.transaction(payment.gateway_payment_id)["status"] == "voided"
    assert refunds(payment) == [(2500, "succeeded", "void")]
    payment.refresh_from_db()
    assert (payment.amount_captured, payment.amount_refunded) == (2500, 2500)
    page = merchant_page(world.tenant, payment)
    assert "<dt>Refunded</dt><dd>25.00 USD</dd>" in page and "Succeeded</span> (void)" in page
    assert "can be refunded" not in page


def test_a_refund_already_made_in_the_control_panel_is_refused_clearly(world: BraintreeWorld) -> None:
    payment = paid(world)
    world.settle(payment)
    # The merchant refunded it in Braintree's Control Panel; we have not heard about it yet.
    assert world.sdk.transaction.refund(payment.gateway_payment_id).is_success

    answer = refund_from_page(world.tenant, payment, amount="")

    assert_refund_refused(answer, payment, "This payment has already been fully refunded.")


def test_a_refund_while_braintree_is_busy_asks_to_try_again(world: BraintreeWorld) -> None:
    payment = paid(world)
    world.settle(payment)
    world.fake.fail_next(429)

    answer = refund_from_page(world.tenant, payment, amount="5.00")

    assert_refund_refused(answer, payment, "The payment provider is busy. Try again in a moment.")
    assert world.fake.transaction(payment.gateway_payment_id)["refund_ids"] == []
    # Once Braintree answers again, the same refund goes through.
    assert refund_from_page(world.tenant, payment, amount="5.00").status_code == 302
    assert refunds(payment) == [(500, "succeeded", "refund")]


def test_a_refund_of_a_sale_braintree_has_no_record_of_is_refused(world: BraintreeWorld) -> None:
    payment = paid(world)
    del world.fake.transactions[payment.gateway_payment_id]

    answer = refund_from_page(world.tenant, payment, amount="")

    assert_refund_refused(answer, payment, "The payment provider has no record of this payment.")


def test_a_refund_answered_without_a_readable_amount_is_kept_pending(world: BraintreeWorld) -> None:
    payment = paid(world)
    world.settle(payment)
    refund_id = new_public_id("re")
    # Braintree already holds a credit for this refund request (a retried submission), and
    # the credit it answers with carries an amount that cannot be read.
    made = world.sdk.transaction.refund(
        payment.gateway_payment_id, {"amount": "5.00", "api_request_key": f"{refund_id}:refund"}
    )
    world.fake.transaction(made.transaction.id)["amount"] = "NaN"

    answer = merchant_client(world.tenant).post(
        f"/payments/{payment.public_id}/refund/",
        {"refund_id": refund_id, "amount": "5.00", "reason": "Customer asked"},
    )

    # The refund may well have happened: it is kept, pending, and counted, not forgotten.
    assert answer.status_code == 302
    assert refunds(payment) == [(500, "pending", "refund")]
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", 0)
    page = merchant_page(world.tenant, payment)
    assert ">Pending<" in page and "Being confirmed with the payment provider" in page
    assert "Up to <strong>20.00 USD</strong> can be refunded" in page
    assert [t["type"] for t in world.fake.transactions.values()].count("credit") == 1


# --- Notifications twice, and in the wrong order ---------------------------------------------------------


def test_duplicate_notifications_are_applied_once(world: BraintreeWorld) -> None:
    payment = paid(world)
    world.settle(payment)
    body = world.notification("transaction_settled", payment.gateway_payment_id)
    first = world.deliver(body)
    steps = history(payment)
    again = world.deliver(body)  # Braintree retries with the same signed payload

    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    assert WebhookEvent.objects.count() == 1
    assert WebhookEvent.objects.get().attempts == 1
    assert history(payment) == steps
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured, payment.amount_refunded) == ("succeeded", 2500, 0)


def test_out_of_order_notifications_keep_the_newest(world: BraintreeWorld) -> None:
    payment = paid(world)
    world.settle(payment)
    settled = world.notification("transaction_settled", payment.gateway_payment_id)
    time.sleep(1.05)  # notification timestamps have one-second resolution
    disbursed = world.notification("transaction_disbursed", payment.gateway_payment_id)

    world.deliver(disbursed)
    world.deliver(settled)  # sent earlier, arrives later

    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("succeeded", 2500)
    assert status_steps(payment) == [CREATED, ("status", "requires_payment_method", "succeeded")]
    assert [h for h in history(payment) if h[0] == "ignored"] == [("ignored", "succeeded", "succeeded")]
    assert webhooks_received() == [
        ("transaction_disbursed", WebhookEvent.Status.APPLIED),
        ("transaction_settled", WebhookEvent.Status.IGNORED),
    ]
    assert "Older than the state already applied; ignored." in merchant_page(world.tenant, payment)


# --- Declined at settlement, after the sale was accepted ---------------------------------------------------


def test_settlement_declined_reverses_a_succeeded_sale(world: BraintreeWorld) -> None:
    payment = paid(world)
    world.sdk.testing.settlement_decline_transaction(payment.gateway_payment_id)
    world.deliver(world.notification("transaction_settlement_declined", payment.gateway_payment_id))

    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("failed", 0)
    assert status_steps(payment)[-1] == ("status", "succeeded", "failed")
    page = merchant_page(world.tenant, payment)
    assert "Declined at settlement: the funds were not collected." in page
    assert "can be refunded" not in page
    # Nothing is left to refund: the money never arrived.
    refused = refund_from_page(world.tenant, payment, amount="")
    assert_refund_refused(refused, payment, "Only a payment that succeeded can be refunded.", status="failed")


def test_only_settlement_declined_may_move_a_payment_backwards() -> None:
    assert payment_move_allowed("succeeded", "failed", gateway_status="settlement_declined")
    assert not payment_move_allowed("succeeded", "failed", gateway_status="processor_declined")
    assert not payment_move_allowed("succeeded", "failed")
    assert not payment_move_allowed("canceled", "failed", gateway_status="settlement_declined")


def test_a_refund_declined_at_settlement_fails_and_gives_the_amount_back(world: BraintreeWorld) -> None:
    payment = paid(world)
    world.settled(payment)
    refund_from_page(world.tenant, payment, amount="10.00", reason="One item returned")
    [refund] = Refund.objects.filter(payment=payment)
    assert refund.status == "succeeded"

    world.sdk.testing.settlement_decline_transaction(refund.gateway_refund_id)
    # The notification names the credit transaction, not the sale it refunds.
    world.deliver(world.notification("transaction_settlement_declined", refund.gateway_refund_id))

    refund.refresh_from_db()
    payment.refresh_from_db()
    assert refund.status == "failed"
    assert "declined the refund at settlement" in refund.failure_reason
    assert (payment.status, payment.amount_refunded) == ("succeeded", 0)
    assert WebhookEvent.objects.get(type="transaction_settlement_declined").status == "applied"
    page = merchant_page(world.tenant, payment)
    assert "Up to <strong>25.00 USD</strong> can be refunded" in page
