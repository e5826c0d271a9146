"""The vendor fakes work outside pytest fixtures too (integration tests, benchmarks)."""

from __future__ import annotations

import braintree
import stripe

from payments.gateways.braintree import environment_for
from tests.fakes.braintree_fake import BraintreeFake
from tests.fakes.stripe_fake import StripeFake, decode_form


def test_each_fake_starts_on_its_own_free_port_and_stops() -> None:
    with StripeFake() as first, StripeFake() as second:
        assert first.port != second.port
        assert first.url.startswith("http://127.0.0.1:")


def test_the_stripe_sdk_talks_to_the_stripe_fake_directly() -> None:
    key = "sk_test_" + "d" * 8
    with StripeFake(api_keys=[key]) as fake:
        client = stripe.StripeClient(key, base_addresses={"api": fake.url}, max_network_retries=0)
        intent = client.v1.payment_intents.create(
            {"amount": 500, "currency": "usd"}, {"stripe_account": "acct_1"}
        )
        assert intent.status == "requires_payment_method"
        assert fake.intent(intent.id, account="acct_1")["amount"] == 500


def test_the_braintree_sdk_talks_to_the_braintree_fake_directly() -> None:
    fake = BraintreeFake()
    with fake:
        gateway = braintree.BraintreeGateway(
            braintree.Configuration(
                environment=environment_for("sandbox", fake.url),
                merchant_id=fake.merchant_id,
                public_key=fake.public_key,
                private_key=fake.private_key,
            )
        )
        result = gateway.transaction.sale({"amount": "10.00", "payment_method_nonce": "fake-valid-nonce"})
        assert result.is_success
        assert fake.transaction(result.transaction.id)["status"] == "authorized"


def test_stripe_form_bodies_decode_into_nested_objects() -> None:
    pairs = [
        ("amount", "100"),
        ("metadata[payment_id]", "pay_1"),
        ("payment_method_options[card][request_three_d_secure]", "any"),
        ("expand[0]", "latest_charge"),
        ("expand[1]", "customer"),
    ]
    assert decode_form(pairs) == {
        "amount": "100",
        "metadata": {"payment_id": "pay_1"},
        "payment_method_options": {"card": {"request_three_d_secure": "any"}},
        "expand": ["latest_charge", "customer"],
    }
