"""The simulated gateway: Stripe's test mode offline, its state in the database."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from payments.gateways.base import GatewayError, PaymentGateway, PaymentRef, PaymentRequest
from payments.gateways.simulated import CHALLENGE_PATH, SimulatedGateway
from payments.models import SimulatedIntent
from tests.payments.conftest import WEBHOOK_SECRET
from tests.payments.gateway_helpers import paid_ref, pay_intent, ref_for
from tests.payments.helpers import STRIPE_TEST_CARD_DECLINES

pytestmark = pytest.mark.django_db
MakeRequest = Callable[..., PaymentRequest]


def test_the_simulated_gateway_implements_the_protocol(simulated_gateway: SimulatedGateway) -> None:
    assert isinstance(simulated_gateway, PaymentGateway)


def test_creating_a_payment_stores_a_stripe_shaped_intent(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request(merchant_account="acct_sim")
    payment = simulated_gateway.create_payment(request)

    assert payment.gateway == "simulated"
    assert payment.status == "requires_payment_method"
    assert payment.gateway_payment_id and payment.gateway_payment_id.startswith("pi_sim_")
    assert payment.payment_id == request.payment_id
    row = SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id)
    assert row.merchant_account == "acct_sim"
    assert row.idempotency_key == f"{request.payment_id}:create"
    assert row.data["intent"]["object"] == "payment_intent"
    assert row.data["intent"]["metadata"] == {"payment_id": request.payment_id}


def test_creating_the_same_payment_twice_returns_the_same_intent(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    assert (
        simulated_gateway.create_payment(request).gateway_payment_id
        == simulated_gateway.create_payment(request).gateway_payment_id
    )
    assert SimulatedIntent.objects.count() == 1


def test_reusing_a_payment_id_for_a_different_amount_is_refused(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    simulated_gateway.create_payment(request)
    with pytest.raises(GatewayError) as info:
        simulated_gateway.create_payment(payment_request(payment_id=request.payment_id, amount=999))
    assert (info.value.code, info.value.status_code) == ("idempotency_conflict", 409)
    assert info.value.message == "This request conflicts with an earlier one for the same payment."


def test_client_config_is_a_simulated_marker(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    config = simulated_gateway.client_config(request, simulated_gateway.create_payment(request))
    assert config.simulated is True
    assert config.publishable_key is None
    assert "pm_card_visa" in config.options["test_payment_methods"]


@pytest.mark.parametrize(
    ("payment_method", "brand", "last4"),
    [("pm_card_visa", "visa", "4242"), ("pm_card_mastercard", "mastercard", "4444")],
)
def test_the_success_test_cards_succeed(
    simulated_gateway: SimulatedGateway,
    payment_request: MakeRequest,
    payment_method: str,
    brand: str,
    last4: str,
) -> None:
    payment = pay_intent(simulated_gateway, payment_request(), payment_method)
    assert payment.status == "succeeded"
    assert payment.amount_received == 2500
    assert payment.card is not None and (payment.card.brand, payment.card.last4) == (brand, last4)
    assert payment.fraud is not None
    assert (payment.fraud.provider, payment.fraud.type, payment.fraud.risk_level) == (
        "simulated_radar",
        "authorized",
        "normal",
    )


DECLINES = STRIPE_TEST_CARD_DECLINES


@pytest.mark.parametrize(("payment_method", "decline_code", "message", "retryable"), DECLINES)
def test_a_declined_test_card_fails_with_a_helpful_message(
    simulated_gateway: SimulatedGateway,
    payment_request: MakeRequest,
    payment_method: str,
    decline_code: str,
    message: str,
    retryable: bool,
) -> None:
    payment = pay_intent(simulated_gateway, payment_request(), payment_method)
    assert payment.status == "failed"
    assert payment.decline_code == decline_code
    assert payment.decline_message == message
    assert payment.failure_retryable is retryable


def test_after_a_decline_the_customer_can_pay_with_another_card(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    declined = pay_intent(simulated_gateway, request, "pm_card_chargeDeclinedInsufficientFunds")
    paid = simulated_gateway.confirm_payment(
        request, payment_method="pm_card_visa", gateway_payment_id=declined.gateway_payment_id, attempt=2
    )
    assert paid.status == "succeeded"
    assert paid.decline_code is None


def test_repeating_the_same_confirm_attempt_does_not_charge_again(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    first = pay_intent(simulated_gateway, request, "pm_card_visa")
    again = simulated_gateway.confirm_payment(
        request, payment_method="pm_card_visa", gateway_payment_id=first.gateway_payment_id, attempt=1
    )
    assert again.status == "succeeded"
    assert again.charge_id == first.charge_id


def test_three_d_secure_required_then_the_challenge_is_approved(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    payment = pay_intent(
        simulated_gateway, request, "pm_card_threeDSecure2Required", return_url="http://testserver/done"
    )

    assert payment.status == "requires_action"
    assert payment.next_action is not None
    assert payment.next_action.type == "redirect"
    assert payment.next_action.url == "http://testserver" + CHALLENGE_PATH.format(
        intent_id=payment.gateway_payment_id
    )
    assert payment.next_action.return_url == "http://testserver/done"

    done = simulated_gateway.complete_challenge(payment.gateway_payment_id, approve=True)
    assert done.status == "succeeded"
    assert done.three_d_secure is not None and done.three_d_secure.liability_shifted is True


def test_three_d_secure_required_then_the_challenge_fails(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    payment = pay_intent(simulated_gateway, request, "pm_card_threeDSecure2Required")
    failed = simulated_gateway.complete_challenge(payment.gateway_payment_id, approve=False)
    assert failed.status == "failed"
    assert failed.decline_code == "authentication_failed"
    assert (
        failed.decline_message
        == "We could not verify your card with your bank. Try again or use another card."
    )
    assert simulated_gateway.fetch_payment(ref_for(request, payment.gateway_payment_id)).status == "failed"


def test_a_challenge_cannot_be_completed_twice(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    payment = pay_intent(simulated_gateway, payment_request(), "pm_card_threeDSecure2Required")
    simulated_gateway.complete_challenge(payment.gateway_payment_id, approve=True)
    with pytest.raises(GatewayError) as info:
        simulated_gateway.complete_challenge(payment.gateway_payment_id, approve=False)
    assert info.value.status_code == 409


def test_sca_mode_any_challenges_every_card_that_supports_it(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    assert (
        pay_intent(simulated_gateway, payment_request(sca_mode="any"), "pm_card_visa").status
        == "requires_action"
    )


def test_radar_blocks_the_highest_risk_test_card(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    payment = pay_intent(simulated_gateway, payment_request(), "pm_card_radarBlock")
    assert payment.status == "failed"
    assert payment.decline_code == "fraudulent"
    assert payment.decline_message == "Your card was declined."
    assert payment.fraud is not None
    assert (payment.fraud.type, payment.fraud.risk_level, payment.fraud.risk_score) == (
        "blocked",
        "highest",
        95,
    )
    assert payment.fraud.reason == "highest_risk_level"


def test_an_elevated_risk_test_card_succeeds_with_its_risk_level(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    payment = pay_intent(simulated_gateway, payment_request(), "pm_card_riskLevelElevated")
    assert payment.status == "succeeded"
    assert payment.fraud is not None and payment.fraud.risk_level == "elevated"


def test_an_unknown_test_card_is_refused_clearly(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    with pytest.raises(GatewayError, match="pm_card_visa") as info:
        pay_intent(simulated_gateway, payment_request(), "pm_card_unknown")
    assert info.value.code == "invalid_payment_method"


def test_manual_capture_then_capture(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request(capture_method="manual")
    authorised = pay_intent(simulated_gateway, request, "pm_card_visa")
    assert (authorised.status, authorised.amount_capturable) == ("requires_capture", 2500)
    captured = simulated_gateway.capture_payment(ref_for(request, authorised.gateway_payment_id), amount=2000)
    assert (captured.status, captured.amount_received) == ("succeeded", 2000)


def test_cancel_before_capture_and_refusal_after_success(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    held = payment_request(capture_method="manual")
    authorised = pay_intent(simulated_gateway, held, "pm_card_visa")
    assert simulated_gateway.cancel_payment(ref_for(held, authorised.gateway_payment_id)).status == "canceled"

    paid_request = payment_request()
    paid = pay_intent(simulated_gateway, paid_request, "pm_card_visa")
    with pytest.raises(GatewayError, match="refund it instead"):
        simulated_gateway.cancel_payment(ref_for(paid_request, paid.gateway_payment_id))


def test_a_partial_refund_then_the_rest(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    ref = paid_ref(simulated_gateway, request)

    part = simulated_gateway.refund_payment(ref, refund_id="re_one", amount=1000)
    rest = simulated_gateway.refund_payment(ref, refund_id="re_two")

    assert (part.status, part.amount, part.refund_id, part.gateway) == (
        "succeeded",
        1000,
        "re_one",
        "simulated",
    )
    assert rest.amount == 1500
    assert simulated_gateway.fetch_payment(ref).amount_refunded == 2500
    with pytest.raises(GatewayError) as info:
        simulated_gateway.refund_payment(ref, refund_id="re_three")
    assert info.value.code == "already_refunded"
    assert info.value.message == "This payment has already been fully refunded."


def test_refunding_more_than_is_left_is_refused(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    ref = paid_ref(simulated_gateway, payment_request())
    with pytest.raises(GatewayError) as info:
        simulated_gateway.refund_payment(ref, refund_id="re_big", amount=2501)
    assert info.value.code == "refund_too_large"
    assert info.value.message == "The refund is larger than the amount left to refund."


def test_reusing_a_refund_id_for_another_amount_is_a_conflict(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    ref = paid_ref(simulated_gateway, request)
    simulated_gateway.refund_payment(ref, refund_id="re_same", amount=700)
    with pytest.raises(GatewayError) as info:
        simulated_gateway.refund_payment(ref, refund_id="re_same", amount=800)
    assert info.value.message == "This request conflicts with an earlier one for the same refund."
    assert simulated_gateway.fetch_payment(ref).amount_refunded == 700


def test_a_refund_of_nothing_is_refused(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    ref = paid_ref(simulated_gateway, request)
    with pytest.raises(GatewayError) as info:
        simulated_gateway.refund_payment(ref, refund_id="re_zero", amount=0)
    assert info.value.message == "The refund amount must be a positive amount."
    assert simulated_gateway.fetch_payment(ref).amount_refunded == 0


def test_retrying_a_refund_with_the_same_refund_id_refunds_once(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    ref = paid_ref(simulated_gateway, request)
    first = simulated_gateway.refund_payment(ref, refund_id="re_same", amount=700)
    second = simulated_gateway.refund_payment(ref, refund_id="re_same", amount=700)
    assert first.gateway_refund_id == second.gateway_refund_id
    assert simulated_gateway.fetch_payment(ref).amount_refunded == 700


def test_a_declined_payment_cannot_be_refunded(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    declined = pay_intent(simulated_gateway, request, "pm_card_chargeDeclined")
    with pytest.raises(GatewayError) as info:
        simulated_gateway.refund_payment(ref_for(request, declined.gateway_payment_id), refund_id="re_no")
    assert info.value.code == "illegal_transition"
    assert info.value.message == "Only a succeeded payment can be refunded."


def test_a_succeeded_payment_cannot_be_confirmed_again(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    paid = pay_intent(simulated_gateway, request, "pm_card_visa")
    with pytest.raises(GatewayError) as info:
        simulated_gateway.confirm_payment(
            request, payment_method="pm_card_visa", gateway_payment_id=paid.gateway_payment_id, attempt=2
        )
    assert info.value.code == "illegal_transition"


def test_state_survives_a_new_gateway_object_like_another_process(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    payment = pay_intent(simulated_gateway, request, "pm_card_threeDSecure2Required")

    worker = SimulatedGateway(webhook_secrets=[WEBHOOK_SECRET])
    worker.complete_challenge(payment.gateway_payment_id, approve=True)

    assert simulated_gateway.fetch_payment(ref_for(request, payment.gateway_payment_id)).status == "succeeded"


def test_another_merchant_account_cannot_see_the_intent(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request(merchant_account="acct_alpha")
    payment = simulated_gateway.create_payment(request)
    stranger = PaymentRef(
        payment_id=request.payment_id,
        gateway_payment_id=payment.gateway_payment_id,
        currency="EUR",
        merchant_account="acct_omega",
    )
    with pytest.raises(GatewayError) as info:
        simulated_gateway.fetch_payment(stranger)
    assert info.value.code == "not_found"
    assert info.value.message == "The payment provider has no record of this payment."


def test_a_gateway_without_a_webhook_secret_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        SimulatedGateway(webhook_secrets=[])
