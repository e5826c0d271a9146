"""Simulated webhooks are Stripe-shaped, Stripe-signed, and pass the production Stripe path."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import pytest

from payments.gateways.base import InvalidWebhook, PaymentRef, PaymentRequest
from payments.gateways.simulated import SimulatedGateway, build_signed_event, sign_payload
from payments.gateways.stripe import StripeGateway
from tests.payments.conftest import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET

pytestmark = pytest.mark.django_db
MakeRequest = Callable[..., PaymentRequest]


def _paid(gateway: SimulatedGateway, request: PaymentRequest, payment_method: str = "pm_card_visa") -> str:
    created = gateway.create_payment(request)
    gateway.confirm_payment(
        request, payment_method=payment_method, gateway_payment_id=created.gateway_payment_id
    )
    assert created.gateway_payment_id
    return created.gateway_payment_id


def test_a_payment_event_has_stripes_shape(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    intent_id = _paid(simulated_gateway, payment_request())

    body, headers = simulated_gateway.signed_payment_event(intent_id)

    event = json.loads(body)
    assert set(event) >= {"id", "object", "type", "created", "data", "livemode", "api_version"}
    assert event["id"].startswith("evt_sim_")
    assert event["object"] == "event"
    assert event["type"] == "payment_intent.succeeded"
    assert isinstance(event["created"], int)
    assert event["livemode"] is False
    assert event["data"]["object"]["object"] == "payment_intent"
    assert event["data"]["object"]["id"] == intent_id
    assert isinstance(event["data"]["object"]["latest_charge"], str)  # not expanded, as Stripe sends it
    assert headers["Content-Type"] == "application/json"


def test_the_signature_is_stripes_scheme_with_the_first_secret(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    body, headers = simulated_gateway.signed_payment_event(_paid(simulated_gateway, payment_request()))
    parts = dict(item.split("=", 1) for item in headers["Stripe-Signature"].split(","))
    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert parts["v1"] == expected
    assert abs(int(parts["t"]) - time.time()) < 5


def test_the_production_stripe_path_accepts_simulated_events_and_labels_them(
    simulated_gateway: SimulatedGateway, stripe_gateway: StripeGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    intent_id = _paid(simulated_gateway, request)
    body, headers = simulated_gateway.signed_payment_event(intent_id)

    event = stripe_gateway.parse_webhook(body, headers)

    assert event.gateway == "simulated"
    assert event.type == "payment_intent.succeeded"
    assert (event.kind, event.status) == ("payment", "succeeded")
    assert event.gateway_payment_id == intent_id
    assert event.payment_id == request.payment_id


def test_the_simulated_gateway_parses_its_own_events(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    intent_id = _paid(simulated_gateway, payment_request(), "pm_card_chargeDeclinedInsufficientFunds")
    event = simulated_gateway.parse_webhook(*simulated_gateway.signed_payment_event(intent_id))
    assert event.type == "payment_intent.payment_failed"
    assert event.status == "failed"
    assert event.payment is not None and event.payment.decline_code == "insufficient_funds"


def test_re_sending_the_same_state_reuses_the_event_id_and_a_new_state_gets_a_new_one(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    request = payment_request()
    intent_id = _paid(simulated_gateway, request)
    first = json.loads(simulated_gateway.signed_payment_event(intent_id)[0])["id"]
    again = json.loads(simulated_gateway.signed_payment_event(intent_id)[0])["id"]
    assert first == again

    refund = simulated_gateway.refund_payment(
        PaymentRef(payment_id=request.payment_id, gateway_payment_id=intent_id, currency="EUR"),
        refund_id="re_ours",
        amount=500,
    )
    refund_body, refund_headers = simulated_gateway.signed_refund_event(intent_id, refund.gateway_refund_id)
    refund_event = simulated_gateway.parse_webhook(refund_body, refund_headers)
    assert refund_event.event_id != first
    assert refund_event.type == "refund.created"
    assert refund_event.refund is not None
    assert (refund_event.refund.refund_id, refund_event.refund.amount) == ("re_ours", 500)
    assert refund_event.payment_id == request.payment_id


def test_a_three_d_secure_payment_emits_requires_action(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    intent_id = _paid(simulated_gateway, payment_request(), "pm_card_threeDSecure2Required")
    event = simulated_gateway.parse_webhook(*simulated_gateway.signed_payment_event(intent_id))
    assert (event.type, event.status) == ("payment_intent.requires_action", "requires_action")


def test_a_connected_account_event_names_the_account(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    intent_id = _paid(simulated_gateway, payment_request(merchant_account="acct_sim"))
    event = simulated_gateway.parse_webhook(
        *simulated_gateway.signed_payment_event(intent_id, merchant_account="acct_sim")
    )
    assert event.account == "acct_sim"


def test_a_simulated_event_with_a_bad_signature_is_rejected(simulated_gateway: SimulatedGateway) -> None:
    body, headers = build_signed_event(
        "payment_intent.succeeded", {"id": "pi_sim_1"}, secret="whsec_" + "z" * 8
    )
    with pytest.raises(InvalidWebhook) as info:
        simulated_gateway.parse_webhook(body, headers)
    assert info.value.reason == "bad_signature"


def test_a_simulated_event_older_than_300_seconds_is_stale(simulated_gateway: SimulatedGateway) -> None:
    body, headers = build_signed_event(
        "payment_intent.succeeded",
        {"id": "pi_sim_1", "object": "payment_intent", "status": "succeeded"},
        secret=WEBHOOK_SECRET,
        timestamp=int(time.time()) - 301,
    )
    with pytest.raises(InvalidWebhook) as info:
        simulated_gateway.parse_webhook(body, headers)
    assert info.value.reason == "stale_timestamp"


def test_malformed_json_signed_correctly_is_malformed(simulated_gateway: SimulatedGateway) -> None:
    body = b'{"id": "evt_sim_1", "object": "event", "type": '
    with pytest.raises(InvalidWebhook) as info:
        simulated_gateway.parse_webhook(body, {"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET)})
    assert info.value.reason == "malformed"


def test_an_unknown_simulated_event_type_is_kept(simulated_gateway: SimulatedGateway) -> None:
    body, headers = build_signed_event("balance.available", {"object": "balance"}, secret=WEBHOOK_SECRET)
    event = simulated_gateway.parse_webhook(body, headers)
    assert (event.type, event.known, event.kind) == ("balance.available", False, "unknown")


def test_an_event_signed_with_the_rotated_out_secret_still_verifies(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    # A worker still configured with only the old secret signs; the web process knows both.
    old_worker = SimulatedGateway(webhook_secrets=[OLD_WEBHOOK_SECRET])
    intent_id = _paid(old_worker, payment_request())
    event = simulated_gateway.parse_webhook(*old_worker.signed_payment_event(intent_id))
    assert event.status == "succeeded"


def test_building_an_event_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        build_signed_event("payment_intent.succeeded", {}, secret="")
