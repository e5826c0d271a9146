"""The protocol's value objects, errors and the shared decline vocabulary."""

from __future__ import annotations

import dataclasses

import pytest

from payments.gateways import declines
from payments.gateways.base import (
    GatewayError,
    GatewayPayment,
    InvalidWebhook,
    PaymentRef,
    PaymentRequest,
)
from security.errors import ApplicationError


def test_payment_request_normalises_the_currency() -> None:
    request = PaymentRequest(payment_id="pay_1", amount=100, currency="eur")
    assert request.currency == "EUR"
    assert request.sca_mode == "automatic"
    assert request.capture_method == "automatic"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"amount": 0}, "positive whole number"),
        ({"amount": -5}, "positive whole number"),
        ({"amount": 12.5}, "positive whole number"),
        ({"amount": True}, "positive whole number"),
        ({"currency": "XYZ"}, "not supported"),
        ({"sca_mode": "always"}, "3D Secure mode"),
        ({"capture_method": "later"}, "capture method"),
        ({"payment_id": ""}, "payment id"),
    ],
)
def test_payment_request_refuses_nonsense_with_a_clear_message(changes: dict, fragment: str) -> None:
    values = {"payment_id": "pay_1", "amount": 100, "currency": "EUR", **changes}
    with pytest.raises(ApplicationError) as info:
        PaymentRequest(**values)
    assert fragment in info.value.message


def test_payment_ref_needs_the_gateways_id() -> None:
    with pytest.raises(ApplicationError, match="not reached the gateway"):
        PaymentRef(payment_id="pay_1", gateway_payment_id="", currency="EUR")


def test_results_are_frozen() -> None:
    payment = GatewayPayment(
        gateway="stripe", gateway_payment_id="pi_1", status="succeeded", amount=1, currency="EUR"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        payment.status = "failed"  # type: ignore[misc]


def test_client_secret_and_raw_payload_stay_out_of_reprs() -> None:
    payment = GatewayPayment(
        gateway="stripe",
        gateway_payment_id="pi_1",
        status="requires_payment_method",
        amount=1,
        currency="EUR",
        client_secret="pi_1_secret_abc",
        raw={"client_secret": "pi_1_secret_abc"},
    )
    assert "secret" not in repr(payment)


def test_a_retryable_gateway_error_is_a_503_and_keeps_internal_detail_out_of_the_message() -> None:
    error = GatewayError(
        "Try again.", gateway="stripe", code="gateway_unreachable", retryable=True, detail="boom"
    )
    assert isinstance(error, ApplicationError)
    assert error.status_code == 503
    assert error.user_message == "Try again."
    assert "boom" not in error.message


def test_a_permanent_gateway_error_is_a_502() -> None:
    assert GatewayError("No.", gateway="stripe").status_code == 502


@pytest.mark.parametrize("reason", ["bad_signature", "stale_timestamp", "malformed"])
def test_invalid_webhook_carries_its_reason_and_is_a_400(reason: str) -> None:
    error = InvalidWebhook(reason)  # type: ignore[arg-type]
    assert error.reason == reason
    assert error.status_code == 400
    assert error.code == "invalid_webhook"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("insufficient_funds", "Your card has insufficient funds."),
        ("expired_card", "Your card has expired."),
        ("incorrect_cvc", "Your card's security code is incorrect."),
        ("generic_decline", "Your card was declined."),
        ("processing_error", "An error occurred while processing your card. Try again in a little bit."),
        ("something_new", "Your card was declined."),
        (None, "Your card was declined."),
    ],
)
def test_decline_codes_have_customer_messages(code: str | None, message: str) -> None:
    assert declines.decline_message(code) == message


@pytest.mark.parametrize("code", ["fraudulent", "lost_card", "stolen_card", "pickup_card"])
def test_fraud_flavoured_declines_never_say_why(code: str) -> None:
    assert declines.decline_message(code) == declines.GENERIC_DECLINE_MESSAGE


@pytest.mark.parametrize(
    ("response_code", "decline_code"),
    [
        ("2000", "do_not_honor"),
        ("2001", "insufficient_funds"),
        ("2004", "expired_card"),
        ("2010", "incorrect_cvc"),
        ("3000", "processing_error"),
        ("2999", "generic_decline"),
        (None, "generic_decline"),
    ],
)
def test_braintree_processor_codes_speak_stripes_vocabulary(
    response_code: str | None, decline_code: str
) -> None:
    assert declines.braintree_processor_decline(response_code) == decline_code


def test_only_transient_declines_are_retryable() -> None:
    assert declines.is_retryable_decline("processing_error")
    assert not declines.is_retryable_decline("insufficient_funds")
