"""Fixtures for the gateway layer: the vendors' HTTP APIs faked on 127.0.0.1, real SDKs above.

* ``stripe_fake`` / ``braintree_fake``: a fake server (one per test session), reset
  for each test; inspect ``.requests`` to see what the SDK sent.
* ``stripe_gateway`` / ``braintree_gateway``: our adapters pointed at the fakes.
* ``simulated_gateway``: the simulated gateway (uses the database).
* ``receiver`` / ``scheduled``: a merchant's webhook receiver; broker countdowns recorded, not queued.
* ``payment_request``: builds a :class:`PaymentRequest` with a fresh ``pay_...`` id.

Keys are built at run time and are obviously fake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from payments.gateways.base import PaymentRequest
from payments.gateways.braintree import BraintreeGateway
from payments.gateways.simulated import SimulatedGateway
from payments.gateways.stripe import StripeGateway
from security.ids import new_public_id
from tests.fakes.braintree_fake import BraintreeFake
from tests.fakes.stripe_fake import StripeFake
from tests.payments.webhook_helpers import dns, receiver, receiver_server, scheduled  # noqa: F401 - merchant webhook fixtures

STRIPE_SECRET_KEY = "sk_test_" + "x" * 8
STRIPE_PUBLISHABLE_KEY = "pk_test_" + "x" * 8
WEBHOOK_SECRET = "whsec_" + "n" * 8  # the current secret
OLD_WEBHOOK_SECRET = "whsec_" + "o" * 8  # still accepted while rotating
CONNECTED_ACCOUNT = "acct_" + "merchant1"


@pytest.fixture(scope="session")
def stripe_fake_server() -> Iterator[StripeFake]:
    fake = StripeFake(api_keys=[STRIPE_SECRET_KEY]).start()
    yield fake
    fake.stop()


@pytest.fixture
def stripe_fake(stripe_fake_server: StripeFake) -> StripeFake:
    stripe_fake_server.reset()
    return stripe_fake_server


def make_stripe_gateway(fake: StripeFake, **overrides: Any) -> StripeGateway:
    options: dict[str, Any] = {
        "secret_key": STRIPE_SECRET_KEY,
        "publishable_key": STRIPE_PUBLISHABLE_KEY,
        "webhook_secrets": f"{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}",
        "api_base": fake.url,
        "default_return_url": "http://testserver/checkout/return/",
        "max_network_retries": 0,
    }
    options.update(overrides)
    return StripeGateway(**options)


@pytest.fixture
def stripe_gateway(stripe_fake: StripeFake) -> StripeGateway:
    return make_stripe_gateway(stripe_fake)


@pytest.fixture(scope="session")
def braintree_fake_server() -> Iterator[BraintreeFake]:
    fake = BraintreeFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def braintree_fake(braintree_fake_server: BraintreeFake) -> BraintreeFake:
    braintree_fake_server.reset()
    return braintree_fake_server


def make_braintree_gateway(fake: BraintreeFake, **overrides: Any) -> BraintreeGateway:
    options: dict[str, Any] = {
        "environment": "sandbox",
        "merchant_id": fake.merchant_id,
        "public_key": fake.public_key,
        "private_key": fake.private_key,
        "api_url": fake.url,
        "timeout": 10,
    }
    options.update(overrides)
    return BraintreeGateway(**options)


@pytest.fixture
def braintree_gateway(braintree_fake: BraintreeFake) -> BraintreeGateway:
    return make_braintree_gateway(braintree_fake)


@pytest.fixture
def simulated_gateway(db: None) -> SimulatedGateway:
    return SimulatedGateway(
        webhook_secrets=[WEBHOOK_SECRET, OLD_WEBHOOK_SECRET], site_url="http://testserver"
    )


@pytest.fixture
def payment_request() -> Callable[..., PaymentRequest]:
    def make(**overrides: Any) -> PaymentRequest:
        values: dict[str, Any] = {
            "payment_id": new_public_id("pay"),
            "amount": 2500,
            "currency": "EUR",
            "description": "Order 1042",
            "customer_email": "buyer@example.com",
        }
        values.update(overrides)
        return PaymentRequest(**values)

    return make
