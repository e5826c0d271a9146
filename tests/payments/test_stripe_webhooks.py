"""Stripe webhooks: verified with the SDK against every configured secret, then normalised."""

from __future__ import annotations

import json
import time
from datetime import UTC

import pytest
import stripe

from payments.gateways.base import InvalidWebhook
from payments.gateways.stripe import StripeGateway
from payments.models import Payment, PaymentEvent, SimulatedIntent, WebhookEvent
from tests.fakes.stripe_fake import StripeFake
from tests.payments.conftest import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET
from tests.payments.helpers import latest_payment, new_session, post_stripe_event


def _intent(status: str = "succeeded", **extra: object) -> dict:
    intent = {
        "id": "pi_" + "A" * 24,
        "object": "payment_intent",
        "amount": 2500,
        "amount_received": 2500 if status == "succeeded" else 0,
        "amount_capturable": 0,
        "capture_method": "automatic_async",
        "currency": "eur",
        "created": 1_790_000_000,
        "last_payment_error": None,
        "latest_charge": "ch_" + "B" * 24,
        "livemode": False,
        "metadata": {"payment_id": "pay_ours"},
        "next_action": None,
        "status": status,
    }
    intent.update(extra)
    return intent


def _refund(**extra: object) -> dict:
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 700,
        "currency": "eur",
        "payment_intent": "pi_1",
        "charge": "ch_1",
        "status": "succeeded",
        "metadata": {"refund_id": "re_ours", "payment_id": "pay_ours"},
    }
    refund.update(extra)
    return refund


def _leave_out(field: str, obj: dict) -> dict:
    """``obj`` without ``field``, as a sender that does not follow Stripe's shape sends it."""
    return {name: value for name, value in obj.items() if name != field}


def _signed(event: dict, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[bytes, dict]:
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return payload.encode(), {"Stripe-Signature": header}


def test_a_valid_payment_intent_succeeded_event_is_parsed(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    body, headers = stripe_fake.signed_event("payment_intent.succeeded", _intent(), WEBHOOK_SECRET)

    event = stripe_gateway.parse_webhook(body, headers)

    assert event.gateway == "stripe"
    assert event.event_id.startswith("evt_")
    assert event.type == "payment_intent.succeeded"
    assert event.kind == "payment"
    assert event.known
    assert event.created.tzinfo is UTC
    assert event.object_id == event.gateway_payment_id == "pi_" + "A" * 24
    assert event.status == "succeeded"
    assert event.payment_id == "pay_ours"
    assert (event.amount, event.currency) == (2500, "EUR")
    assert event.payment is not None and event.payment.amount_received == 2500
    assert event.raw["type"] == "payment_intent.succeeded"
    assert json.loads(json.dumps(event.raw)) == event.raw  # storable as JSON
    assert event.livemode is False


def test_client_secrets_never_reach_the_stored_payload(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    intent = _intent(client_secret="pi_" + "A" * 24 + "_secret_" + "c" * 8)
    body, headers = stripe_fake.signed_event("payment_intent.succeeded", intent, WEBHOOK_SECRET)
    event = stripe_gateway.parse_webhook(body, headers)
    assert "_secret_" not in json.dumps(event.raw)
    assert event.payment is not None and "_secret_" not in json.dumps(event.payment.raw)


def test_header_names_are_case_insensitive(stripe_gateway: StripeGateway, stripe_fake: StripeFake) -> None:
    body, headers = stripe_fake.signed_event("payment_intent.succeeded", _intent(), WEBHOOK_SECRET)
    event = stripe_gateway.parse_webhook(body, {"stripe-signature": headers["Stripe-Signature"]})
    assert event.type == "payment_intent.succeeded"


def test_a_payment_failed_event_carries_the_decline(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    intent = _intent(
        "requires_payment_method",
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
        },
    )
    body, headers = stripe_fake.signed_event("payment_intent.payment_failed", intent, WEBHOOK_SECRET)
    event = stripe_gateway.parse_webhook(body, headers)
    assert event.status == "failed"
    assert event.payment is not None
    assert event.payment.decline_code == "insufficient_funds"
    assert event.payment.decline_message == "Your card has insufficient funds."


@pytest.mark.parametrize(
    ("event_type", "status", "expected"),
    [
        ("payment_intent.requires_action", "requires_action", "requires_action"),
        ("payment_intent.canceled", "canceled", "canceled"),
        ("payment_intent.processing", "processing", "processing"),
        ("payment_intent.amount_capturable_updated", "requires_capture", "requires_capture"),
    ],
)
def test_payment_intent_events_normalise_their_status(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, event_type: str, status: str, expected: str
) -> None:
    body, headers = stripe_fake.signed_event(event_type, _intent(status), WEBHOOK_SECRET)
    event = stripe_gateway.parse_webhook(body, headers)
    assert (event.kind, event.status) == ("payment", expected)


def test_a_webhook_with_a_bad_signature_is_rejected(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    body, headers = stripe_fake.signed_event("payment_intent.succeeded", _intent(), "whsec_" + "w" * 8)
    with pytest.raises(InvalidWebhook) as info:
        stripe_gateway.parse_webhook(body, headers)
    assert info.value.reason == "bad_signature"


def test_a_tampered_body_is_rejected(stripe_gateway: StripeGateway, stripe_fake: StripeFake) -> None:
    body, headers = stripe_fake.signed_event("payment_intent.succeeded", _intent(), WEBHOOK_SECRET)
    with pytest.raises(InvalidWebhook) as info:
        stripe_gateway.parse_webhook(body.replace(b"2500", b"9999"), headers)
    assert info.value.reason == "bad_signature"


def test_a_webhook_without_a_signature_header_is_rejected(stripe_gateway: StripeGateway) -> None:
    with pytest.raises(InvalidWebhook) as info:
        stripe_gateway.parse_webhook(b"{}", {})
    assert info.value.reason == "bad_signature"


def test_a_webhook_older_than_300_seconds_is_rejected_as_stale(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    old = int(time.time()) - 301
    body, headers = stripe_fake.signed_event(
        "payment_intent.succeeded", _intent(), WEBHOOK_SECRET, timestamp=old
    )
    with pytest.raises(InvalidWebhook) as info:
        stripe_gateway.parse_webhook(body, headers)
    assert info.value.reason == "stale_timestamp"


def test_a_webhook_just_inside_the_tolerance_is_accepted(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    recent = int(time.time()) - 250
    body, headers = stripe_fake.signed_event(
        "payment_intent.succeeded", _intent(), WEBHOOK_SECRET, timestamp=recent
    )
    assert stripe_gateway.parse_webhook(body, headers).status == "succeeded"


def test_malformed_json_with_a_valid_signature_is_rejected_as_malformed(
    stripe_gateway: StripeGateway,
) -> None:
    payload = '{"id": "evt_1", "type": '
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    with pytest.raises(InvalidWebhook) as info:
        stripe_gateway.parse_webhook(payload.encode(), {"Stripe-Signature": header})
    assert info.value.reason == "malformed"


def test_a_signed_event_without_an_object_is_rejected_as_malformed(stripe_gateway: StripeGateway) -> None:
    body, headers = _signed(
        {"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "created": 1}
    )
    with pytest.raises(InvalidWebhook) as info:
        stripe_gateway.parse_webhook(body, headers)
    assert info.value.reason == "malformed"


def test_a_body_that_is_not_utf8_is_rejected_as_malformed(stripe_gateway: StripeGateway) -> None:
    with pytest.raises(InvalidWebhook) as info:
        stripe_gateway.parse_webhook(b"\xff\xfe", {"Stripe-Signature": "t=1,v1=00"})
    assert info.value.reason == "malformed"


def test_an_unknown_event_type_is_kept_and_marked_unknown(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    body, headers = stripe_fake.signed_event(
        "customer.created", {"id": "cus_123", "object": "customer"}, WEBHOOK_SECRET
    )
    event = stripe_gateway.parse_webhook(body, headers)
    assert event.type == "customer.created"
    assert event.known is False
    assert event.kind == "unknown"
    assert event.object_id == "cus_123"


def test_the_second_secret_verifies_while_a_secret_is_being_rotated(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    body, headers = stripe_fake.signed_event("payment_intent.succeeded", _intent(), OLD_WEBHOOK_SECRET)
    assert stripe_gateway.parse_webhook(body, headers).status == "succeeded"


def test_a_stale_webhook_signed_with_the_old_secret_is_still_stale(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    old = int(time.time()) - 1000
    body, headers = stripe_fake.signed_event(
        "payment_intent.succeeded", _intent(), OLD_WEBHOOK_SECRET, timestamp=old
    )
    with pytest.raises(InvalidWebhook) as info:
        stripe_gateway.parse_webhook(body, headers)
    assert info.value.reason == "stale_timestamp"


def test_with_no_webhook_secret_configured_nothing_verifies(stripe_fake: StripeFake) -> None:
    gateway = StripeGateway(
        secret_key="sk_test_" + "x" * 8, publishable_key="pk_test_x", api_base=stripe_fake.url
    )
    body, headers = stripe_fake.signed_event("payment_intent.succeeded", _intent(), WEBHOOK_SECRET)
    with pytest.raises(InvalidWebhook) as info:
        gateway.parse_webhook(body, headers)
    assert info.value.reason == "bad_signature"


def test_charge_refunded_reports_the_refunded_amount(stripe_gateway: StripeGateway) -> None:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 2500,
        "amount_refunded": 1000,
        "currency": "eur",
        "payment_intent": "pi_1",
        "status": "succeeded",
        "refunded": False,
    }
    body, headers = _signed(
        {
            "id": "evt_r",
            "object": "event",
            "type": "charge.refunded",
            "created": 1_790_000_000,
            "data": {"object": charge},
        }
    )
    event = stripe_gateway.parse_webhook(body, headers)
    assert (event.kind, event.gateway_payment_id, event.amount_refunded) == ("refund", "pi_1", 1000)


@pytest.mark.parametrize(
    ("event_type", "status", "normalised"),
    [
        ("refund.created", "succeeded", "succeeded"),
        ("refund.updated", "pending", "pending"),
        ("charge.refund.updated", "succeeded", "succeeded"),
        ("refund.failed", "failed", "failed"),
        ("refund.updated", "canceled", "canceled"),
        ("refund.updated", "requires_action", "pending"),
    ],
)
def test_refund_events_normalise_the_refund(
    stripe_gateway: StripeGateway, event_type: str, status: str, normalised: str
) -> None:
    refund = _refund(status=status, failure_reason="expired_or_canceled_card" if status == "failed" else None)
    body, headers = _signed(
        {
            "id": "evt_re",
            "object": "event",
            "type": event_type,
            "created": 1_790_000_000,
            "data": {"object": refund},
        }
    )
    event = stripe_gateway.parse_webhook(body, headers)
    assert event.kind == "refund"
    assert event.status == normalised
    assert event.refund is not None
    assert (event.refund.refund_id, event.refund.amount, event.payment_id) == ("re_ours", 700, "pay_ours")
    if status == "failed":
        assert event.refund.failure_reason == "expired_or_canceled_card"


@pytest.mark.parametrize(
    ("event_type", "status", "normalised"),
    [
        ("charge.dispute.created", "needs_response", "needs_response"),
        ("charge.dispute.created", "warning_needs_response", "needs_response"),
        ("charge.dispute.updated", "under_review", "under_review"),
        ("charge.dispute.closed", "won", "won"),
        ("charge.dispute.closed", "lost", "lost"),
        ("charge.dispute.closed", "warning_closed", "closed"),
    ],
)
def test_dispute_events_normalise_the_dispute(
    stripe_gateway: StripeGateway, event_type: str, status: str, normalised: str
) -> None:
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 2500,
        "currency": "eur",
        "charge": "ch_1",
        "payment_intent": "pi_1",
        "reason": "fraudulent",
        "status": status,
        "evidence_details": {"due_by": 1_790_600_000},
    }
    body, headers = _signed(
        {
            "id": "evt_d",
            "object": "event",
            "type": event_type,
            "created": 1_790_000_000,
            "data": {"object": dispute},
        }
    )
    event = stripe_gateway.parse_webhook(body, headers)
    assert (event.kind, event.status) == ("dispute", normalised)
    assert event.dispute is not None
    assert event.dispute.reason == "fraudulent"
    assert event.dispute.gateway_payment_id == "pi_1"
    assert event.dispute.evidence_due_by is not None and event.dispute.evidence_due_by.tzinfo is UTC


def test_an_early_fraud_warning_is_parsed(stripe_gateway: StripeGateway) -> None:
    warning = {
        "id": "issfr_1",
        "object": "radar.early_fraud_warning",
        "actionable": True,
        "charge": "ch_1",
        "payment_intent": "pi_1",
        "fraud_type": "made_with_stolen_card",
        "created": 1_790_000_000,
        "livemode": False,
    }
    body, headers = _signed(
        {
            "id": "evt_efw",
            "object": "event",
            "type": "radar.early_fraud_warning.created",
            "created": 1_790_000_000,
            "data": {"object": warning},
        }
    )
    event = stripe_gateway.parse_webhook(body, headers)
    assert event.kind == "fraud_warning"
    assert event.fraud_warning is not None
    assert event.fraud_warning.fraud_type == "made_with_stolen_card"
    assert event.fraud_warning.actionable is True
    assert event.fraud_warning.charge_id == "ch_1"
    assert event.gateway_payment_id == "pi_1"


def test_a_connect_event_names_the_connected_account(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake
) -> None:
    body, headers = stripe_fake.signed_event(
        "payment_intent.succeeded", _intent(), WEBHOOK_SECRET, account="acct_merchant1"
    )
    event = stripe_gateway.parse_webhook(body, headers)
    assert event.account == "acct_merchant1"
    assert event.payment is not None and event.payment.merchant_account == "acct_merchant1"


def test_events_built_from_the_fakes_objects_parse_like_stripes(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request
) -> None:
    request = payment_request()
    created = stripe_gateway.create_payment(request)
    stripe_gateway.confirm_payment(
        request, payment_method="pm_card_visa", gateway_payment_id=created.gateway_payment_id
    )
    intent = stripe_fake.intent(created.gateway_payment_id)
    body, headers = stripe_fake.signed_event("payment_intent.succeeded", intent, WEBHOOK_SECRET)
    event = stripe_gateway.parse_webhook(body, headers)
    assert event.gateway_payment_id == created.gateway_payment_id
    assert event.payment_id == request.payment_id
    assert event.status == "succeeded"


# --- Amounts: required on PaymentIntents and Refunds ------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        pytest.param("payment_intent.succeeded", _leave_out("amount", _intent()), id="intent-missing"),
        pytest.param("payment_intent.succeeded", _intent(amount=None), id="intent-null"),
        pytest.param("payment_intent.succeeded", _intent(amount="2500"), id="intent-string"),
        pytest.param("payment_intent.processing", _intent(amount=25.5), id="intent-float"),
        pytest.param("refund.failed", _leave_out("amount", _refund(status="failed")), id="refund-missing"),
        pytest.param("refund.updated", _refund(amount=None), id="refund-null"),
        pytest.param("refund.created", _refund(amount="7.00"), id="refund-string"),
    ],
)
def test_a_signed_event_whose_amount_is_unreadable_is_malformed(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, event_type: str, obj: dict
) -> None:
    body, headers = stripe_fake.signed_event(event_type, obj, WEBHOOK_SECRET)

    with pytest.raises(InvalidWebhook) as info:
        stripe_gateway.parse_webhook(body, headers)

    assert info.value.reason == "malformed"
    assert info.value.message == "The webhook body could not be parsed."


@pytest.mark.django_db
def test_a_posted_event_without_an_amount_is_refused_and_nothing_is_stored_or_applied(
    client, tenant, django_capture_on_commit_callbacks
) -> None:
    session = new_session(tenant)
    client.get(f"/pay/{session.public_id}/")
    payment = latest_payment(session)
    intent = dict(SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).data["intent"])
    intent.update(status="succeeded", amount_received=intent["amount"])
    del intent["amount"]
    events_before = PaymentEvent.objects.filter(payment=payment).count()

    with django_capture_on_commit_callbacks(execute=True):
        response = post_stripe_event(
            client, "payment_intent.succeeded", intent, event_id="evt_sim_noamount", created=int(time.time())
        )

    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "malformed", "message": "The webhook body could not be parsed."}
    }
    assert not WebhookEvent.objects.exists()
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD
    assert PaymentEvent.objects.filter(payment=payment).count() == events_before
