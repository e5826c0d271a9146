"""The Braintree adapter through the real braintree SDK, against the HTTP-level fake."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from payments.gateways.base import GatewayError, PaymentGateway, PaymentRef, PaymentRequest
from payments.gateways.braintree import BraintreeGateway, environment_for
from security.errors import ApplicationError
from tests.fakes.braintree_fake import BraintreeFake
from tests.payments.conftest import make_braintree_gateway
from tests.payments.gateway_helpers import assert_unreadable, ref_for, with_values, without

MakeRequest = Callable[..., PaymentRequest]
VALID = "fake-valid-nonce"
TDS_OK = "fake-three-d-secure-visa-full-authentication-nonce"
TDS_FAILED = "fake-three-d-secure-visa-failed-authentication-nonce"


@pytest.fixture
def usd(payment_request: MakeRequest) -> MakeRequest:
    def make(**overrides):
        return payment_request(**{"currency": "USD", "merchant_account": "fake_usd", **overrides})

    return make


def _settled_sale(gateway: BraintreeGateway, fake: BraintreeFake, request: PaymentRequest) -> PaymentRef:
    """A sale paid with a valid nonce and settled (overnight, at Braintree), as its reference."""
    paid = gateway.confirm_payment(request, payment_method=VALID)
    fake.settle(paid.gateway_payment_id)
    return ref_for(request, paid.gateway_payment_id)


def test_the_braintree_adapter_implements_the_protocol(braintree_gateway: BraintreeGateway) -> None:
    assert isinstance(braintree_gateway, PaymentGateway)


def test_creating_a_payment_makes_no_call_until_the_nonce_arrives(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd()
    payment = braintree_gateway.create_payment(request)
    assert payment.status == "requires_payment_method"
    assert payment.gateway_payment_id is None
    assert braintree_fake.requests == []


def test_client_config_is_a_client_token_for_the_merchant_account(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=1234, sca_mode="any")
    config = braintree_gateway.client_config(request, braintree_gateway.create_payment(request))
    assert config.gateway == "braintree"
    assert config.client_token
    assert config.options["amount"] == "12.34"
    assert config.options["three_d_secure_required"] is True
    sent = braintree_fake.requests[-1]
    assert sent.path == f"/merchants/{braintree_fake.merchant_id}/client_token"
    assert sent.params["client_token"]["merchant_account_id"] == "fake_usd"


def test_a_client_token_for_an_unknown_merchant_account_is_a_clear_error(
    braintree_gateway: BraintreeGateway, usd: MakeRequest
) -> None:
    request = usd(merchant_account="no_such_account")
    with pytest.raises(GatewayError) as info:
        braintree_gateway.client_config(request, braintree_gateway.create_payment(request))
    assert info.value.message == "Payments are unavailable right now. Try again in a few minutes."
    assert "Merchant account not found" in info.value.detail


def test_a_sale_with_the_nonce_succeeds_and_is_submitted_for_settlement(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=4999)
    payment = braintree_gateway.confirm_payment(
        request, payment_method=VALID, device_data='{"device_session_id":"x"}'
    )

    assert payment.status == "succeeded"
    assert payment.gateway_status == "submitted_for_settlement"
    assert payment.settled is False
    assert (payment.amount, payment.currency) == (4999, "USD")
    assert payment.payment_id == request.payment_id
    assert payment.card is not None
    assert (payment.card.brand, payment.card.last4) == ("visa", "1111")
    assert payment.fraud is not None
    assert (payment.fraud.decision, payment.fraud.type, payment.fraud.risk_level) == (
        "Approve",
        "authorized",
        "normal",
    )
    assert payment.fraud.device_data_captured is True
    sale = braintree_fake.requests[-1].params["transaction"]
    assert sale["amount"] == "49.99"
    assert sale["payment_method_nonce"] == VALID
    assert sale["device_data"] == '{"device_session_id":"x"}'
    assert sale["options"]["submit_for_settlement"] is True
    assert sale["merchant_account_id"] == "fake_usd"
    assert sale["order_id"] == request.payment_id
    assert sale["api_request_key"] == f"{request.payment_id}:confirm:1"
    assert sale["customer"]["email"] == "buyer@example.com"


def test_repeating_a_sale_with_the_same_attempt_does_not_charge_twice(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd()
    first = braintree_gateway.confirm_payment(request, payment_method=VALID)
    second = braintree_gateway.confirm_payment(request, payment_method=VALID)
    assert first.gateway_payment_id == second.gateway_payment_id
    assert len(braintree_fake.transactions) == 1


def test_a_generic_processor_decline_fails_with_the_generic_message(
    braintree_gateway: BraintreeGateway, usd: MakeRequest
) -> None:
    payment = braintree_gateway.confirm_payment(usd(), payment_method="fake-processor-declined-visa-nonce")
    assert payment.status == "failed"
    assert payment.gateway_status == "processor_declined"
    assert (payment.decline_code, payment.gateway_code) == ("do_not_honor", "2000")
    assert payment.decline_message == "Your card was declined."


# Braintree's sandbox declines amounts 2000.00-2999.99 with that processor response code.
DECLINES = [
    (200100, "insufficient_funds", "Your card has insufficient funds.", False),
    (200400, "expired_card", "Your card has expired.", False),
    (201000, "incorrect_cvc", "Your card's security code is incorrect.", False),
    (204600, "generic_decline", "Your card was declined.", False),
    (
        300000,
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
        True,
    ),
]


@pytest.mark.parametrize(("amount", "decline_code", "message", "retryable"), DECLINES)
def test_a_declined_card_fails_with_a_helpful_message(
    braintree_gateway: BraintreeGateway,
    usd: MakeRequest,
    amount: int,
    decline_code: str,
    message: str,
    retryable: bool,
) -> None:
    payment = braintree_gateway.confirm_payment(usd(amount=amount), payment_method=VALID)
    assert payment.status == "failed"
    assert payment.decline_code == decline_code
    assert payment.decline_message == message
    assert payment.failure_retryable is retryable
    assert payment.gateway_code == str(amount // 100)


def test_a_processing_error_is_a_failed_payment_the_customer_may_retry(
    braintree_gateway: BraintreeGateway, usd: MakeRequest
) -> None:
    payment = braintree_gateway.confirm_payment(usd(amount=300000), payment_method=VALID)
    assert payment.gateway_status == "failed"
    assert payment.failure_retryable is True


def test_three_d_secure_required_then_authenticated_succeeds_with_liability_shift(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    payment = braintree_gateway.confirm_payment(usd(sca_mode="any"), payment_method=TDS_OK)
    assert payment.status == "succeeded"
    assert payment.three_d_secure is not None
    assert payment.three_d_secure.result == "authenticate_successful"
    assert payment.three_d_secure.liability_shifted is True
    sale = braintree_fake.requests[-1].params["transaction"]
    assert sale["options"]["three_d_secure"] == {"required": True}


def test_three_d_secure_required_then_failed_authentication_is_declined(
    braintree_gateway: BraintreeGateway, usd: MakeRequest
) -> None:
    payment = braintree_gateway.confirm_payment(usd(sca_mode="any"), payment_method=TDS_FAILED)
    assert payment.status == "failed"
    assert payment.gateway_status == "gateway_rejected"
    assert payment.gateway_code == "three_d_secure"
    assert payment.decline_code == "authentication_failed"
    assert (
        payment.decline_message
        == "We could not verify your card with your bank. Try again or use another card."
    )
    assert payment.three_d_secure is not None and payment.three_d_secure.liability_shifted is False


def test_sca_mode_any_refuses_a_nonce_without_three_d_secure(
    braintree_gateway: BraintreeGateway, usd: MakeRequest
) -> None:
    payment = braintree_gateway.confirm_payment(usd(sca_mode="any"), payment_method=VALID)
    assert (payment.status, payment.decline_code) == ("failed", "authentication_failed")


def test_fraud_tools_block_the_highest_risk_payment_and_the_decision_is_recorded(
    braintree_gateway: BraintreeGateway, usd: MakeRequest
) -> None:
    payment = braintree_gateway.confirm_payment(usd(), payment_method="fake-gateway-rejected-fraud-nonce")
    assert payment.status == "failed"
    assert payment.decline_code == "fraudulent"
    assert payment.decline_message == "Your card was declined."
    assert payment.fraud is not None
    assert payment.fraud.type == "blocked"
    assert payment.fraud.risk_level == "highest"
    assert payment.fraud.decision == "Decline"
    assert payment.fraud.risk_score == 96
    assert payment.fraud.reason == "Fraud rules matched"


def test_an_unknown_nonce_is_a_clear_error(braintree_gateway: BraintreeGateway, usd: MakeRequest) -> None:
    with pytest.raises(GatewayError) as info:
        braintree_gateway.confirm_payment(usd(), payment_method="fake-no-such-nonce")
    assert info.value.message == "We could not use that payment method. Try again, or use a different card."
    assert "91565" in info.value.detail
    assert not info.value.retryable


def test_manual_capture_authorises_then_submits_for_settlement(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(capture_method="manual", amount=5000)
    authorised = braintree_gateway.confirm_payment(request, payment_method=VALID)
    assert authorised.status == "requires_capture"
    assert authorised.amount_capturable == 5000

    captured = braintree_gateway.capture_payment(ref_for(request, authorised.gateway_payment_id), amount=4000)

    assert captured.status == "succeeded"
    assert captured.amount == 4000
    sent = braintree_fake.requests[-1]
    assert sent.method == "PUT" and sent.path.endswith("/submit_for_settlement")
    assert sent.params["transaction"]["api_request_key"] == f"{request.payment_id}:capture"


def test_cancel_voids_an_unsettled_payment(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd()
    paid = braintree_gateway.confirm_payment(request, payment_method=VALID)
    cancelled = braintree_gateway.cancel_payment(ref_for(request, paid.gateway_payment_id))
    assert (cancelled.status, cancelled.gateway_status) == ("canceled", "voided")
    assert braintree_fake.requests[-1].path.endswith("/void")


def test_cancel_after_settlement_is_refused_with_advice_to_refund(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    ref = _settled_sale(braintree_gateway, braintree_fake, usd())
    with pytest.raises(GatewayError) as info:
        braintree_gateway.cancel_payment(ref)
    assert info.value.status_code == 409
    assert info.value.message == "This payment can no longer be cancelled; refund it instead."


def test_a_partial_refund_of_a_settled_sale_refunds_part(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=5000)
    paid = braintree_gateway.confirm_payment(request, payment_method=VALID)
    # Settlement happens overnight; the sandbox's testing API (through the real SDK) does it now.
    braintree_gateway.sdk.testing.settle_transaction(paid.gateway_payment_id)
    ref = ref_for(request, paid.gateway_payment_id)
    assert braintree_gateway.fetch_payment(ref).settled is True

    refund = braintree_gateway.refund_payment(ref, refund_id="re_part", amount=1500)

    assert refund.method == "refund"
    assert refund.status == "succeeded"
    assert (refund.amount, refund.currency) == (1500, "USD")
    assert refund.refund_id == "re_part"
    assert refund.gateway_payment_id == paid.gateway_payment_id
    assert refund.gateway_refund_id != paid.gateway_payment_id
    sent = braintree_fake.requests[-1].params["transaction"]
    assert sent == {"order_id": "re_part", "api_request_key": "re_part:refund", "amount": "15.00"}


def test_refunding_more_than_is_left_is_refused(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=5000)
    ref = _settled_sale(braintree_gateway, braintree_fake, request)
    braintree_gateway.refund_payment(ref, refund_id="re_a", amount=4000)
    with pytest.raises(GatewayError) as info:
        braintree_gateway.refund_payment(ref, refund_id="re_b", amount=2000)
    assert info.value.code == "refund_too_large"
    assert info.value.message == "The refund is larger than the amount left to refund."


def test_refunding_a_fully_refunded_sale_again_is_refused(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=5000)
    ref = _settled_sale(braintree_gateway, braintree_fake, request)
    braintree_gateway.refund_payment(ref, refund_id="re_all")
    with pytest.raises(GatewayError) as info:
        braintree_gateway.refund_payment(ref, refund_id="re_again")
    assert info.value.message == "This payment has already been fully refunded."
    assert (info.value.code, info.value.status_code) == ("already_refunded", 409)


def test_a_full_refund_of_an_unsettled_sale_voids_it_instead(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=5000)
    paid = braintree_gateway.confirm_payment(request, payment_method=VALID)
    ref = ref_for(request, paid.gateway_payment_id)

    refund = braintree_gateway.refund_payment(ref, refund_id="re_all")

    assert refund.method == "void"
    assert refund.status == "succeeded"
    assert refund.amount == 5000
    assert refund.refund_id == "re_all"
    calls = [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in braintree_fake.requests[-3:]]
    assert calls == [("POST", "refund", 422), ("GET", paid.gateway_payment_id, 200), ("PUT", "void", 200)]
    assert braintree_fake.requests[-1].params["transaction"]["api_request_key"] == "re_all:void"
    assert braintree_gateway.fetch_payment(ref).status == "canceled"


def test_refunding_the_exact_full_amount_of_an_unsettled_sale_also_voids(
    braintree_gateway: BraintreeGateway, usd: MakeRequest
) -> None:
    request = usd(amount=5000)
    paid = braintree_gateway.confirm_payment(request, payment_method=VALID)
    refund = braintree_gateway.refund_payment(
        ref_for(request, paid.gateway_payment_id), refund_id="re_x", amount=5000
    )
    assert refund.method == "void"


def test_a_partial_refund_of_an_unsettled_sale_is_refused_and_changes_nothing(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=5000)
    paid = braintree_gateway.confirm_payment(request, payment_method=VALID)
    ref = ref_for(request, paid.gateway_payment_id)

    with pytest.raises(ApplicationError) as info:
        braintree_gateway.refund_payment(ref, refund_id="re_part", amount=1000)

    assert info.value.code == "partial_refund_before_settlement"
    assert "can only be refunded in full" in info.value.message
    assert braintree_fake.transaction(paid.gateway_payment_id)["status"] == "submitted_for_settlement"
    assert not any(r.path.endswith("/void") for r in braintree_fake.requests)


def test_a_refund_while_settling_asks_to_try_again_later(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd()
    paid = braintree_gateway.confirm_payment(request, payment_method=VALID)
    braintree_fake.transaction(paid.gateway_payment_id)["status"] = "settling"
    with pytest.raises(GatewayError) as info:
        braintree_gateway.refund_payment(ref_for(request, paid.gateway_payment_id), refund_id="re_s")
    assert info.value.retryable
    assert "Try again in a few hours" in info.value.message


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(without("amount"), id="missing"),
        pytest.param(with_values(amount=None), id="nil"),
        pytest.param(with_values(amount=""), id="empty"),
        pytest.param(with_values(amount="abc"), id="not-a-number"),
        pytest.param(with_values(amount="NaN"), id="nan"),
        pytest.param(with_values(amount="12.345"), id="more-decimals-than-usd-has"),
    ],
)
def test_a_transaction_with_an_unreadable_amount_is_an_error_not_zero(
    braintree_gateway: BraintreeGateway,
    braintree_fake: BraintreeFake,
    usd: MakeRequest,
    alter: Callable[[dict], None],
) -> None:
    request = usd(amount=5000)
    paid = braintree_gateway.confirm_payment(request, payment_method=VALID)
    alter(braintree_fake.transaction(paid.gateway_payment_id))

    with pytest.raises(GatewayError) as info:
        braintree_gateway.fetch_payment(ref_for(request, paid.gateway_payment_id))

    assert_unreadable(info.value)


def test_a_sale_answered_with_an_unreadable_amount_is_an_error_not_a_zero_payment(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=5000)
    first = braintree_gateway.confirm_payment(request, payment_method=VALID)
    braintree_fake.transaction(first.gateway_payment_id)["amount"] = "NaN"

    # The same attempt again: Braintree answers with the stored transaction.
    with pytest.raises(GatewayError) as info:
        braintree_gateway.confirm_payment(request, payment_method=VALID)

    assert_unreadable(info.value)


def test_a_refund_answered_with_an_unreadable_amount_is_an_error_not_a_zero_refund(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=5000)
    ref = _settled_sale(braintree_gateway, braintree_fake, request)
    refund = braintree_gateway.refund_payment(ref, refund_id="re_1", amount=1500)
    braintree_fake.transaction(refund.gateway_refund_id)["amount"] = "15.001"

    # Braintree replays the credit for the same request key; reading it again fails the same way.
    with pytest.raises(GatewayError) as replayed:
        braintree_gateway.refund_payment(ref, refund_id="re_1", amount=1500)
    with pytest.raises(GatewayError) as fetched:
        braintree_gateway.fetch_refund(ref, refund.gateway_refund_id)

    assert_unreadable(replayed.value, fetched.value)


def test_a_refund_credit_without_a_currency_is_read_in_the_payments_currency(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    request = usd(amount=5000)
    ref = _settled_sale(braintree_gateway, braintree_fake, request)
    refund = braintree_gateway.refund_payment(ref, refund_id="re_1", amount=1500)
    del braintree_fake.transaction(refund.gateway_refund_id)["currency_iso_code"]

    fetched = braintree_gateway.fetch_refund(ref, refund.gateway_refund_id)

    assert (fetched.amount, fetched.currency) == (1500, "USD")


def test_fetching_an_unknown_transaction_is_not_found(braintree_gateway: BraintreeGateway) -> None:
    with pytest.raises(GatewayError) as info:
        braintree_gateway.fetch_payment(
            PaymentRef(payment_id="pay_1", gateway_payment_id="nope1234", currency="USD")
        )
    assert (info.value.code, info.value.status_code) == ("not_found", 404)
    assert info.value.message == "The payment provider has no record of this payment."


def test_wrong_credentials_are_reported_without_detail(
    braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    gateway = make_braintree_gateway(braintree_fake, private_key="priv" + "0" * 16)
    with pytest.raises(GatewayError) as info:
        gateway.confirm_payment(usd(), payment_method=VALID)
    assert info.value.code == "gateway_configuration"
    assert not info.value.retryable
    assert info.value.message == "Payments are unavailable right now. Try again in a few minutes."


def test_an_unreachable_gateway_is_a_retryable_error(usd: MakeRequest) -> None:
    fake = BraintreeFake()
    fake.start()
    url = fake.url
    fake.stop()  # nothing listens there any more
    gateway = BraintreeGateway(
        environment="sandbox",
        merchant_id=fake.merchant_id,
        public_key=fake.public_key,
        private_key=fake.private_key,
        api_url=url,
        timeout=2,
    )
    with pytest.raises(GatewayError) as info:
        gateway.confirm_payment(usd(), payment_method=VALID)
    assert info.value.retryable
    assert info.value.message == "We could not reach the payment provider. Try again in a moment."


def test_a_rate_limited_refund_says_the_provider_is_busy(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest
) -> None:
    ref = _settled_sale(braintree_gateway, braintree_fake, usd())
    braintree_fake.fail_next(429)
    with pytest.raises(GatewayError) as info:
        braintree_gateway.refund_payment(ref, refund_id="re_busy")
    assert info.value.message == "The payment provider is busy. Try again in a moment."
    assert (info.value.code, info.value.retryable, info.value.status_code) == ("rate_limited", True, 503)
    assert braintree_fake.transaction(ref.gateway_payment_id)["refund_ids"] == []


@pytest.mark.parametrize("status", [500, 503])
def test_a_braintree_outage_says_it_could_not_be_reached(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, usd: MakeRequest, status: int
) -> None:
    braintree_fake.fail_next(status)
    with pytest.raises(GatewayError) as info:
        braintree_gateway.confirm_payment(usd(), payment_method=VALID)
    assert info.value.message == "We could not reach the payment provider. Try again in a moment."
    assert info.value.retryable
    assert braintree_fake.transactions == {}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://x", "must be an http"),
        ("https://127.0.0.1:8443", "port is 443"),
        ("http://example.com:443", "port is 443"),
    ],
)
def test_a_custom_api_url_must_match_how_the_sdk_picks_https(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        environment_for("sandbox", url)


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(ValueError, match="sandbox or production"):
        environment_for("staging")
