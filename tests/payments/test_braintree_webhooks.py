"""Braintree webhooks: the SDK's own sample notifications, verified and parsed by the SDK."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from braintree.util.crypto import Crypto

from payments.gateways.base import InvalidWebhook
from payments.gateways.braintree import BraintreeGateway
from tests.fakes.braintree_fake import BraintreeFake
from tests.payments.conftest import make_braintree_gateway


def _form(notification: dict) -> bytes:
    """What Braintree POSTs: application/x-www-form-urlencoded bt_signature and bt_payload."""
    return urlencode(
        {"bt_signature": notification["bt_signature"], "bt_payload": notification["bt_payload"]}
    ).encode()


def _sample(gateway: BraintreeGateway, kind: str, object_id: str = "txn_123") -> bytes:
    return _form(gateway.sdk.webhook_testing.sample_notification(kind, object_id))


HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def test_a_valid_transaction_settled_notification_is_parsed(braintree_gateway: BraintreeGateway) -> None:
    event = braintree_gateway.parse_webhook(
        _sample(braintree_gateway, "transaction_settled", "abc123"), HEADERS
    )

    assert event.gateway == "braintree"
    assert event.type == "transaction_settled"
    assert event.kind == "payment"
    assert event.known
    assert event.event_id.startswith("bt_")
    assert event.created.tzinfo is not None
    assert abs(datetime.now(UTC) - event.created) < timedelta(minutes=1)
    assert event.object_id == event.gateway_payment_id == "abc123"
    assert event.status == "succeeded"
    assert event.payment is not None and event.payment.settled is True
    assert (event.amount, event.currency) == (10000, "USD")
    assert event.raw["notification"]["kind"] == "transaction_settled"
    assert json.loads(json.dumps(event.raw)) == event.raw  # storable as JSON


def test_the_same_notification_delivered_twice_has_the_same_event_id(
    braintree_gateway: BraintreeGateway,
) -> None:
    body = _sample(braintree_gateway, "transaction_settled")
    assert (
        braintree_gateway.parse_webhook(body, HEADERS).event_id
        == braintree_gateway.parse_webhook(body, {}).event_id
    )


def test_a_settlement_declined_notification_fails_the_payment(braintree_gateway: BraintreeGateway) -> None:
    event = braintree_gateway.parse_webhook(
        _sample(braintree_gateway, "transaction_settlement_declined"), HEADERS
    )
    assert (event.kind, event.status) == ("payment", "failed")
    assert event.payment is not None and event.payment.gateway_status == "settlement_declined"


def test_a_disbursed_notification_marks_the_payment_settled(braintree_gateway: BraintreeGateway) -> None:
    event = braintree_gateway.parse_webhook(_sample(braintree_gateway, "transaction_disbursed"), HEADERS)
    assert (event.kind, event.status, event.gateway_payment_id) == ("payment", "succeeded", "txn_123")
    assert event.payment is not None and event.payment.settled is True
    # It names no currency, so its amount cannot be read: the event claims none (not 0).
    assert (event.amount, event.currency) == (None, None)


def test_a_signed_notification_with_an_unreadable_amount_is_malformed(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake
) -> None:
    sample = braintree_gateway.sdk.webhook_testing.sample_notification("transaction_settled", "abc")
    xml = base64.b64decode(sample["bt_payload"]).replace(b"<amount>100.00<", b"<amount>100.001<")
    payload = base64.encodebytes(xml).decode()
    signature = f"{braintree_fake.public_key}|{Crypto.sha1_hmac_hash(braintree_fake.private_key, payload)}"

    with pytest.raises(InvalidWebhook) as info:
        braintree_gateway.parse_webhook(_form({"bt_signature": signature, "bt_payload": payload}), HEADERS)

    assert info.value.reason == "malformed"
    assert info.value.message == "The webhook body could not be parsed."


@pytest.mark.parametrize(
    ("kind", "status", "gateway_status"),
    [
        ("dispute_opened", "needs_response", "open"),
        ("dispute_won", "won", "won"),
        ("dispute_lost", "lost", "lost"),
    ],
)
def test_dispute_notifications_normalise_the_dispute(
    braintree_gateway: BraintreeGateway, kind: str, status: str, gateway_status: str
) -> None:
    event = braintree_gateway.parse_webhook(_sample(braintree_gateway, kind, "dispute_9"), HEADERS)
    assert (event.kind, event.status) == ("dispute", status)
    assert event.dispute is not None
    assert event.dispute.gateway_status == gateway_status
    assert event.dispute.gateway_dispute_id == "dispute_9"
    assert event.dispute.reason == "fraud"
    assert (event.dispute.amount, event.dispute.currency) == (10000, "USD")
    assert event.dispute.evidence_due_by is not None


def test_a_notification_with_a_bad_signature_is_rejected(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake
) -> None:
    forger = make_braintree_gateway(braintree_fake, private_key="priv" + "f" * 16)
    body = _sample(forger, "transaction_settled")
    with pytest.raises(InvalidWebhook) as info:
        braintree_gateway.parse_webhook(body, HEADERS)
    assert info.value.reason == "bad_signature"


def test_a_tampered_payload_is_rejected(braintree_gateway: BraintreeGateway) -> None:
    sample = braintree_gateway.sdk.webhook_testing.sample_notification("transaction_settled", "abc")
    xml = base64.b64decode(sample["bt_payload"]).replace(b"100.00", b"1.00")
    body = _form({"bt_signature": sample["bt_signature"], "bt_payload": base64.encodebytes(xml)})
    with pytest.raises(InvalidWebhook) as info:
        braintree_gateway.parse_webhook(body, HEADERS)
    assert info.value.reason == "bad_signature"


def test_a_notification_older_than_the_replay_window_is_rejected_as_stale(
    braintree_fake: BraintreeFake,
) -> None:
    later = make_braintree_gateway(braintree_fake, now=lambda: datetime.now(UTC) + timedelta(days=4))
    with pytest.raises(InvalidWebhook) as info:
        later.parse_webhook(_sample(later, "transaction_settled"), HEADERS)
    assert info.value.reason == "stale_timestamp"


def test_a_braintree_retry_an_hour_later_is_still_accepted(braintree_fake: BraintreeFake) -> None:
    # Braintree re-sends the original signed payload; 300 s would drop its own retries.
    later = make_braintree_gateway(braintree_fake, now=lambda: datetime.now(UTC) + timedelta(hours=1))
    assert later.parse_webhook(_sample(later, "transaction_settled"), HEADERS).status == "succeeded"


def test_a_tighter_replay_window_can_be_configured(braintree_fake: BraintreeFake) -> None:
    strict = make_braintree_gateway(
        braintree_fake,
        webhook_max_age=timedelta(seconds=300),
        now=lambda: datetime.now(UTC) + timedelta(seconds=301),
    )
    with pytest.raises(InvalidWebhook) as info:
        strict.parse_webhook(_sample(strict, "transaction_settled"), HEADERS)
    assert info.value.reason == "stale_timestamp"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"bt_signature=abc",
        b"bt_payload=abc",
        b"not a form at all",
        b'{"bt_signature": "a", "bt_payload": "b"}',
        urlencode({"bt_signature": "k|s", "bt_payload": "<xml>not base64</xml>"}).encode(),
        b"\xff\xfe",
    ],
)
def test_a_malformed_body_is_rejected_as_malformed(braintree_gateway: BraintreeGateway, body: bytes) -> None:
    with pytest.raises(InvalidWebhook) as info:
        braintree_gateway.parse_webhook(body, HEADERS)
    assert info.value.reason == "malformed"


def test_a_validly_signed_payload_that_is_not_a_notification_is_malformed(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake
) -> None:
    payload = base64.encodebytes(b"this is not XML")
    signature = f"{braintree_fake.public_key}|{Crypto.sha1_hmac_hash(braintree_fake.private_key, payload)}"
    with pytest.raises(InvalidWebhook) as info:
        braintree_gateway.parse_webhook(_form({"bt_signature": signature, "bt_payload": payload}), HEADERS)
    assert info.value.reason == "malformed"


def test_an_unknown_kind_is_kept_and_marked_unknown(braintree_gateway: BraintreeGateway) -> None:
    event = braintree_gateway.parse_webhook(
        _sample(braintree_gateway, "subscription_went_past_due", "sub_1"), HEADERS
    )
    assert event.type == "subscription_went_past_due"
    assert event.known is False
    assert event.kind == "unknown"
    assert event.object_id == "sub_1"


def test_the_check_notification_from_the_control_panel_parses_as_unknown(
    braintree_gateway: BraintreeGateway,
) -> None:
    event = braintree_gateway.parse_webhook(_sample(braintree_gateway, "check"), HEADERS)
    assert (event.type, event.known) == ("check", False)


def test_during_a_key_rotation_the_signature_for_our_key_verifies(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake
) -> None:
    # With two API keys active Braintree signs with each: "oldpub|sig&newpub|sig".
    old_key = make_braintree_gateway(braintree_fake, public_key="pub_old", private_key="priv" + "a" * 16)
    sample = braintree_gateway.sdk.webhook_testing.sample_notification("transaction_settled", "abc")
    old_signature = old_key.sdk.webhook_testing.sample_notification("transaction_settled", "abc")[
        "bt_signature"
    ]
    old_pair = (
        old_signature.split("|")[0] + "|" + Crypto.sha1_hmac_hash("priv" + "a" * 16, sample["bt_payload"])
    )
    both = f"{old_pair}&{sample['bt_signature']}"

    event = braintree_gateway.parse_webhook(
        _form({"bt_signature": both, "bt_payload": sample["bt_payload"]}), {}
    )

    assert event.status == "succeeded"
