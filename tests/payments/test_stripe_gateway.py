"""The Stripe adapter through the real stripe SDK, against the HTTP-level fake."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from payments.gateways.base import GatewayError, PaymentGateway, PaymentRef, PaymentRequest
from payments.gateways.stripe import StripeGateway
from tests.fakes.stripe_fake import StripeFake
from tests.payments.conftest import (
    CONNECTED_ACCOUNT,
    STRIPE_PUBLISHABLE_KEY,
    STRIPE_SECRET_KEY,
    make_stripe_gateway,
)
from tests.payments.gateway_helpers import (
    assert_unreadable,
    paid_ref,
    pay_intent,
    ref_for,
    with_values,
    without,
)
from tests.payments.helpers import STRIPE_TEST_CARD_DECLINES

MakeRequest = Callable[..., PaymentRequest]


def test_the_stripe_adapter_implements_the_protocol(stripe_gateway: StripeGateway) -> None:
    assert isinstance(stripe_gateway, PaymentGateway)


def test_creating_a_payment_sends_a_payment_intent_with_sca_mode_and_idempotency_key(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request(merchant_account=CONNECTED_ACCOUNT, sca_mode="any", amount=1999, currency="gbp")

    payment = stripe_gateway.create_payment(request)

    assert payment.status == "requires_payment_method"
    assert payment.gateway_payment_id and payment.gateway_payment_id.startswith("pi_")
    assert payment.payment_id == request.payment_id
    assert (payment.amount, payment.currency) == (1999, "GBP")
    sent = stripe_fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/payment_intents")
    assert sent.header("Idempotency-Key") == f"{request.payment_id}:create"
    assert sent.header("Stripe-Account") == CONNECTED_ACCOUNT
    assert sent.params["amount"] == "1999"
    assert sent.params["currency"] == "gbp"
    assert sent.params["automatic_payment_methods"] == {"enabled": "true"}
    assert sent.params["payment_method_options"] == {"card": {"request_three_d_secure": "any"}}
    assert sent.params["metadata"] == {"payment_id": request.payment_id}
    assert sent.params["receipt_email"] == "buyer@example.com"
    assert sent.params["capture_method"] == "automatic"


def test_creating_the_same_payment_twice_replays_the_first_intent(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request()
    first = stripe_gateway.create_payment(request)
    second = stripe_gateway.create_payment(request)
    assert first.gateway_payment_id == second.gateway_payment_id
    assert stripe_fake.requests[-1].replayed
    assert len(stripe_fake.account().intents) == 1


def test_client_config_gives_stripe_js_the_publishable_key_secret_and_account(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    request = payment_request(merchant_account=CONNECTED_ACCOUNT)
    payment = stripe_gateway.create_payment(request)
    config = stripe_gateway.client_config(request, payment)
    assert config.publishable_key == STRIPE_PUBLISHABLE_KEY
    assert config.client_secret and config.client_secret.startswith(f"{payment.gateway_payment_id}_secret_")
    assert config.stripe_account == CONNECTED_ACCOUNT
    assert not config.simulated


def test_a_visa_payment_succeeds_with_card_details_and_radar_outcome(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request(merchant_account=CONNECTED_ACCOUNT)
    payment = pay_intent(stripe_gateway, request, "pm_card_visa", return_url="https://shop.example/return")

    assert payment.status == "succeeded"
    assert payment.amount_received == 2500
    assert payment.decline_code is None
    assert payment.card is not None
    assert (payment.card.brand, payment.card.last4, payment.card.country) == ("visa", "4242", "US")
    assert payment.card.fingerprint
    assert payment.fraud is not None
    assert (payment.fraud.type, payment.fraud.risk_level) == ("authorized", "normal")
    assert payment.fraud.provider == "stripe_radar"
    assert payment.charge_id and payment.charge_id.startswith("ch_")
    confirm = stripe_fake.requests[-1]
    assert confirm.path.endswith("/confirm")
    assert confirm.header("Idempotency-Key") == f"{request.payment_id}:confirm:1"
    assert confirm.header("Stripe-Account") == CONNECTED_ACCOUNT
    assert confirm.params["payment_method"] == "pm_card_visa"
    assert confirm.params["return_url"] == "https://shop.example/return"
    assert confirm.params["expand"] == ["latest_charge"]


def test_a_mastercard_payment_succeeds(stripe_gateway: StripeGateway, payment_request: MakeRequest) -> None:
    payment = pay_intent(stripe_gateway, payment_request(), "pm_card_mastercard")
    assert payment.status == "succeeded"
    assert payment.card is not None and payment.card.brand == "mastercard"


DECLINES = STRIPE_TEST_CARD_DECLINES
# Stripe's own error code for each decline (what support staff see as the gateway code).
STRIPE_ERROR_CODES = {
    "generic_decline": "card_declined",
    "expired_card": "expired_card",
    "insufficient_funds": "card_declined",
    "incorrect_cvc": "incorrect_cvc",
    "processing_error": "processing_error",
}


@pytest.mark.parametrize(("payment_method", "decline_code", "message", "retryable"), DECLINES)
def test_a_declined_card_fails_with_a_helpful_message(
    stripe_gateway: StripeGateway,
    payment_request: MakeRequest,
    payment_method: str,
    decline_code: str,
    message: str,
    retryable: bool,
) -> None:
    payment = pay_intent(stripe_gateway, payment_request(), payment_method)
    assert payment.status == "failed"
    assert payment.gateway_status == "requires_payment_method"
    assert payment.decline_code == decline_code
    assert payment.decline_message == message
    assert payment.failure_retryable is retryable
    assert payment.gateway_code == STRIPE_ERROR_CODES[decline_code]
    assert payment.fraud is not None and payment.fraud.type == "issuer_declined"


def test_a_declined_customer_can_retry_with_another_card_on_the_next_attempt(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request()
    declined = pay_intent(stripe_gateway, request, "pm_card_chargeDeclinedInsufficientFunds")
    retried = stripe_gateway.confirm_payment(
        request, payment_method="pm_card_visa", gateway_payment_id=declined.gateway_payment_id, attempt=2
    )
    assert retried.status == "succeeded"
    assert retried.gateway_payment_id == declined.gateway_payment_id
    assert stripe_fake.requests[-1].header("Idempotency-Key") == f"{request.payment_id}:confirm:2"


def test_three_d_secure_required_then_the_customer_passes_the_challenge(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request()
    payment = pay_intent(
        stripe_gateway, request, "pm_card_threeDSecure2Required", return_url="https://shop.example/r"
    )

    assert payment.status == "requires_action"
    assert payment.next_action is not None
    assert payment.next_action.type == "redirect"
    assert payment.next_action.url and payment.next_action.url.startswith("https://hooks.stripe.com/")
    assert payment.next_action.return_url == "https://shop.example/r"

    stripe_fake.complete_three_ds(payment.gateway_payment_id, succeed=True)
    after = stripe_gateway.fetch_payment(ref_for(request, payment.gateway_payment_id))
    assert after.status == "succeeded"
    assert after.three_d_secure is not None
    assert after.three_d_secure.result == "authenticated"
    assert after.three_d_secure.liability_shifted is True


def test_three_d_secure_required_then_the_customer_fails_the_challenge(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request()
    payment = pay_intent(stripe_gateway, request, "pm_card_threeDSecure2Required")
    stripe_fake.complete_three_ds(payment.gateway_payment_id, succeed=False)

    after = stripe_gateway.fetch_payment(ref_for(request, payment.gateway_payment_id))
    assert after.status == "failed"
    assert after.decline_code == "authentication_failed"
    assert after.gateway_code == "payment_intent_authentication_failure"
    assert (
        after.decline_message
        == "We could not verify your card with your bank. Try again or use another card."
    )


def test_sca_mode_any_challenges_a_card_that_merely_supports_three_d_secure(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    payment = pay_intent(stripe_gateway, payment_request(sca_mode="any"), "pm_card_visa")
    assert payment.status == "requires_action"


def test_radar_blocks_the_highest_risk_card_and_the_outcome_is_recorded(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    payment = pay_intent(stripe_gateway, payment_request(), "pm_card_radarBlock")
    assert payment.status == "failed"
    assert payment.decline_code == "fraudulent"
    assert payment.decline_message == "Your card was declined."  # never tell a fraudster why
    assert payment.fraud is not None
    assert payment.fraud.type == "blocked"
    assert payment.fraud.risk_level == "highest"
    assert payment.fraud.risk_score == 95
    assert payment.fraud.reason == "highest_risk_level"
    assert payment.fraud.rule == "rule_fake_block_highest"
    assert payment.fraud.network_status == "not_sent_to_network"
    assert payment.fraud.seller_message == "Stripe blocked this payment as too risky."


def test_an_elevated_risk_payment_succeeds_and_carries_its_risk_level(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    payment = pay_intent(stripe_gateway, payment_request(), "pm_card_riskLevelElevated")
    assert payment.status == "succeeded"
    assert payment.fraud is not None
    assert (payment.fraud.risk_level, payment.fraud.risk_score) == ("elevated", 65)


def test_manual_capture_holds_the_funds_until_captured(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request(capture_method="manual", merchant_account=CONNECTED_ACCOUNT)
    authorised = pay_intent(stripe_gateway, request, "pm_card_visa")
    assert authorised.status == "requires_capture"
    assert authorised.amount_capturable == 2500

    captured = stripe_gateway.capture_payment(ref_for(request, authorised.gateway_payment_id), amount=2000)

    assert captured.status == "succeeded"
    assert captured.amount_received == 2000
    sent = stripe_fake.requests[-1]
    assert sent.header("Idempotency-Key") == f"{request.payment_id}:capture"
    assert sent.header("Stripe-Account") == CONNECTED_ACCOUNT
    assert sent.params["amount_to_capture"] == "2000"


def test_cancelling_an_authorised_payment_cancels_it(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request(capture_method="manual")
    authorised = pay_intent(stripe_gateway, request, "pm_card_visa")
    cancelled = stripe_gateway.cancel_payment(ref_for(request, authorised.gateway_payment_id))
    assert cancelled.status == "canceled"
    assert stripe_fake.requests[-1].header("Idempotency-Key") == f"{request.payment_id}:cancel"


def test_cancelling_a_succeeded_payment_is_refused_with_advice_to_refund(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    paid = pay_intent(stripe_gateway, request, "pm_card_visa")
    with pytest.raises(GatewayError) as info:
        stripe_gateway.cancel_payment(ref_for(request, paid.gateway_payment_id))
    assert info.value.code == "illegal_transition"
    assert info.value.status_code == 409
    assert "refund it instead" in info.value.message


def test_a_partial_refund_refunds_part_and_carries_our_refund_id(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request(merchant_account=CONNECTED_ACCOUNT)
    ref = paid_ref(stripe_gateway, request)

    refund = stripe_gateway.refund_payment(
        ref, refund_id="re_first", amount=1000, reason="requested_by_customer"
    )

    assert refund.status == "succeeded"
    assert (refund.amount, refund.currency) == (1000, "EUR")
    assert refund.refund_id == "re_first"
    assert refund.gateway_payment_id == ref.gateway_payment_id
    assert refund.method == "refund"
    sent = stripe_fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/refunds")
    assert sent.header("Idempotency-Key") == "re_first:refund"
    assert sent.header("Stripe-Account") == CONNECTED_ACCOUNT
    assert sent.params["payment_intent"] == ref.gateway_payment_id
    assert sent.params["amount"] == "1000"
    assert sent.params["metadata"] == {"refund_id": "re_first", "payment_id": request.payment_id}
    assert stripe_gateway.fetch_payment(ref).amount_refunded == 1000


def test_refunding_more_than_is_left_is_refused(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    ref = paid_ref(stripe_gateway, request)
    stripe_gateway.refund_payment(ref, refund_id="re_a", amount=2000)
    with pytest.raises(GatewayError) as info:
        stripe_gateway.refund_payment(ref, refund_id="re_b", amount=1000)
    assert info.value.code == "refund_too_large"
    assert info.value.message == "The refund is larger than the amount left to refund."


def test_a_full_refund_then_another_is_refused_as_already_refunded(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    ref = paid_ref(stripe_gateway, request)
    full = stripe_gateway.refund_payment(ref, refund_id="re_all")
    assert full.amount == 2500
    with pytest.raises(GatewayError) as info:
        stripe_gateway.refund_payment(ref, refund_id="re_again")
    assert info.value.code == "already_refunded"
    assert info.value.message == "This payment has already been fully refunded."
    assert info.value.status_code == 409


def test_retrying_a_refund_with_the_same_refund_id_does_not_refund_twice(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request()
    ref = paid_ref(stripe_gateway, request)
    first = stripe_gateway.refund_payment(ref, refund_id="re_once", amount=500)
    second = stripe_gateway.refund_payment(ref, refund_id="re_once", amount=500)
    assert first.gateway_refund_id == second.gateway_refund_id
    assert len(stripe_fake.account().refunds) == 1


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(without("amount"), id="missing"),
        pytest.param(with_values(amount=None), id="null"),
        pytest.param(with_values(amount="2500"), id="a-string"),
        pytest.param(with_values(amount="abc"), id="not-a-number"),
        pytest.param(with_values(amount=25.0), id="a-float"),
        pytest.param(with_values(amount=True), id="a-boolean"),
        pytest.param(with_values(amount=-2500), id="negative"),
    ],
)
def test_a_payment_intent_with_an_unreadable_amount_is_an_error_not_zero(
    stripe_gateway: StripeGateway,
    stripe_fake: StripeFake,
    payment_request: MakeRequest,
    alter: Callable[[dict], None],
) -> None:
    ref = paid_ref(stripe_gateway, payment_request())
    alter(stripe_fake.intent(ref.gateway_payment_id))

    with pytest.raises(GatewayError) as info:
        stripe_gateway.fetch_payment(ref)

    assert_unreadable(info.value)


def test_a_confirmation_answered_without_an_amount_is_an_error_and_the_payment_can_be_checked_again(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    request = payment_request()
    created = stripe_gateway.create_payment(request)
    stripe_fake.alter_next_answer(without("amount"))

    with pytest.raises(GatewayError) as info:
        stripe_gateway.confirm_payment(
            request, payment_method="pm_card_visa", gateway_payment_id=created.gateway_payment_id
        )

    assert_unreadable(info.value)
    # The charge did go through: checking again, as the message advises, reads it in full.
    checked = stripe_gateway.fetch_payment(ref_for(request, created.gateway_payment_id))
    assert (checked.status, checked.amount, checked.amount_received) == ("succeeded", 2500, 2500)


def test_an_intent_without_the_optional_amounts_reads_them_as_nothing_yet(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    # amount_received and amount_capturable may be left out, and amount_refunded is only there
    # when the charge is expanded: none of them is required, unlike the amount itself.
    request = payment_request()
    stripe_fake.alter_next_answer(without("amount_received", "amount_capturable"))

    created = stripe_gateway.create_payment(request)

    assert created.amount == 2500
    assert (created.amount_received, created.amount_capturable, created.amount_refunded) == (0, 0, 0)


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(without("amount"), id="missing"),
        pytest.param(with_values(amount=None), id="null"),
        pytest.param(with_values(amount="10.00"), id="a-decimal-string"),
    ],
)
def test_a_refund_answered_without_a_readable_amount_is_an_error_not_a_zero_refund(
    stripe_gateway: StripeGateway,
    stripe_fake: StripeFake,
    payment_request: MakeRequest,
    alter: Callable[[dict], None],
) -> None:
    request = payment_request()
    ref = paid_ref(stripe_gateway, request)
    stripe_fake.alter_next_answer(alter)

    with pytest.raises(GatewayError) as first:
        stripe_gateway.refund_payment(ref, refund_id="re_1", amount=1000)
    # Stripe replays the same answer for the same refund: still an error, never a refund of 0.
    with pytest.raises(GatewayError) as retried:
        stripe_gateway.refund_payment(ref, refund_id="re_1", amount=1000)

    assert_unreadable(first.value, retried.value)
    assert stripe_fake.requests[-1].replayed
    assert stripe_gateway.fetch_payment(ref).amount_refunded == 1000


def test_a_connected_accounts_payment_is_not_visible_without_its_account(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    request = payment_request(merchant_account=CONNECTED_ACCOUNT)
    created = stripe_gateway.create_payment(request)
    ref = PaymentRef(
        payment_id=request.payment_id, gateway_payment_id=created.gateway_payment_id, currency="EUR"
    )
    with pytest.raises(GatewayError) as info:
        stripe_gateway.fetch_payment(ref)
    assert info.value.code == "not_found"
    assert info.value.status_code == 404
    assert info.value.message == "The payment provider has no record of this payment."


def test_an_unknown_payment_method_is_a_clear_non_retryable_error(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    with pytest.raises(GatewayError) as info:
        pay_intent(stripe_gateway, payment_request(), "pm_card_doesNotExist")
    assert not info.value.retryable
    assert info.value.code == "invalid_payment_method"
    assert info.value.message == "That payment method could not be used. Try again, or use another card."


def test_a_wrong_api_key_is_reported_without_leaking_details(
    stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    gateway = make_stripe_gateway(stripe_fake, secret_key="sk_test_" + "y" * 8)
    with pytest.raises(GatewayError) as info:
        gateway.create_payment(payment_request())
    assert info.value.code == "gateway_configuration"
    assert not info.value.retryable
    assert info.value.message == "Payments are unavailable right now. Try again in a few minutes."


def test_a_stripe_outage_is_a_retryable_error(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    stripe_fake.fail_next(500)
    with pytest.raises(GatewayError) as info:
        stripe_gateway.create_payment(payment_request())
    assert info.value.retryable
    assert info.value.status_code == 503
    assert info.value.message == "Payments are unavailable right now. Try again in a few minutes."


def test_a_rate_limited_refund_says_the_provider_is_busy(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    ref = paid_ref(stripe_gateway, payment_request())
    stripe_fake.fail_next(429)
    with pytest.raises(GatewayError) as info:
        stripe_gateway.refund_payment(ref, refund_id="re_busy")
    assert info.value.message == "The payment provider is busy. Try again in a moment."
    assert (info.value.code, info.value.retryable, info.value.status_code) == ("rate_limited", True, 503)
    assert stripe_fake.account().refunds == {}


def test_an_unreachable_stripe_says_it_could_not_be_reached(
    stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    closed = StripeFake(api_keys=[STRIPE_SECRET_KEY]).start()
    url = closed.url
    closed.stop()  # nothing listens there any more
    gateway = make_stripe_gateway(stripe_fake, api_base=url)
    with pytest.raises(GatewayError) as info:
        gateway.create_payment(payment_request())
    assert info.value.message == "We could not reach the payment provider. Try again in a moment."
    assert (info.value.code, info.value.retryable) == ("gateway_unreachable", True)


def test_reusing_a_payment_id_for_a_different_amount_is_a_conflict(
    stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    stripe_gateway.create_payment(request)
    with pytest.raises(GatewayError) as info:
        stripe_gateway.create_payment(payment_request(payment_id=request.payment_id, amount=999))
    assert info.value.message == "This request conflicts with an earlier one for the same payment."
    assert (info.value.code, info.value.status_code) == ("idempotency_conflict", 409)


@pytest.mark.parametrize("amount", [0, -100])
def test_a_refund_of_nothing_is_refused_before_stripe_is_asked(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest, amount: int
) -> None:
    ref = paid_ref(stripe_gateway, payment_request())
    calls = len(stripe_fake.requests)
    with pytest.raises(GatewayError) as info:
        stripe_gateway.refund_payment(ref, refund_id="re_0", amount=amount)
    assert info.value.message == "The refund amount must be a positive amount."
    assert len(stripe_fake.requests) == calls


def test_the_sdk_retries_a_transient_failure_with_the_same_idempotency_key(
    stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    gateway = make_stripe_gateway(stripe_fake, max_network_retries=1)
    request = payment_request()
    stripe_fake.fail_next(500)

    payment = gateway.create_payment(request)

    assert payment.status == "requires_payment_method"
    keys = [r.header("Idempotency-Key") for r in stripe_fake.requests]
    assert keys == [f"{request.payment_id}:create", f"{request.payment_id}:create"]
    assert [r.status for r in stripe_fake.requests] == [500, 200]
    assert len(stripe_fake.account().intents) == 1
